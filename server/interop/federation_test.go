package interop

import (
	"testing"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestFederationBetweenAviaryDomains runs two real nodes for two domains
// federating over s2s (self-signed certificates, so Server Dialback), and
// checks the RFC 6121 flows across them end to end through both routers:
// subscription both ways, presence, messages, an IQ round trip, and the
// error for a user who does not exist.
func TestFederationBetweenAviaryDomains(t *testing.T) {
	a, b := servertest.RunFederatedPair(t, "a.test", "b.test")
	servertest.CreateUser(t, a, "alice", "alice-secret")
	servertest.CreateUser(t, b, "bob", "bob-secret")

	alice := servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	aliceJID := alice.Login("alice", "alice-secret", "home")
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	bobJID := bob.Login("bob", "bob-secret", "work")
	for _, c := range []*servertest.Client{alice, bob} {
		c.Send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
		c.Await("roster", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "r1" })
		c.Send(`<presence/>`)
	}

	// Subscription: alice asks, bob approves and asks back, alice approves.
	alice.Send(`<presence to='bob@b.test' type='subscribe'/>`)
	bob.Await("subscribe from alice", func(el *wire.Element) bool {
		return el.Name == "presence" && el.Type() == "subscribe" && el.From() == "alice@a.test"
	})
	// Approving sends the approver's presence at once (RFC 6121 §3.1.5), so
	// each side may see the other's presence before the next request.
	sawBob, sawAlice := false, false
	bob.Send(`<presence to='alice@a.test' type='subscribed'/>`)
	bob.Send(`<presence to='alice@a.test' type='subscribe'/>`)
	alice.Await("subscribe from bob", func(el *wire.Element) bool {
		if el.Name == "presence" && el.Type() == "" && el.From() == bobJID {
			sawBob = true
		}
		return el.Name == "presence" && el.Type() == "subscribe" && el.From() == "bob@b.test"
	})
	alice.Send(`<presence to='bob@b.test' type='subscribed'/>`)
	if !sawBob {
		alice.Await("bob's presence", func(el *wire.Element) bool {
			return el.Name == "presence" && el.Type() == "" && el.From() == bobJID
		})
	}
	bob.Await("alice's presence", func(el *wire.Element) bool {
		sawAlice = el.Name == "presence" && el.Type() == "" && el.From() == aliceJID
		return sawAlice
	})

	// Messages both ways.
	alice.Send(`<message to='bob@b.test' type='chat'><body>hi bob</body></message>`)
	m := bob.Await("message", func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == "hi bob" })
	if m.From() != aliceJID {
		t.Errorf("from = %q, want %q", m.From(), aliceJID)
	}
	bob.Send(`<message to='%s' type='chat'><body>hi alice</body></message>`, aliceJID)
	alice.Await("reply", func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == "hi alice" })

	// An IQ round trip to the remote server (XEP-0199 ping) and to a user.
	alice.Send(`<iq type='get' id='p1' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	res := alice.Await("ping result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "p1" })
	if res.Type() != "result" || res.From() != "b.test" {
		t.Errorf("ping answer: %s", res)
	}
	alice.Send(`<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>`, bobJID)
	q := bob.Await("iq from alice", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "v1" })
	bob.Send(`<iq type='result' id='v1' to='%s'><query xmlns='jabber:iq:version'><name>test</name></query></iq>`, q.From())
	alice.Await("version result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "v1" && el.Type() == "result" })

	// A user who does not exist on the other domain: service-unavailable
	// for an IQ (RFC 6121 §8.5.1).
	alice.Send(`<iq type='get' id='n1' to='nobody@b.test'><query xmlns='jabber:iq:version'/></iq>`)
	e := alice.Await("error for nobody", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "n1" })
	if e.Type() != "error" || e.Child("error", "").Child("service-unavailable", wire.NSStanzas) == nil {
		t.Errorf("answer for a missing user: %s", e)
	}

	// Bob leaves; alice is told.
	bob.Close()
	alice.Await("bob unavailable", func(el *wire.Element) bool {
		return el.Name == "presence" && el.Type() == "unavailable" && el.From() == bobJID
	})
}
