package router_test

import (
	"context"
	"testing"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// subscribeBoth writes a mutual subscription into owner's roster directly.
func subscribeBoth(t *testing.T, n *server.Node, owner, contact string) {
	t.Helper()
	_, _, _, _, err := n.Store().UpdateRosterItem(context.Background(), owner, contact, storage.RosterQuota{}, func(it storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		it.Subscription, it.InRoster = storage.SubBoth, true
		return it, false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBlockingOverS2S runs two real domains federating over s2s with the
// built-in plugins. alice@a.test blocks bob@b.test; carol@b.test is
// subscribed the same way. Bob gets no presence from alice by any path
// (the answer to his login probe, her initial broadcast, the answer to a
// probe, her logout) while carol gets each of them (XEP-0191 §3.3).
func TestBlockingOverS2S(t *testing.T) {
	a, b := servertest.RunFederatedPair(t, "a.test", "b.test")
	servertest.CreateUser(t, a, "alice", "alice-secret")
	servertest.CreateUser(t, b, "bob", "bob-secret")
	servertest.CreateUser(t, b, "carol", "carol-secret")
	subscribeBoth(t, a, "alice@a.test", "bob@b.test")
	subscribeBoth(t, a, "alice@a.test", "carol@b.test")
	subscribeBoth(t, b, "bob@b.test", "alice@a.test")
	subscribeBoth(t, b, "carol@b.test", "alice@a.test")

	alice := servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	aliceJID := alice.Login("alice", "alice-secret", "home")
	alice.Send(`<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@b.test'/></block></iq>`)
	alice.Await("block result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "b1" && el.Type() == "result" })

	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	bob.Login("bob", "bob-secret", "work")
	carol := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	carol.Login("carol", "carol-secret", "work")

	fromAlice := func(el *wire.Element) bool {
		return el.Name == "presence" && (el.From() == aliceJID || el.From() == "alice@a.test")
	}
	// Carol's view, step by step; bob's is checked at the end.
	carol.Send(`<presence/>`)
	carol.Await("unavailable answer to carol's login probe", func(el *wire.Element) bool {
		return fromAlice(el) && el.Type() == "unavailable"
	})
	bob.Send(`<presence/>`)
	alice.Send(`<presence/>`)
	carol.Await("alice's initial presence", func(el *wire.Element) bool { return fromAlice(el) && el.Type() == "" })
	for _, c := range []*servertest.Client{bob, carol} {
		c.Send(`<presence type='probe' to='alice@a.test'/>`)
	}
	carol.Await("answer to carol's probe", func(el *wire.Element) bool { return fromAlice(el) && el.Type() == "" })
	alice.Close()
	carol.Await("alice's unavailable presence", func(el *wire.Element) bool { return fromAlice(el) && el.Type() == "unavailable" })

	// A ping to a.test answered after all of the above: its result comes
	// back over the same a.test → b.test stream, so whatever alice's
	// server sent bob is ahead of it.
	bob.Send(`<iq type='get' id='ping' to='a.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	var leaked []string
	bob.Await("ping result", func(el *wire.Element) bool {
		if fromAlice(el) {
			leaked = append(leaked, el.String())
		}
		return el.Name == "iq" && el.ID() == "ping"
	})
	if len(leaked) != 0 {
		t.Fatalf("bob, blocked by alice, got her presence: %q", leaked)
	}
}
