package version_test

import (
	"runtime"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/version"
)

func TestVersion(t *testing.T) {
	version.Version = "1.2.3"
	cases := []struct {
		name     string
		settings map[string]map[string]any
		in       string
		want     string
	}{
		{"default hides os", nil,
			`<iq type='get' id='v1' from='a@example.com/r' to='example.com'><query xmlns='jabber:iq:version'/></iq>`,
			`<iq type="result" id="v1" from="example.com" to="a@example.com/r"><query xmlns="jabber:iq:version"><name>Aviary</name><version>1.2.3</version></query></iq>`},
		{"show os", map[string]map[string]any{version.ID: {"show_os": true}},
			`<iq type='get' id='v2' from='a@example.com/r'><query xmlns='jabber:iq:version'/></iq>`,
			`<iq type="result" id="v2" to="a@example.com/r"><query xmlns="jabber:iq:version"><name>Aviary</name><version>1.2.3</version><os>` + runtime.GOOS + "/" + runtime.GOARCH + `</os></query></iq>`},
		{"set is bad request", nil,
			`<iq type='set' id='v3' from='a@example.com/r'><query xmlns='jabber:iq:version'/></iq>`,
			`<iq id="v3" to="a@example.com/r" type="error"><query xmlns="jabber:iq:version"/><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := plugintest.NewHost(t)
			h.Cfg.Plugins.Settings = c.settings
			m := h.Start(t, version.New())
			if got := h.IQ(t, m, plugins.ToServer, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}
}
