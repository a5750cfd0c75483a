package register_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/register"
)

const form = `<query xmlns="jabber:iq:register"><instructions>` + register.Instructions + `</instructions><username/><password/></query>`

func preAuth(t *testing.T, m *plugins.Manager, in string) string {
	t.Helper()
	reply, ok := m.HandlePreAuthIQ(context.Background(), plugintest.Parse(t, in), "192.0.2.1")
	if !ok {
		return ""
	}
	return reply.String()
}

func TestPreAuth(t *testing.T) {
	cases := []struct {
		name string
		open bool
		in   string
		want string
	}{
		{"closed get", false, `<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>`,
			`<iq id="r1" type="error"><query xmlns="jabber:iq:register"/><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"closed set", false, `<iq type='set' id='r2'><query xmlns='jabber:iq:register'><username>bill</username><password>pw</password></query></iq>`,
			`<iq id="r2" type="error"><query xmlns="jabber:iq:register"><username>bill</username><password>pw</password></query><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"open get", true, `<iq type='get' id='r3'><query xmlns='jabber:iq:register'/></iq>`,
			`<iq type="result" id="r3">` + form + `</iq>`},
		{"open get with to", true, `<iq type='get' id='r3b' to='example.com'><query xmlns='jabber:iq:register'/></iq>`,
			`<iq type="result" id="r3b">` + form + `</iq>`},
		{"register", true, `<iq type='set' id='r4'><query xmlns='jabber:iq:register'><username>Bill</username><password>Calliope</password></query></iq>`,
			`<iq type="result" id="r4"/>`},
		{"taken", true, `<iq type='set' id='r5'><query xmlns='jabber:iq:register'><username>bill</username><password>x</password></query></iq>`,
			`<iq id="r5" type="error"><query xmlns="jabber:iq:register"><username>bill</username><password>x</password></query><error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"missing password", true, `<iq type='set' id='r6'><query xmlns='jabber:iq:register'><username>ann</username></query></iq>`,
			`<iq id="r6" type="error">` + form + `<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"empty password", true, `<iq type='set' id='r7'><query xmlns='jabber:iq:register'><username>ann</username><password/></query></iq>`,
			`<iq id="r7" type="error">` + form + `<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"invalid username", true, `<iq type='set' id='r8'><query xmlns='jabber:iq:register'><username>a@b</username><password>x</password></query></iq>`,
			`<iq id="r8" type="error">` + form + `<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"remove before auth", true, `<iq type='set' id='r9'><query xmlns='jabber:iq:register'><remove/></query></iq>`,
			`<iq id="r9" type="error"><query xmlns="jabber:iq:register"><remove/></query><error type="auth"><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"other namespace is not ours", true, `<iq type='get' id='r10'><ping xmlns='urn:xmpp:ping'/></iq>`, ``},
	}
	h := plugintest.NewHost(t)
	m := h.Start(t, register.New())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.Cfg.C2S.AllowRegistration = c.open
			if got := preAuth(t, m, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}
	if pw, ok := h.UserManager().Password("bill"); !ok || pw != "Calliope" {
		t.Errorf("bill's password %q, %v; want Calliope (username normalized)", pw, ok)
	}
	if _, ok := h.UserManager().Password("ann"); ok {
		t.Error("ann was created without a password")
	}
}

func TestStreamFeature(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, register.New())
	for _, c := range []struct {
		open, authenticated bool
		want                int
	}{{false, false, 0}, {true, false, 1}, {true, true, 0}, {false, true, 0}} {
		h.Cfg.C2S.AllowRegistration = c.open
		got := m.StreamFeatures(c.authenticated)
		if len(got) != c.want {
			t.Errorf("open=%v auth=%v: %d features, want %d", c.open, c.authenticated, len(got), c.want)
		}
		if len(got) == 1 && got[0].String() != `<register xmlns="http://jabber.org/features/iq-register"/>` {
			t.Errorf("feature %s", got[0])
		}
	}
}

func TestAuthenticated(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t) // registration closed: changes still work
	m := h.Start(t, register.New())
	if err := h.UserManager().CreateUser(ctx, "juliet", "old"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		in     string
		want   string
		routed []string
	}{
		{"get", `<iq type='get' id='a1' from='juliet@example.com/b'><query xmlns='jabber:iq:register'/></iq>`,
			`<iq type="result" id="a1" to="juliet@example.com/b"><query xmlns="jabber:iq:register"><registered/><username>juliet</username><password/></query></iq>`, nil},
		{"change password", `<iq type='set' id='a2' from='juliet@example.com/b' to='example.com'><query xmlns='jabber:iq:register'><username>juliet</username><password>new</password></query></iq>`,
			`<iq type="result" id="a2" from="example.com" to="juliet@example.com/b"/>`, nil},
		{"someone else's password", `<iq type='set' id='a3' from='juliet@example.com/b'><query xmlns='jabber:iq:register'><username>romeo</username><password>pwned</password></query></iq>`,
			`<iq id="a3" to="juliet@example.com/b" type="error"><query xmlns="jabber:iq:register"><username>romeo</username><password>pwned</password></query><error type="cancel"><not-allowed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, nil},
		{"missing password", `<iq type='set' id='a4' from='juliet@example.com/b'><query xmlns='jabber:iq:register'><username>juliet</username></query></iq>`,
			`<iq id="a4" to="juliet@example.com/b" type="error">` + form + `<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, nil},
		{"remote user", `<iq type='set' id='a5' from='juliet@other.org/b' to='example.com'><query xmlns='jabber:iq:register'><remove/></query></iq>`,
			`<iq id="a5" from="example.com" to="juliet@other.org/b" type="error"><query xmlns="jabber:iq:register"><remove/></query><error type="cancel"><not-allowed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, nil},
		{"remove", `<iq type='set' id='a6' from='juliet@example.com/b'><query xmlns='jabber:iq:register'><remove/></query></iq>`,
			`<iq type="result" id="a6" to="juliet@example.com/b"/>`,
			[]string{`<iq type="result" id="a6" to="juliet@example.com/b"/>`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, plugins.ToServer, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
			if got := h.Routed(); !reflect.DeepEqual(got, c.routed) && !(len(got) == 0 && len(c.routed) == 0) {
				t.Errorf("routed %q; want %q", got, c.routed)
			}
			if c.name == "change password" {
				if pw, _ := h.UserManager().Password("juliet"); pw != "new" {
					t.Errorf("password %q; want new", pw)
				}
			}
		})
	}
	if _, err := h.St.GetUser(ctx, "juliet"); err == nil {
		t.Error("juliet still exists after remove")
	}
	if n := h.UserManager().Kicked("juliet@example.com"); n != 1 {
		t.Errorf("kicked %d times; want 1", n)
	}
}

// TestRegistrationLimitPerAddress: past c2s.registration_limit attempts
// from one address, a registration gets resource-constraint with a text;
// another address is not affected.
func TestRegistrationLimitPerAddress(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, register.New())
	h.Cfg.C2S.AllowRegistration = true
	h.Cfg.C2S.RegistrationLimit = 2
	set := func(user, addr string) string {
		t.Helper()
		reply, _ := m.HandlePreAuthIQ(context.Background(), plugintest.Parse(t,
			`<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>`+user+`</username><password>pw</password></query></iq>`), addr)
		return reply.String()
	}
	for _, u := range []string{"u1", "u2"} {
		if got := set(u, "192.0.2.7"); got != `<iq type="result" id="r"/>` {
			t.Fatalf("%s: %s", u, got)
		}
	}
	got := set("u3", "192.0.2.7")
	want := `<iq id="r" type="error"><query xmlns="jabber:iq:register"><username>u3</username><password>pw</password></query><error type="wait"><resource-constraint xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">Too many registrations from your address (at most 2 per hour); try again in 60 minutes.</text></error></iq>`
	if got != want {
		t.Errorf("third from one address\n got %s\nwant %s", got, want)
	}
	if _, ok := h.UserManager().Password("u3"); ok {
		t.Error("u3 was created past the limit")
	}
	if got := set("u4", "192.0.2.8"); got != `<iq type="result" id="r"/>` {
		t.Errorf("another address: %s", got)
	}
}
