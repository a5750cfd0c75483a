package interop

import (
	"strings"
	"testing"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestGroupChatOverFederation: two Aviary domains, each with its group
// chat service. bob of b.test joins a room of conference.a.test over s2s
// (the room's stanzas to him leave from the service's own domain, which
// b.test verifies by dialback), and alice of a.test joins a room of
// conference.b.test; in each room both read what the other writes.
func TestGroupChatOverFederation(t *testing.T) {
	aS2S, bS2S := servertest.FreeAddr(t), servertest.FreeAddr(t)
	run := func(domain, s2s, peer, peerS2S string) *server.Node {
		cfg := servertest.DefaultConfig(t)
		cfg.Domain = domain
		cfg.S2S.Listen = s2s
		cfg.S2S.Hosts = map[string]string{peer: peerS2S, "conference." + peer: peerS2S}
		return servertest.RunServer(t, cfg, server.WithService(server.NewFederationService()))
	}
	a := run("a.test", aS2S, "b.test", bS2S)
	b := run("b.test", bS2S, "a.test", aS2S)
	servertest.CreateUser(t, a, "alice", "pw")
	servertest.CreateUser(t, b, "bob", "pw")
	alice := servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	alice.Login("alice", "pw", "a")
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	bob.Login("bob", "pw", "b")

	t.Run("lounge@conference.a.test", func(t *testing.T) {
		chatInFederatedRoom(t, "lounge@conference.a.test", alice, "alice", bob, "bob")
	})
	t.Run("porch@conference.b.test", func(t *testing.T) {
		chatInFederatedRoom(t, "porch@conference.b.test", bob, "bob", alice, "alice")
	})
}

// chatInFederatedRoom: owner creates room as an instant room (joining,
// then accepting the default configuration), visitor of another server
// joins it over s2s, each reads what the other writes, and the owner
// sees the visitor leave. Any error presence or bounce fails the test.
func chatInFederatedRoom(t *testing.T, room string, owner *servertest.Client, ownerNick string, visitor *servertest.Client, visitorNick string) {
	t.Helper()
	self := func(nick string) func(*wire.Element) bool {
		return func(el *wire.Element) bool {
			if el.Name == "presence" && el.Type() == "error" {
				t.Fatalf("join refused: %s", el)
			}
			return el.Name == "presence" && el.From() == room+"/"+nick && el.Type() == "" &&
				strings.Contains(el.String(), `code="110"`)
		}
	}
	owner.Send(`<presence to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room, ownerNick)
	owner.Await("the owner's join", self(ownerNick))
	owner.Send(`<iq to='%s' type='set' id='instant'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`, room)
	if el := owner.Await("the instant room", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "instant" }); el.Type() != "result" {
		t.Fatalf("instant room: %s", el)
	}
	visitor.Send(`<presence to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room, visitorNick)
	visitor.Await("the federated join", self(visitorNick))
	owner.Await("the visitor's presence", func(el *wire.Element) bool {
		return el.Name == "presence" && el.Type() == "" && el.From() == room+"/"+visitorNick
	})
	body := func(nick, text string) func(*wire.Element) bool {
		return func(el *wire.Element) bool {
			if el.Name == "message" && el.Type() == "error" {
				t.Fatalf("message bounced: %s", el)
			}
			return el.Name == "message" && el.Type() == "groupchat" && el.From() == room+"/"+nick && el.ChildText("body", "") == text
		}
	}
	visitor.Send(`<message to='%s' type='groupchat' id='v1'><body>hello from afar</body></message>`, room)
	owner.Await("the visitor's message", body(visitorNick, "hello from afar"))
	visitor.Await("the visitor's own message reflected", body(visitorNick, "hello from afar"))
	owner.Send(`<message to='%s' type='groupchat' id='o1'><body>welcome</body></message>`, room)
	visitor.Await("the owner's message", body(ownerNick, "welcome"))
	visitor.Send(`<presence to='%s/%s' type='unavailable'/>`, room, visitorNick)
	owner.Await("the visitor leaving", func(el *wire.Element) bool {
		return el.Name == "presence" && el.Type() == "unavailable" && el.From() == room+"/"+visitorNick
	})
}
