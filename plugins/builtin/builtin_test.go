package builtin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/builtin"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

var all = []string{
	"xep0012.last", "xep0030.disco", "xep0045.muc", "xep0049.private", "xep0050.adhoc", "xep0054.vcard", "xep0060.pubsub", "xep0065.proxy", "xep0077.register", "xep0092.version", "xep0114.component", "xep0163.pep", "xep0191.blocking", "xep0199.ping", "xep0215.extdisco", "xep0280.carbons", "xep0313.mam", "xep0357.push", "xep0363.upload",
}

func ids(list []plugins.Plugin) string {
	var out []string
	for _, p := range list {
		out = append(out, p.ID())
	}
	return strings.Join(out, " ")
}

func TestNew(t *testing.T) {
	cases := []struct {
		name     string
		disabled []string
		want     []string
	}{
		{"all", nil, all},
		{"two disabled", []string{"xep0191.blocking", "xep0077.register"}, []string{
			"xep0012.last", "xep0030.disco", "xep0045.muc", "xep0049.private", "xep0050.adhoc", "xep0054.vcard", "xep0060.pubsub", "xep0065.proxy", "xep0092.version", "xep0114.component", "xep0163.pep", "xep0199.ping", "xep0215.extdisco", "xep0280.carbons", "xep0313.mam", "xep0357.push", "xep0363.upload"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := &conf.Config{}
			cfg.Plugins.Disabled = c.disabled
			if got := ids(builtin.New(cfg)); got != strings.Join(c.want, " ") {
				t.Errorf("got  %s\nwant %s", got, strings.Join(c.want, " "))
			}
		})
	}
}

func TestAllStart(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, builtin.New(h.Cfg)...) // fails unless every plugin starts
	if got := strings.Join(m.IDs(), " "); got != strings.Join(all, " ") {
		t.Errorf("running %s", got)
	}
}

// BenchmarkPingDispatch measures one IQ through the manager with every
// built-in plugin loaded.
func BenchmarkPingDispatch(b *testing.B) {
	h := plugintest.NewHost(b)
	m := h.Start(b, builtin.New(h.Cfg)...)
	el := plugintest.Parse(b, `<iq type='get' id='p1' from='a@example.com/r' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>`)
	iq := &plugins.IQ{Stanza: el, From: el.From(), FromLocal: true, To: "example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := m.HandleIQ(ctx, iq, plugins.ToServer); !ok {
			b.Fatal("not handled")
		}
	}
}

// BenchmarkDeliverIntercept measures the interceptors every delivered
// stanza passes with every built-in plugin loaded (empty block list).
func BenchmarkDeliverIntercept(b *testing.B) {
	h := plugintest.NewHost(b)
	m := h.Start(b, builtin.New(h.Cfg)...)
	st := &plugins.Stanza{El: plugintest.Parse(b, `<message from='b@example.com/x' to='a@example.com'><body>hi</body></message>`), Session: "a@example.com/r"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := m.Intercept(ctx, plugins.PointDeliver, st); v != plugins.Continue {
			b.Fatal(v)
		}
	}
}
