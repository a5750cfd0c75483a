package carbons_test

import (
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/carbons"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

func TestCarbons(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, carbons.New())
	cases := []struct {
		name    string
		in      string
		want    string
		full    string
		on, set bool
	}{
		{"enable", `<iq type='set' id='c1' from='juliet@example.com/b'><enable xmlns='urn:xmpp:carbons:2'/></iq>`,
			`<iq type="result" id="c1" to="juliet@example.com/b"/>`, "juliet@example.com/b", true, true},
		{"disable", `<iq type='set' id='c2' from='juliet@example.com/b'><disable xmlns='urn:xmpp:carbons:2'/></iq>`,
			`<iq type="result" id="c2" to="juliet@example.com/b"/>`, "juliet@example.com/b", false, true},
		{"enable to domain", `<iq type='set' id='c3' from='romeo@example.com/a' to='example.com'><enable xmlns='urn:xmpp:carbons:2'/></iq>`,
			`<iq type="result" id="c3" from="example.com" to="romeo@example.com/a"/>`, "romeo@example.com/a", true, true},
		{"get", `<iq type='get' id='c4' from='nurse@example.com/a'><enable xmlns='urn:xmpp:carbons:2'/></iq>`,
			`<iq id="c4" to="nurse@example.com/a" type="error"><enable xmlns="urn:xmpp:carbons:2"/><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, "nurse@example.com/a", false, false},
		{"unknown element", `<iq type='set' id='c5' from='nurse@example.com/a'><private xmlns='urn:xmpp:carbons:2'/></iq>`,
			`<iq id="c5" to="nurse@example.com/a" type="error"><private xmlns="urn:xmpp:carbons:2"/><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, "nurse@example.com/a", false, false},
		{"remote sender", `<iq type='set' id='c6' from='tybalt@other.org/x' to='example.com'><enable xmlns='urn:xmpp:carbons:2'/></iq>`,
			`<iq id="c6" from="example.com" to="tybalt@other.org/x" type="error"><enable xmlns="urn:xmpp:carbons:2"/><error type="cancel"><not-allowed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, "tybalt@other.org/x", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, plugins.ToServer, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
			if on, set := h.Carbons(c.full); on != c.on || set != c.set {
				t.Errorf("carbons(%s) = %v,%v; want %v,%v", c.full, on, set, c.on, c.set)
			}
		})
	}
	if got := m.DiscoFeatures(); len(got) != 1 || got[0] != "urn:xmpp:carbons:2" {
		t.Errorf("features %v", got)
	}
}
