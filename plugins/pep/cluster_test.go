package pep_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// twoNodes runs PEP on two fake nodes "a" and "b" of one in-memory
// cluster, sharing one store; Juliet has a resource on each (the one on
// a sorts first: a is her home), Romeo (subscription both) one on b.
func twoNodes(t *testing.T) (ha, hb *plugintest.Host, ma, mb *plugins.Manager) {
	t.Helper()
	_, ha, hb, ma, mb = twoNodesOnNet(t)
	return ha, hb, ma, mb
}

// twoNodesOnNet is twoNodes that also returns their in-memory cluster.
func twoNodesOnNet(t *testing.T) (net *plugintest.Net, ha, hb *plugintest.Host, ma, mb *plugins.Manager) {
	t.Helper()
	ha = plugintest.NewHost(t)
	hb = plugintest.NewHostWithStore(t, ha.St)
	ha.Cfg.Cluster.NodeName, hb.Cfg.Cluster.NodeName = "a", "b"
	net = plugintest.NewNet()
	t.Cleanup(net.Close)
	ha.Node, hb.Node = net.Join("a"), net.Join("b")
	for _, h := range []*plugintest.Host{ha, hb} {
		h.SetResources(juliet, plugins.Resource{JID: juliet + "/balcony", Node: "a", Available: true}, plugins.Resource{JID: juliet + "/garden", Node: "b", Available: true})
		h.SetResources(romeo, plugins.Resource{JID: romeo + "/orchard", Node: "b", Available: true})
	}
	ma, mb = ha.Start(t, pep.New()), hb.Start(t, pep.New())
	subscribe(t, ha, juliet, romeo, storage.SubBoth)
	return net, ha, hb, ma, mb
}

// TestCapsAnswerForwarded: node a asks Romeo's client for its caps;
// the answer comes back on b, Romeo's node, which passes it on to
// Juliet's resource on a instead of using it; a resolves it there
// (PointDeliver) and, being Juliet's home, sends the last item.
func TestCapsAnswerForwarded(t *testing.T) {
	ctx := context.Background()
	ha, hb, ma, mb := twoNodes(t)
	ha.IQ(t, ma, plugins.ToAccount, `<iq type='set' id='p' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+tune+`'><item id='t1'><tune xmlns='`+tune+`'/></item></publish></pubsub></iq>`)
	ver := pep.CapsHash(plugintest.Parse(t, romeoInfo))
	presence := plugintest.Parse(t, `<presence from='romeo@example.com/orchard' to='juliet@example.com'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='`+ver+`'/></presence>`)
	ma.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: presence, Session: juliet + "/balcony"})
	q := waitRouted(t, ha, 1)[0]
	id := regexp.MustCompile(`id="(pepcaps-[0-9a-f-]+)"`).FindStringSubmatch(q)[1]
	answer := plugintest.Parse(t, `<iq type='result' id='`+id+`' from='romeo@example.com/orchard' to='juliet@example.com'>`+strings.ReplaceAll(romeoInfo, "VER", ver)+`</iq>`)
	if v, _ := mb.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: answer, Session: romeo + "/orchard"}); v != plugins.Handled {
		t.Fatalf("b let the answer through: %v", v)
	}
	fwd := waitRouted(t, hb, 1)[0]
	if !strings.Contains(fwd, `to="juliet@example.com/balcony"`) || !strings.Contains(fwd, `id="`+id+`"`) {
		t.Fatalf("b passed on %s", fwd)
	}
	if v, _ := ma.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: plugintest.Parse(t, fwd), Session: juliet + "/balcony"}); v != plugins.Handled {
		t.Fatalf("a delivered the answer to the client: %v", v)
	}
	if got := waitRouted(t, ha, 1)[0]; !strings.Contains(got, `to="romeo@example.com/orchard"`) || !strings.Contains(got, `<item id="t1"`) {
		t.Fatalf("last item from a: %s", got)
	}
	if got := hb.Routed(); len(got) != 0 {
		t.Errorf("b sent too: %v", got)
	}
}

// TestLastItemsFromHome: both nodes see Romeo come online with caps they
// know; only Juliet's home node sends him the last item.
func TestLastItemsFromHome(t *testing.T) {
	ctx := context.Background()
	ha, hb, ma, mb := twoNodes(t)
	ha.IQ(t, ma, plugins.ToAccount, `<iq type='set' id='p' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+tune+`'><item id='t1'><tune xmlns='`+tune+`'/></item></publish></pubsub></iq>`)
	ver := pep.CapsHash(plugintest.Parse(t, romeoInfo))
	if err := ha.St.SetProperty(ctx, "pep.caps."+ver, tune); err != nil { // verified earlier, by some node
		t.Fatal(err)
	}
	for _, c := range []struct {
		m       *plugins.Manager
		session string
	}{{ma, juliet + "/balcony"}, {mb, juliet + "/garden"}} {
		el := plugintest.Parse(t, `<presence from='romeo@example.com/orchard' to='juliet@example.com'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='`+ver+`'/></presence>`)
		c.m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: el, Session: c.session})
	}
	if got := waitRouted(t, ha, 1)[0]; !strings.Contains(got, `to="romeo@example.com/orchard"`) || !strings.Contains(got, `<item id="t1"`) {
		t.Fatalf("last item from a: %s", got)
	}
	// b resolved the version too (a publish there reaches Romeo) but sent
	// nothing: publish on b and see exactly the notification.
	hb.IQ(t, mb, plugins.ToAccount, `<iq type='set' id='p2' from='juliet@example.com/garden'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+tune+`'><item id='t2'><tune xmlns='`+tune+`'/></item></publish></pubsub></iq>`)
	got := waitRouted(t, hb, 1)
	if !strings.Contains(got[0], `<item id="t2"`) {
		t.Errorf("b routed %v, want only the t2 notification", got)
	}
}

// publishFrom publishes tune item id from Juliet's resource on m's node.
func publishFrom(t *testing.T, h *plugintest.Host, m *plugins.Manager, resource, id string) {
	t.Helper()
	got := h.IQ(t, m, plugins.ToAccount, strings.Replace(publishTune(id), juliet+"/balcony", juliet+"/"+resource, 1))
	if !strings.Contains(got, `type="result"`) {
		t.Fatalf("publish %s from %s: %s", id, resource, got)
	}
}

// romeoOnBoth delivers Romeo's presence with caps ver to Juliet's
// session on each node and returns the ID of the caps query each sends.
func romeoOnBoth(t *testing.T, ha, hb *plugintest.Host, ma, mb *plugins.Manager, c string) (idA, idB string) {
	t.Helper()
	ctx := context.Background()
	for _, n := range []struct {
		h       *plugintest.Host
		m       *plugins.Manager
		session string
		id      *string
	}{{ha, ma, juliet + "/balcony", &idA}, {hb, mb, juliet + "/garden", &idB}} {
		el := plugintest.Parse(t, `<presence from='romeo@example.com/orchard' to='juliet@example.com'>`+c+`</presence>`)
		n.m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: el, Session: n.session})
		q := waitRouted(t, n.h, 1)[0]
		if summary(q) != "query" {
			t.Fatalf("presence caused %s, want a caps query", q)
		}
		*n.id = queryIDs.FindStringSubmatch(q)[1]
	}
	return idA, idB
}

// answerOn hands Romeo's answer to a caps query to the node that asked:
// b, his node, at PointInbound; a at PointDeliver (b passed it on).
func answerOn(t *testing.T, m *plugins.Manager, pt plugins.Point, id, info, ver string) {
	t.Helper()
	el := plugintest.Parse(t, `<iq type='result' id='`+id+`' from='romeo@example.com/orchard' to='juliet@example.com'>`+strings.ReplaceAll(info, "VER", ver)+`</iq>`)
	session := juliet + "/balcony"
	if pt == plugins.PointInbound {
		session = romeo + "/orchard"
	}
	if v, err := m.Intercept(context.Background(), pt, &plugins.Stanza{El: el, Session: session}); err != nil || v != plugins.Handled {
		t.Fatalf("answer not handled: %v %v", v, err)
	}
}

// settled waits for both nodes' background work (b's first: it may ask
// a) and returns what they routed since, summarized.
func settled(t *testing.T, ha, hb *plugintest.Host, ma, mb *plugins.Manager) []string {
	t.Helper()
	for _, m := range []*plugins.Manager{mb, ma} {
		pep.Idle(m.Plugin(pep.ID).(*pep.Plugin))
	}
	var out []string
	for _, s := range append(ha.Routed(), hb.Routed()...) {
		out = append(out, summary(s))
	}
	return out
}

// TestPublishElsewhereWhileCapsPending: Romeo's client, whose caps
// version is not a hash (so no node can share it), changes its filter to
// tunes; Juliet's home (a) resolves it and sends him the last tune, t1;
// then Juliet publishes t2 from her resource on b, where his caps are
// still being asked for. b asks a, which knows he wants tunes: he gets
// t2 once. Before, b left him out (unresolved there) and, not being the
// home, sent nothing when its own answer came: t2 never reached him.
func TestPublishElsewhereWhileCapsPending(t *testing.T) {
	ha, hb, ma, mb := twoNodes(t)
	publishFrom(t, ha, ma, "balcony", "t1")
	idA, idB := romeoOnBoth(t, ha, hb, ma, mb, `<c xmlns='http://jabber.org/protocol/caps' node='https://example.org/client' ver='legacy-2'/>`)
	answerOn(t, ma, plugins.PointDeliver, idA, romeoInfo, "legacy-2")
	if got := summary(waitRouted(t, ha, 1)[0]); got != "tune t1" {
		t.Fatalf("a sent %q, want the last item t1", got)
	}
	publishFrom(t, hb, mb, "garden", "t2")
	answerOn(t, mb, plugins.PointInbound, idB, romeoInfo, "legacy-2")
	if got := settled(t, ha, hb, ma, mb); !slices.Equal(got, []string{"tune t2"}) {
		t.Fatalf("after the publish on b, Romeo got %q, want t2 once", got)
	}
}

// TestPublishElsewhereBeforeHomeResolves: Romeo's new caps are resolved
// on b first (and shared); a, Juliet's home, still waits for its own
// answer when Juliet publishes t2 from b. Romeo gets t2 once: before, b
// notified him and a, resolving afterwards, sent t2 again as the last
// item of a node he newly wanted.
func TestPublishElsewhereBeforeHomeResolves(t *testing.T) {
	ctx := context.Background()
	ha, hb, ma, mb := twoNodes(t)
	publishFrom(t, ha, ma, "balcony", "t1")
	ver := pep.CapsHash(plugintest.Parse(t, romeoInfo))
	idA, idB := romeoOnBoth(t, ha, hb, ma, mb, `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='`+ver+`'/>`)
	answerOn(t, mb, plugins.PointInbound, idB, romeoInfo, ver)
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		_, err := ha.St.GetProperty(ctx, "pep.caps."+ver)
		return err
	})
	publishFrom(t, hb, mb, "garden", "t2")
	answerOn(t, ma, plugins.PointDeliver, idA, romeoInfo, ver)
	if got := settled(t, ha, hb, ma, mb); !slices.Equal(got, []string{"tune t2"}) {
		t.Fatalf("Romeo got %q, want t2 once", got)
	}
}

// TestPublishWhenHomeUnreachable: Juliet's home (a) cannot be reached
// when she publishes t2 from b, where Romeo's new caps are still being
// asked for. b decides alone: it notes the publish as missed for him and
// sends him t2 when his answer comes, though it is not the home.
func TestPublishWhenHomeUnreachable(t *testing.T) {
	net, ha, hb, ma, mb := twoNodesOnNet(t)
	publishFrom(t, ha, ma, "balcony", "t1")
	_, idB := romeoOnBoth(t, ha, hb, ma, mb, `<c xmlns='http://jabber.org/protocol/caps' node='https://example.org/client' ver='legacy-3'/>`)
	net.Crash("a")
	publishFrom(t, hb, mb, "garden", "t2")
	answerOn(t, mb, plugins.PointInbound, idB, romeoInfo, "legacy-3")
	if got := summary(waitRouted(t, hb, 1)[0]); got != "tune t2" {
		t.Fatalf("b sent %q, want t2", got)
	}
}
