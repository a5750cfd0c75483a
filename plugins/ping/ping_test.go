package ping_test

import (
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/ping"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

func TestPing(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, ping.New())
	cases := []struct {
		name   string
		target plugins.Target
		in     string
		want   string
	}{
		{"to domain", plugins.ToServer,
			`<iq type='get' id='p1' from='a@example.com/r' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>`,
			`<iq type="result" id="p1" from="example.com" to="a@example.com/r"/>`},
		{"no to", plugins.ToServer,
			`<iq type='get' id='p2' from='a@example.com/r'><ping xmlns='urn:xmpp:ping'/></iq>`,
			`<iq type="result" id="p2" to="a@example.com/r"/>`},
		{"from remote server", plugins.ToServer,
			`<iq type='get' id='p3' from='other.org' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>`,
			`<iq type="result" id="p3" from="example.com" to="other.org"/>`},
		{"set is bad request", plugins.ToServer,
			`<iq type='set' id='p4' from='a@example.com/r'><ping xmlns='urn:xmpp:ping'/></iq>`,
			`<iq id="p4" to="a@example.com/r" type="error"><ping xmlns="urn:xmpp:ping"/><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"account is not answered", plugins.ToAccount,
			`<iq type='get' id='p5' from='a@example.com/r' to='b@example.com'><ping xmlns='urn:xmpp:ping'/></iq>`,
			``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, c.target, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}
	if got := m.DiscoFeatures(); len(got) != 1 || got[0] != "urn:xmpp:ping" {
		t.Errorf("features %v", got)
	}
}
