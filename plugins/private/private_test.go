package private_test

import (
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
