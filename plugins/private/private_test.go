package private_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/private"
)

func TestPrivate(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, private.New())
	notAcceptable := `<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`
	cases := []struct {
		name   string
		target plugins.Target
		in     string
		want   string
	}{
		{"get nothing stored", plugins.ToServer,
			`<iq type='get' id='p1' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>`,
			`<iq type="result" id="p1" to="juliet@example.com/b"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query></iq>`},
		{"set two fragments", plugins.ToServer,
			`<iq type='set' id='p2' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='c@muc.example.com' autojoin='true'/></storage><exodus xmlns='exodus:prefs'><defaultnick>Jul</defaultnick></exodus></query></iq>`,
			`<iq type="result" id="p2" to="juliet@example.com/b"/>`},
		{"get one back", plugins.ToServer,
			`<iq type='get' id='p3' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>`,
			`<iq type="result" id="p3" to="juliet@example.com/b"><query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"><defaultnick>Jul</defaultnick></exodus></query></iq>`},
		{"get by own bare JID", plugins.ToAccount,
			`<iq type='get' id='p4' from='juliet@example.com/b' to='juliet@example.com'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>`,
			`<iq type="result" id="p4" from="juliet@example.com" to="juliet@example.com/b"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"><conference jid="c@muc.example.com" autojoin="true"/></storage></query></iq>`},
		{"other user's storage is forbidden", plugins.ToAccount,
			`<iq type='get' id='p5' from='romeo@example.com/a' to='juliet@example.com'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>`,
			`<iq id="p5" from="juliet@example.com" to="romeo@example.com/a" type="error"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"another user sees own empty storage", plugins.ToServer,
			`<iq type='get' id='p6' from='romeo@example.com/a'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>`,
			`<iq type="result" id="p6" to="romeo@example.com/a"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query></iq>`},
		{"jabber:client fragment", plugins.ToServer,
			`<iq type='set' id='p7' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><foo xmlns='jabber:client'/></query></iq>`,
			`<iq id="p7" to="juliet@example.com/b" type="error"><query xmlns="jabber:iq:private"><foo xmlns="jabber:client"/></query>` + notAcceptable + `</iq>`},
		{"jabber:server fragment", plugins.ToServer,
			`<iq type='get' id='p8' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><foo xmlns='jabber:server'/></query></iq>`,
			`<iq id="p8" to="juliet@example.com/b" type="error"><query xmlns="jabber:iq:private"><foo xmlns="jabber:server"/></query>` + notAcceptable + `</iq>`},
		{"jabber:iq:private fragment", plugins.ToServer,
			`<iq type='set' id='p9' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><foo xmlns='jabber:iq:private'/></query></iq>`,
			`<iq id="p9" to="juliet@example.com/b" type="error"><query xmlns="jabber:iq:private"><foo xmlns="jabber:iq:private"/></query>` + notAcceptable + `</iq>`},
		{"fragment without namespace", plugins.ToServer,
			`<iq type='set' id='p10' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><foo/></query></iq>`,
			`<iq id="p10" to="juliet@example.com/b" type="error"><query xmlns="jabber:iq:private"><foo/></query>` + notAcceptable + `</iq>`},
		{"empty query", plugins.ToServer,
			`<iq type='get' id='p11' from='juliet@example.com/b'><query xmlns='jabber:iq:private'/></iq>`,
			`<iq id="p11" to="juliet@example.com/b" type="error"><query xmlns="jabber:iq:private"/>` + notAcceptable + `</iq>`},
		{"remote sender", plugins.ToAccount,
			`<iq type='get' id='p12' from='juliet@other.org/b' to='juliet@example.com'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>`,
			`<iq id="p12" from="juliet@example.com" to="juliet@other.org/b" type="error"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"overwrite", plugins.ToServer,
			`<iq type='set' id='p13' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>J2</defaultnick></exodus></query></iq>`,
			`<iq type="result" id="p13" to="juliet@example.com/b"/>`},
		{"get two", plugins.ToServer,
			`<iq type='get' id='p14' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/><storage xmlns='storage:bookmarks'/></query></iq>`,
			`<iq type="result" id="p14" to="juliet@example.com/b"><query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"><defaultnick>J2</defaultnick></exodus><storage xmlns="storage:bookmarks"><conference jid="c@muc.example.com" autojoin="true"/></storage></query></iq>`},
	}
	for _, c := range cases { // sequential
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, c.target, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestQuota: an account stores at most max_items fragments of max_bytes
// in all; past either a set gets not-acceptable naming the limit and the
// fragment is not stored.
func TestQuota(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.Plugins.Settings = map[string]map[string]any{private.ID: {"max_items": 2, "max_bytes": 200}}
	m := h.Start(t, private.New())
	set := func(id, frag string) string {
		return h.IQ(t, m, plugins.ToServer, `<iq type='set' id='`+id+`' from='juliet@example.com/b'><query xmlns='jabber:iq:private'>`+frag+`</query></iq>`)
	}
	full := func(id, frag, text string) string {
		return `<iq id="` + id + `" to="juliet@example.com/b" type="error"><query xmlns="jabber:iq:private">` + frag +
			`</query><error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">` + text + `</text></error></iq>`
	}
	ok := func(id string) string { return `<iq type="result" id="` + id + `" to="juliet@example.com/b"/>` }
	big := `<a xmlns="urn:a">` + strings.Repeat("x", 200) + `</a>` // replaces a
	cases := []struct{ name, id, frag, want string }{
		{"first", "q1", `<a xmlns="urn:a"/>`, ok("q1")},
		{"second", "q2", `<b xmlns="urn:b"/>`, ok("q2")},
		{"third is one item too many", "q3", `<c xmlns="urn:c"/>`, full("q3", `<c xmlns="urn:c"/>`, "private XML storage is full: at most 2 fragments per account")},
		{"replacing one fits", "q4", `<b xmlns="urn:b">new</b>`, ok("q4")},
		{"too many bytes", "q5", big, full("q5", big, "private XML storage is full: at most 200 bytes per account")},
		{"another account has its own quota", "q6", `<c xmlns="urn:c"/>`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.want == "" {
				got := h.IQ(t, m, plugins.ToServer, `<iq type='set' id='q6' from='romeo@example.com/a'><query xmlns='jabber:iq:private'>`+c.frag+`</query></iq>`)
				if want := `<iq type="result" id="q6" to="romeo@example.com/a"/>`; got != want {
					t.Fatalf("got  %s\nwant %s", got, want)
				}
				return
			}
			if got := set(c.id, c.frag); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='g' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><c xmlns='urn:c'/><b xmlns='urn:b'/></query></iq>`)
	if want := `<iq type="result" id="g" to="juliet@example.com/b"><query xmlns="jabber:iq:private"><c xmlns="urn:c"/><b xmlns="urn:b">new</b></query></iq>`; got != want {
		t.Fatalf("after the refused sets:\n got  %s\nwant %s", got, want)
	}
}

// TestDefaultQuota: without settings an account may keep DefaultMaxItems
// fragments.
func TestDefaultQuota(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, private.New())
	for i := range private.DefaultMaxItems + 1 {
		got := h.IQ(t, m, plugins.ToServer, fmt.Sprintf(`<iq type='set' id='d%d' from='juliet@example.com/b'><query xmlns='jabber:iq:private'><f%d xmlns='urn:f'/></query></iq>`, i, i))
		refused := strings.Contains(got, "not-acceptable")
		if refused != (i == private.DefaultMaxItems) {
			t.Fatalf("fragment %d: %s", i+1, got)
		}
	}
}
