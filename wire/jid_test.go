package wire

import "testing"

func TestParseJID(t *testing.T) {
	cases := []struct {
		in                            string
		ok                            bool
		local, domain, resource, bare string
		full                          string
	}{
		{"alice@example.com/phone", true, "alice", "example.com", "phone", "alice@example.com", "alice@example.com/phone"},
		{"example.com", true, "", "example.com", "", "example.com", "example.com"},
		{"conference.example.com/Room Nick", true, "", "conference.example.com", "Room Nick", "conference.example.com", "conference.example.com/Room Nick"},
		// PRECIS through mellium: case folded, width mapped.
		{"Alice@Example.COM/Phone", true, "alice", "example.com", "Phone", "alice@example.com", "alice@example.com/Phone"},
		{"ＡＬＩＣＥ@example.com", true, "alice", "example.com", "", "alice@example.com", "alice@example.com"},
		{"", false, "", "", "", "", ""},
		{"@example.com", false, "", "", "", "", ""},
		{"alice@", false, "", "", "", "", ""},
		{"alice@example.com/", false, "", "", "", "", ""},
		{"al ice@example.com", false, "", "", "", "", ""},
	}
	for _, c := range cases {
		j, err := ParseJID(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseJID(%q) error %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if got := [5]string{j.Local(), j.Domain(), j.Resource(), j.Bare(), j.String()}; got != [5]string{c.local, c.domain, c.resource, c.bare, c.full} {
			t.Errorf("ParseJID(%q) = %q", c.in, got)
		}
		if JIDOf(c.in) != j || j.IsZero() == c.ok {
			t.Errorf("JIDOf(%q) = %+v, IsZero %v", c.in, JIDOf(c.in), j.IsZero())
		}
	}
}

// TestParseJIDCanonicalAllocatesNothing keeps the router's hot path: a
// 'to' already in canonical form is parsed without allocating.
func TestParseJIDCanonicalAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseJID("bob@localhost/laptop") }); n != 0 {
		t.Errorf("ParseJID of a canonical JID allocates %v times", n)
	}
}

func TestBareJID(t *testing.T) {
	for in, want := range map[string]string{"a@b/c": "a@b", "a@b": "a@b", "b/c/d": "b", "": ""} {
		if got := BareJID(in); got != want {
			t.Errorf("BareJID(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkParseJID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseJID("bob@localhost/laptop")
	}
}
