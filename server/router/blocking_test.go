package router

import (
	"context"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/blocking"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/wire"
)

// routerHost is a plugins.Host whose Route and Resources go through a real
// router, so a real plugin and the router run together as on a node.
type routerHost struct {
	*plugintest.Host
	r *Router
}

func (h *routerHost) Route(ctx context.Context, el *wire.Element) { h.r.Route(ctx, el) }

// ForPlugin keeps the plugins on this host (plugintest's would route
// into its recorder, not the router).
func (h *routerHost) ForPlugin(id string) plugins.Host { return h }
func (h *routerHost) Resources(ctx context.Context, bare string) ([]plugins.Resource, error) {
	return h.r.Resources(ctx, bare)
}
func (h *routerHost) SetCarbons(ctx context.Context, full string, on bool) error {
	return h.r.SetCarbons(ctx, full, on)
}

// withBlocking installs the real XEP-0191 plugin on the env's router.
func withBlocking(t *testing.T, e *env) {
	t.Helper()
	ph := plugintest.NewHostWithStore(t, e.store)
	ph.Cfg = e.cfg
	h := &routerHost{Host: ph, r: e.r}
	m := plugins.NewManager(h, e.r.log, []plugins.Plugin{blocking.New()})
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start plugins: %v", err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	e.r.SetPlugins(m)
}

// presenceTo returns the presence stanzas in els addressed to the bare JID
// to (or one of its resources).
func presenceTo(els []*wire.Element, to string) []*wire.Element {
	var out []*wire.Element
	for _, el := range els {
		if el.Name == "presence" && wire.BareJID(el.To()) == to {
			out = append(out, el)
		}
	}
	return out
}

// TestBlockedContactGetsNoPresence: juliet blocks romeo (local) and
// tybalt (another domain), both with a mutual subscription. Neither gets
// her presence by any path (initial broadcast, update, probe answers,
// unavailable at logout, the answer for a contact without subscription),
// while benvolio, subscribed the same way, gets all of it (XEP-0191 §3.3).
func TestBlockedContactGetsNoPresence(t *testing.T) {
	e := newEnv(t)
	fed := &capFed{}
	e.r.SetFederation(fed)
	withBlocking(t, e)
	e.user("juliet", "romeo", "benvolio")
	const j = "juliet@example.com"
	for _, c := range []string{"romeo@example.com", "benvolio@example.com", "tybalt@remote.net", "mercutio@remote.net"} {
		e.setItem(j, c, stB, true)
	}
	e.setItem("romeo@example.com", j, stB, true)
	e.setItem("benvolio@example.com", j, stB, true)
	romeo := e.online("romeo", "x", 0)
	benvolio := e.online("benvolio", "x", 0)

	jb := e.bind("juliet", "balcony")
	e.send(jb, `<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='romeo@example.com'/><item jid='tybalt@remote.net'/><item jid='stranger@remote.net'/></block></iq>`)
	if !hasResult(jb.take(), "b1") {
		t.Fatal("block refused")
	}
	romeo.take()
	benvolio.take()
	fed.take()

	steps := []struct {
		name string
		do   func()
		// what benvolio (local) and mercutio (remote) must get from juliet
		wantBenvolio, wantMercutio int
	}{
		{"initial presence", func() { e.send(jb, `<presence/>`) }, 1, 2}, // mercutio: presence and a probe
		{"update", func() { e.send(jb, `<presence><show>away</show></presence>`) }, 1, 1},
		{"local probes", func() {
			e.route(`<presence type='probe' from='romeo@example.com/x' to='juliet@example.com'/>`)
			e.route(`<presence type='probe' from='benvolio@example.com/x' to='juliet@example.com'/>`)
		}, 1, 0},
		{"remote probes", func() {
			e.r.FromRemote(context.Background(), mustParse(t, `<presence type='probe' from='tybalt@remote.net/y' to='juliet@example.com'/>`))
			e.r.FromRemote(context.Background(), mustParse(t, `<presence type='probe' from='mercutio@remote.net/y' to='juliet@example.com'/>`))
		}, 0, 1},
		{"probe from a blocked stranger", func() {
			// No subscription: the answer would be unsubscribed, but a
			// blocked entity gets no answer at all.
			e.r.FromRemote(context.Background(), mustParse(t, `<presence type='probe' from='stranger@remote.net' to='juliet@example.com'/>`))
		}, 0, 0},
		{"logout", func() { e.r.Unbind(context.Background(), jb, nil) }, 1, 1},
		{"probe while offline", func() {
			e.r.FromRemote(context.Background(), mustParse(t, `<presence type='probe' from='tybalt@remote.net/y' to='juliet@example.com'/>`))
			e.r.FromRemote(context.Background(), mustParse(t, `<presence type='probe' from='mercutio@remote.net/y' to='juliet@example.com'/>`))
		}, 0, 1},
	}
	for _, st := range steps {
		st.do()
		if got := presenceTo(romeo.take(), "romeo@example.com"); len(got) != 0 {
			t.Errorf("%s: blocked local contact got %q", st.name, sigs(got))
		}
		out := fed.take()
		for _, bad := range []string{"tybalt@remote.net", "stranger@remote.net"} {
			if got := presenceTo(out, bad); len(got) != 0 {
				t.Errorf("%s: blocked remote %s got %q", st.name, bad, sigs(got))
			}
		}
		if got := presenceTo(benvolio.take(), "benvolio@example.com"); len(got) != st.wantBenvolio {
			t.Errorf("%s: benvolio got %q, want %d presence", st.name, sigs(got), st.wantBenvolio)
		}
		if got := presenceTo(out, "mercutio@remote.net"); len(got) != st.wantMercutio {
			t.Errorf("%s: mercutio got %q, want %d presence", st.name, sigs(got), st.wantMercutio)
		}
	}
}

func hasResult(els []*wire.Element, id string) bool {
	for _, el := range els {
		if el.Name == "iq" && el.ID() == id && el.Type() == "result" {
			return true
		}
	}
	return false
}

// TestBlockedContactClusterProbe: the probe from a blocked remote contact
// arrives on node1 while the user is connected to node2; node2 answers for
// its resource and must not answer the blocked contact either.
func TestBlockedContactClusterProbe(t *testing.T) {
	e1, e2, _ := twoNodes(t)
	fed1, fed2 := &capFed{}, &capFed{}
	e1.r.SetFederation(fed1)
	e2.r.SetFederation(fed2)
	withBlocking(t, e1)
	withBlocking(t, e2)
	const j = "juliet@example.com"
	e1.setItem(j, "tybalt@remote.net", stB, true)
	e1.setItem(j, "mercutio@remote.net", stB, true)
	jb := e2.bind("juliet", "balcony")
	e2.send(jb, `<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='tybalt@remote.net'/></block></iq>`)
	if !hasResult(jb.take(), "b1") {
		t.Fatal("block refused")
	}
	e2.send(jb, `<presence/>`)
	fed1.take()
	fed2.take()

	for _, from := range []string{"tybalt@remote.net/y", "mercutio@remote.net/y"} {
		e1.r.FromRemote(context.Background(), mustParse(t, `<presence type='probe' from='`+from+`' to='juliet@example.com'/>`))
	}
	out := append(fed1.take(), fed2.take()...)
	if got := presenceTo(out, "tybalt@remote.net"); len(got) != 0 {
		t.Errorf("blocked contact got %q", sigs(got))
	}
	wantSigs(t, "mercutio", presenceTo(out, "mercutio@remote.net"), "presence juliet@example.com/balcony→mercutio@remote.net/y")
}
