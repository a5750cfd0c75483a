package plugins_test

import (
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestPubSubServiceInCluster: on two real nodes (PostgreSQL and
// Hazelcast) the service at pubsub.localhost answers on both, whichever
// node owns the pubsub node a request names (one node of each owner is
// used), and every publish and retraction reaches each subscriber once:
// Bob's bare JID (his resources on both nodes) and Carol's full JID.
func TestPubSubServiceInCluster(t *testing.T) {
	a, b := twoNodes(t, "pubsub", "alice", "bob", "carol")
	// A pubsub node owned by each server.
	members := []plugins.Member{{Name: "node-a"}, {Name: "node-b"}}
	owned := map[string]string{}
	for i := 0; len(owned) < 2; i++ {
		k := fmt.Sprint("topic-", i)
		if o := plugins.Rendezvous(k, members); owned[o] == "" {
			owned[o] = k
		}
	}

	aliceA := newPEPPeer(t, a, "alice", "a", "")
	aliceB := newPEPPeer(t, b, "alice", "b", "")
	bobA := newPEPPeer(t, a, "bob", "a", "")
	bobB := newPEPPeer(t, b, "bob", "b", "")
	carolB := newPEPPeer(t, b, "carol", "b", "")
	carolA := newPEPPeer(t, a, "carol", "a", "") // not subscribed: gets nothing
	// A headline to Bob's bare JID goes to his available resources: both
	// must be online before the first event.
	bobA.waitOnline(t, "bob@localhost/b")
	bobB.waitOnline(t, "bob@localhost/a")

	for _, node := range []string{owned["node-a"], owned["node-b"]} {
		iqOn(t, aliceB, `<iq type='set' id='c' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='`+node+`'/></pubsub></iq>`)
		iqOn(t, bobA, `<iq type='set' id='s' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='`+node+`' jid='bob@localhost'/></pubsub></iq>`)
		iqOn(t, carolB, `<iq type='set' id='s' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='`+node+`' jid='carol@localhost/b'/></pubsub></iq>`)
		// Each step waits for every subscriber: one node's stanzas to a
		// session keep their order, so a copy sent twice shows up in
		// place of the next step's event.
		steps := []struct {
			from  *pepPeer
			xml   string
			event string
		}{
			{aliceA, servicePublish("pubsub.localhost", node, "i1"), "publish i1"},
			{aliceB, servicePublish("pubsub.localhost", node, "i2"), "publish i2"},
			{aliceA, `<iq type='set' id='r' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='` + node + `' notify='true'><item id='i1'/></retract></pubsub></iq>`, "retract i1"},
			{aliceB, servicePublish("pubsub.localhost", node, "i3"), "publish i3"},
		}
		for _, st := range steps {
			iqOn(t, st.from, st.xml)
			for _, p := range []*pepPeer{bobA, bobB, carolB} {
				p.expect(t, st.event)
			}
		}
		items := iqOn(t, carolA, `<iq type='get' id='g' to='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='`+node+`'/></pubsub></iq>`)
		if got := eventSummary(items.Child("pubsub", "")); got != "publish i2,publish i3" {
			t.Fatalf("%s items: %s", node, items)
		}
	}
	select {
	case ev := <-carolA.events:
		t.Fatalf("carol/a, not subscribed, got %q", ev)
	default:
	}
}

func servicePublish(service, node, id string) string {
	return `<iq type='set' id='p-` + id + `' to='` + service + `'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + node + `'><item id='` + id + `'><entry xmlns='urn:example:news'>` + id + `</entry></item></publish></pubsub></iq>`
}

// TestPubSubServiceFederates: two real servers of two domains federate
// over s2s; bob@b.test, a remote user, subscribes to a node of
// pubsub.a.test (open access) and gets alice's publishes from it, and
// may not create nodes there (create: local, the default).
func TestPubSubServiceFederates(t *testing.T) {
	a, b := servertest.RunFederatedPairWith(t, "a.test", "b.test", servertest.FederatedPair{Subdomains: []string{"pubsub"}})
	servertest.CreateUser(t, a, "alice", "pw")
	servertest.CreateUser(t, b, "bob", "pw")
	alice := servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	alice.Login("alice", "pw", "desk")
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	me := bob.Login("bob", "pw", "desk")
	await := func(c *servertest.Client, id string) *wire.Element {
		t.Helper()
		return c.Await(id, func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
	}

	alice.Send(`<iq type='set' id='c1' to='pubsub.a.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='news'/></pubsub></iq>`)
	if r := await(alice, "c1"); r.Type() != "result" {
		t.Fatalf("create: %s", r)
	}
	bob.Send(`<iq type='set' id='s1' to='pubsub.a.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='news' jid='` + me + `'/></pubsub></iq>`)
	if r := await(bob, "s1"); r.Type() != "result" || r.From() != "pubsub.a.test" {
		t.Fatalf("subscribe over s2s: %s", r)
	}
	bob.Send(`<iq type='set' id='c2' to='pubsub.a.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='mine'/></pubsub></iq>`)
	if r := await(bob, "c2"); r.Type() != "error" || r.Child("error", "").Child("forbidden", wire.NSStanzas) == nil {
		t.Fatalf("a remote user's create: %s", r)
	}
	alice.Send(servicePublish("pubsub.a.test", "news", "i1"))
	if r := await(alice, "p-i1"); r.Type() != "result" {
		t.Fatalf("publish: %s", r)
	}
	m := bob.Await("the notification", func(el *wire.Element) bool { return el.Name == "message" })
	ev := m.Child("event", "http://jabber.org/protocol/pubsub#event")
	if m.From() != "pubsub.a.test" || ev == nil || eventSummary(ev) != "publish i1" {
		t.Fatalf("notification over s2s: %s", m)
	}
}
