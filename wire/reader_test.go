package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
)

const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`

func TestReaderElements(t *testing.T) {
	in := header + "  <message to='a@b'><body>hi &amp; <b>bold</b> tail</body></message>\n <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
	r := NewReader(strings.NewReader(in), Limits{})
	h, err := r.Header()
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "stream:stream" || h.Attr("to") != "localhost" || h.Attr("xmlns:stream") != NSStream {
		t.Fatalf("header = %s", h)
	}
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.String(), `<message to="a@b"><body>hi &amp; <b>bold</b> tail</body></message>`; got != want {
		t.Errorf("message = %s, want %s", got, want)
	}
	if body := m.ChildText("body", ""); body != "hi & bold tail" {
		t.Errorf("body text = %q", body)
	}
	iq, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if iq.Child("ping", NSPing) == nil {
		t.Errorf("iq payload missing: %s", iq)
	}
	if _, err := r.Next(); !errors.Is(err, ErrStreamEnd) {
		t.Errorf("end: err = %v, want ErrStreamEnd", err)
	}
}

func TestReaderErrors(t *testing.T) {
	cases := []struct {
		name string
		in   string
		lim  Limits
		want error
		cond string
	}{
		{"mismatched tags", header + "<message><body></message>", Limits{}, ErrNotWellFormed, "not-well-formed"},
		{"comment", header + "<!-- hi --><message/>", Limits{}, ErrRestrictedXML, "restricted-xml"},
		{"processing instruction", header + "<?foo bar?>", Limits{}, ErrRestrictedXML, "restricted-xml"},
		{"text at top level", header + "hello", Limits{}, ErrBadFormat, "bad-format"},
		{"second stream header", header + "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><message/>", Limits{}, ErrBadFormat, "bad-format"},
		{"too large", header + "<message><body>" + strings.Repeat("x", 5000) + "</body></message>", Limits{MaxStanzaBytes: 1024}, ErrStanzaTooLarge, "policy-violation"},
		{"too deep", header + strings.Repeat("<a>", 20) + strings.Repeat("</a>", 20), Limits{MaxDepth: 10}, ErrTooDeep, "policy-violation"},
		{"unknown entity", header + "<message>&foo;</message>", Limits{}, ErrNotWellFormed, "not-well-formed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in), tc.lim)
			if _, err := r.Header(); err != nil {
				t.Fatal(err)
			}
			var err error
			for err == nil {
				_, err = r.Next()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if c := StreamErrorFor(err); c != tc.cond {
				t.Errorf("condition = %q, want %q", c, tc.cond)
			}
		})
	}
}

func TestReaderLimitResetsPerStanza(t *testing.T) {
	// Many small stanzas and whitespace pings must never add up to the limit.
	var b strings.Builder
	b.WriteString(header)
	for i := 0; i < 200; i++ {
		b.WriteString("<message><body>0123456789</body></message> \n ")
	}
	r := NewReader(strings.NewReader(b.String()), Limits{MaxStanzaBytes: 1024})
	if _, err := r.Header(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := r.Next(); err != nil {
			t.Fatalf("stanza %d: %v", i, err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestParseRoundTrip(t *testing.T) {
	in := `<body rid="1" xmlns="http://jabber.org/protocol/httpbind"><message xmlns="jabber:client" to="x@y"><body>a&lt;b</body></message></body>`
	el, err := Parse([]byte(in), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := el.String(); got != in {
		t.Errorf("round trip:\n got %s\nwant %s", got, in)
	}
	if _, err := Parse([]byte(`<a/><b/>`), Limits{}); !errors.Is(err, ErrNotWellFormed) {
		t.Errorf("two roots: %v", err)
	}
}

func TestErrorReply(t *testing.T) {
	iq := New("iq", "type", "get", "id", "7", "from", "a@b/c", "to", "b").Append(NewNS("query", "x"))
	r := ErrorReply(iq, ErrServiceUnavailable)
	want := `<iq id="7" from="b" to="a@b/c" type="error"><query xmlns="x"/><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`
	if r.String() != want {
		t.Errorf("got  %s\nwant %s", r, want)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("<message to='a@b'><body>hi</body></message>"))
	f.Add([]byte("<iq type='get'><query xmlns='jabber:iq:roster'/></iq></stream:stream>"))
	f.Add([]byte("<a><b><c/></b></a><!-- x -->"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(strings.NewReader(header+string(data)), Limits{MaxStanzaBytes: 4096, MaxDepth: 16})
		if _, err := r.Header(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 1000; i++ {
			el, err := r.Next()
			if err != nil {
				return
			}
			// Whatever parses must serialize to XML that parses the same.
			again, err := Parse(el.Bytes(), Limits{MaxStanzaBytes: 1 << 20, MaxDepth: 32})
			if err != nil {
				t.Fatalf("re-parse of %s: %v", el, err)
			}
			if again.String() != el.String() {
				t.Fatalf("round trip changed %s to %s", el, again)
			}
		}
	})
}

func TestBinaryRoundTrip(t *testing.T) {
	in := `<message to="a@b" type="chat"><body>hi &amp; <b>bold</b> tail</body><x xmlns="jabber:x:oob"/></message>`
	el, err := Parse([]byte(in), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	bin := AppendBinary(nil, el)
	got, rest, err := DecodeBinary(bin)
	if err != nil || len(rest) != 0 {
		t.Fatalf("decode: %v, %d left", err, len(rest))
	}
	if got.String() != in {
		t.Errorf("round trip: %s", got)
	}
	for i := 0; i < len(bin); i++ {
		if _, _, err := DecodeBinary(bin[:i]); err == nil {
			t.Fatalf("truncated at %d decoded without error", i)
		}
	}
}

func FuzzDecodeBinary(f *testing.F) {
	f.Add(AppendBinary(nil, New("iq", "type", "get").Append(NewNS("ping", NSPing))))
	f.Fuzz(func(t *testing.T, data []byte) {
		el, _, err := DecodeBinary(data)
		if err != nil {
			return
		}
		again, _, err := DecodeBinary(AppendBinary(nil, el))
		if err != nil || again.String() != el.String() {
			t.Fatalf("re-encode changed %s: %v", el, err)
		}
	})
}

func BenchmarkParseXML(b *testing.B) {
	data := []byte(`<message to="b@localhost" from="a@localhost/x" type="chat" id="abc123"><body>an ordinary message of ordinary length</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBinary(b *testing.B) {
	el, _ := Parse([]byte(`<message to="b@localhost" from="a@localhost/x" type="chat" id="abc123"><body>an ordinary message of ordinary length</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`), Limits{})
	data := AppendBinary(nil, el)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}

// Prefixes mean what XML namespaces say: what the reader returns is
// canonical (namespace.go), and what cannot be resolved is a stream error.
func TestReaderNamespaces(t *testing.T) {
	cases := []struct {
		name, in, want string
		err            error
	}{
		{"prefixed stanza", `<c:message xmlns:c='jabber:client' to='a@b'><c:body>hi</c:body></c:message>`,
			`<message xmlns:c="jabber:client" to="a@b"><body>hi</body></message>`, nil},
		{"prefix from the header", `<s:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></s:features>`,
			`<stream:features xmlns:stream="http://etherx.jabber.org/streams"><starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/></stream:features>`, nil},
		{"dialback under another prefix", `<d:result xmlns:d='jabber:server:dialback' to='a'>k</d:result>`,
			`<db:result xmlns:d="jabber:server:dialback" to="a" xmlns:db="jabber:server:dialback">k</db:result>`, nil},
		{"prefixed payload keeps its children's namespace", `<iq type='get' id='1'><q:query xmlns:q='jabber:iq:roster' xmlns='urn:other'><item/></q:query></iq>`,
			`<iq type="get" id="1"><query xmlns:q="jabber:iq:roster" xmlns="jabber:iq:roster"><item xmlns="urn:other"/></query></iq>`, nil},
		{"unprefixed stanzas untouched", `<message to='a@b'><body>hi</body><x xmlns='jabber:x:oob'/></message>`,
			`<message to="a@b"><body>hi</body><x xmlns="jabber:x:oob"/></message>`, nil},
		{"undeclared prefix", `<x:message/>`, "", ErrBadNamespacePrefix},
		{"undeclared prefix on a child", `<message><x:body/></message>`, "", ErrBadNamespacePrefix},
		{"undeclared by xmlns:p=''", `<p:message xmlns:p=''/>`, "", ErrBadNamespacePrefix},
		{"reserved prefix", `<xmlns:message/>`, "", ErrBadNamespacePrefix},
		{"stanza in no namespace", `<message xmlns='' to='a@b'/>`, "", ErrInvalidNamespace},
		{"prefixed stanza in no namespace", `<c:message xmlns:c='jabber:client' xmlns=''/>`,
			`<message xmlns:c="jabber:client"/>`, nil},
	}
	hdr := `<?xml version='1.0'?><s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(hdr+tc.in), Limits{})
			if _, err := r.Header(); err != nil {
				t.Fatal(err)
			}
			el, err := r.Next()
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v (%v), want %v", err, el, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := el.String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// The header is checked by namespace and local name, not by its spelling.
func TestReaderHeaderNamespace(t *testing.T) {
	cases := []struct {
		name, in string
		err      error
		cond     string
	}{
		{"usual", header, nil, ""},
		{"other prefix", `<x:stream xmlns:x='http://etherx.jabber.org/streams' xmlns='jabber:client' to='localhost' version='1.0'>`, nil, ""},
		{"default namespace", `<stream xmlns='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`, nil, ""},
		{"wrong namespace", `<x:stream xmlns:x='urn:not-streams' xmlns='jabber:client' to='localhost' version='1.0'>`, ErrInvalidNamespace, "invalid-namespace"},
		{"html", `<html>`, ErrInvalidNamespace, "invalid-namespace"},
		{"wrong stream namespace, usual prefix", `<stream:stream xmlns:stream='urn:wrong' xmlns='jabber:client' to='localhost' version='1.0'>`, ErrInvalidNamespace, "invalid-namespace"},
		{"undeclared prefix", `<stream:stream xmlns='jabber:client' to='localhost' version='1.0'>`, ErrBadNamespacePrefix, "bad-namespace-prefix"},
		{"wrong local name", `<stream:features xmlns:stream='http://etherx.jabber.org/streams'>`, ErrBadFormat, "bad-format"},
		{"white space before the declaration", "\n \t" + header, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tc.in), Limits{}).Header()
			if !errors.Is(err, tc.err) || tc.err == nil && err != nil {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if c := StreamErrorFor(err); c != tc.cond {
				t.Errorf("condition %q, want %q", c, tc.cond)
			}
		})
	}
}

// After a restart the old stream's trailing white space comes before the
// new declaration (go-xmpp writes "</auth>\n").
func TestReaderRestartAfterWhiteSpace(t *testing.T) {
	in := header + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>\n" + header + "<iq type='get' id='1'/>"
	r := NewReader(strings.NewReader(in), Limits{})
	if _, err := r.Header(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	r.Restart()
	if _, err := r.Header(); err != nil {
		t.Fatalf("second header: %v", err)
	}
	if el, err := r.Next(); err != nil || el.Name != "iq" {
		t.Fatalf("after restart: %v %v", el, err)
	}
}
