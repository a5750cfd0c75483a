package extdisco_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/extdisco"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

var now = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)

func start(t *testing.T, es conf.ExternalServicesConfig) (*plugintest.Host, *plugins.Manager) {
	t.Helper()
	h := plugintest.NewHost(t)
	h.Cfg.ExternalServices = es
	h.Cfg.ApplyDefaults()
	if errs := h.Cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	p := extdisco.New()
	p.Now = func() time.Time { return now }
	return h, h.Start(t, p)
}

func configured() conf.ExternalServicesConfig {
	return conf.ExternalServicesConfig{
		Secret:        "north",
		CredentialTTL: time.Hour,
		Services: []conf.ExternalService{
			{Type: "stun", Host: "stun.example.com"},
			{Type: "turn", Host: "turn.example.com", Name: "Relay"},
			{Type: "turns", Host: "turn.example.com"},
			{Type: "turn", Host: "static.example.com", Port: 3479, Transport: "tcp", Username: "u", Password: "p"},
		},
	}
}

// TestCredentials checks the TURN REST API derivation against a value
// computed independently: printf '%s' '1765011600:romeo@example.com' |
// openssl dgst -sha1 -hmac north -binary | base64.
func TestCredentials(t *testing.T) {
	u, p := extdisco.Credentials("north", "romeo@example.com", time.Unix(1765011600, 0))
	if u != "1765011600:romeo@example.com" || p != "qscXqtCwkF2lgBnL1OPVWg6kBF8=" {
		t.Errorf("got %q %q", u, p)
	}
}

func TestServices(t *testing.T) {
	h, m := start(t, configured())
	exp := now.Add(time.Hour)
	user, pass := extdisco.Credentials("north", "romeo@example.com", exp)
	cred := ` restricted="1" username="` + user + `" password="` + pass + `" expires="2026-12-06T09:00:00Z"`
	for _, ns := range []string{extdisco.NS, extdisco.NS1} {
		got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='s' from='romeo@example.com/orchard'><services xmlns='`+ns+`'/></iq>`)
		want := `<iq type="result" id="s" to="romeo@example.com/orchard"><services xmlns="` + ns + `">` +
			`<service type="stun" host="stun.example.com" port="3478" transport="udp"/>` +
			`<service type="turn" host="turn.example.com" port="3478" transport="udp" name="Relay"` + cred + `/>` +
			`<service type="turns" host="turn.example.com" port="5349" transport="tcp"` + cred + `/>` +
			`<service type="turn" host="static.example.com" port="3479" transport="tcp" restricted="1" username="u" password="p"/>` +
			`</services></iq>`
		if got != want {
			t.Errorf("%s\ngot  %s\nwant %s", ns, got, want)
		}
	}
	got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='s' from='romeo@example.com/orchard'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>`)
	if want := `<iq type="result" id="s" to="romeo@example.com/orchard"><services xmlns="urn:xmpp:extdisco:2"><service type="stun" host="stun.example.com" port="3478" transport="udp"/></services></iq>`; got != want {
		t.Errorf("by type\ngot  %s\nwant %s", got, want)
	}
	if f := m.DiscoFeatures(); !slices.Contains(f, extdisco.NS) || !slices.Contains(f, extdisco.NS1) {
		t.Errorf("disco features %v", f)
	}
}

func TestCredentialsRequest(t *testing.T) {
	h, m := start(t, configured())
	user, pass := extdisco.Credentials("north", "romeo@example.com", now.Add(time.Hour))
	cases := []struct{ name, service, want string }{
		{"by host and type", `<service host='turn.example.com' type='turns'/>`,
			`<credentials xmlns="urn:xmpp:extdisco:2"><service type="turns" host="turn.example.com" port="5349" transport="tcp" restricted="1" username="` + user + `" password="` + pass + `" expires="2026-12-06T09:00:00Z"/></credentials>`},
		{"by host and port", `<service host='static.example.com' port='3479'/>`,
			`<credentials xmlns="urn:xmpp:extdisco:2"><service type="turn" host="static.example.com" port="3479" transport="tcp" restricted="1" username="u" password="p"/></credentials>`},
		{"unknown host", `<service host='nowhere.example.com' type='turn'/>`, `item-not-found`},
		{"a STUN server takes none", `<service host='stun.example.com'/>`, `item-not-found`},
		{"no host", `<service type='turn'/>`, `bad-request`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='c' from='romeo@example.com/orchard'><credentials xmlns='urn:xmpp:extdisco:2'>`+c.service+`</credentials></iq>`)
			if !strings.Contains(got, c.want) {
				t.Errorf("got %s\nwant it to contain %s", got, c.want)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	h, m := start(t, configured())
	cases := []struct{ name, iq, want string }{
		{"remote user", `<iq type='get' id='r' from='iago@evil.example/x'><services xmlns='urn:xmpp:extdisco:2'/></iq>`, "forbidden"},
		{"set", `<iq type='set' id='r' from='romeo@example.com/orchard'><services xmlns='urn:xmpp:extdisco:2'/></iq>`, "bad-request"},
		{"unknown element", `<iq type='get' id='r' from='romeo@example.com/orchard'><servers xmlns='urn:xmpp:extdisco:2'/></iq>`, "bad-request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, plugins.ToServer, c.iq); !strings.Contains(got, c.want) || strings.Contains(got, "password") {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestOffWithoutServices(t *testing.T) {
	h, m := start(t, conf.ExternalServicesConfig{})
	if f := m.DiscoFeatures(); slices.Contains(f, extdisco.NS) {
		t.Errorf("advertised with no services: %v", f)
	}
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='s' from='romeo@example.com/orchard'><services xmlns='urn:xmpp:extdisco:2'/></iq>`); !strings.Contains(got, "service-unavailable") {
		t.Errorf("got %s", got)
	}
}
