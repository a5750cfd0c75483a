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

	for _, tc := range []struct {
		room           string
		owner, visitor *servertest.Client
		ownerNick      string
		visitorNick    string
	}{
		{"lounge@conference.a.test", alice, bob, "alice", "bob"},
		{"porch@conference.b.test", bob, alice, "bob", "alice"},
	} {
		t.Run(tc.room, func(t *testing.T) {
			self := func(nick string) func(*wire.Element) bool {
				return func(el *wire.Element) bool {
					return el.Name == "presence" && el.From() == tc.room+"/"+nick && el.Type() == "" &&
						strings.Contains(el.String(), `code="110"`)
				}
			}
			tc.owner.Send(`<presence to='%s/%s'/>`, tc.room, tc.ownerNick) // an instant room
			tc.owner.Await("the owner's join", self(tc.ownerNick))
			tc.visitor.Send(`<presence to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, tc.room, tc.visitorNick)
			tc.visitor.Await("the federated join", self(tc.visitorNick))
			tc.owner.Await("the visitor's presence", func(el *wire.Element) bool {
				return el.Name == "presence" && el.From() == tc.room+"/"+tc.visitorNick
			})
			body := func(nick, text string) func(*wire.Element) bool {
				return func(el *wire.Element) bool {
					return el.Name == "message" && el.Type() == "groupchat" && el.From() == tc.room+"/"+nick && el.ChildText("body", "") == text
				}
			}
			tc.visitor.Send(`<message to='%s' type='groupchat' id='v1'><body>hello from afar</body></message>`, tc.room)
			tc.owner.Await("the visitor's message", body(tc.visitorNick, "hello from afar"))
			tc.visitor.Await("the visitor's own message reflected", body(tc.visitorNick, "hello from afar"))
			tc.owner.Send(`<message to='%s' type='groupchat' id='o1'><body>welcome</body></message>`, tc.room)
			tc.visitor.Await("the owner's message", body(tc.ownerNick, "welcome"))
			tc.visitor.Send(`<presence to='%s/%s' type='unavailable'/>`, tc.room, tc.visitorNick)
			tc.owner.Await("the visitor leaving", func(el *wire.Element) bool {
				return el.Name == "presence" && el.Type() == "unavailable" && el.From() == tc.room+"/"+tc.visitorNick
			})
		})
	}
}
