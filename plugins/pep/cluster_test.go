package pep_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// twoNodes runs PEP on two fake nodes "a" and "b" sharing one store;
// Juliet has a resource on each (the one on a sorts first: a is her
// home), Romeo (subscription both) one on b.
func twoNodes(t *testing.T) (ha, hb *plugintest.Host, ma, mb *plugins.Manager) {
	t.Helper()
	ha = plugintest.NewHost(t)
	hb = plugintest.NewHostWithStore(t, ha.St)
	ha.Cfg.Cluster.NodeName, hb.Cfg.Cluster.NodeName = "a", "b"
	for _, h := range []*plugintest.Host{ha, hb} {
		h.SetResources(juliet, plugins.Resource{JID: juliet + "/balcony", Node: "a", Available: true}, plugins.Resource{JID: juliet + "/garden", Node: "b", Available: true})
		h.SetResources(romeo, plugins.Resource{JID: romeo + "/orchard", Node: "b", Available: true})
	}
	ma, mb = ha.Start(t, pep.New()), hb.Start(t, pep.New())
	subscribe(t, ha, juliet, romeo, storage.SubBoth)
	return ha, hb, ma, mb
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
