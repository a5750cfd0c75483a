package interop

import (
	"net"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestForgedDialbackAgainstANode is the forged federation of issue 16
// against a real node, byte for byte: stream 1 claims trusted.example
// (whose server accepts the callback and stays silent) and sends a bogus
// key; a second, unauthenticated stream sends the answer that only
// trusted.example's server may give, type='valid', for stream 1's ID;
// stream 1 then sends as admin@trusted.example to a logged-in user. The
// forgery must end stream 2, nothing may reach the user, and federation
// with a real peer domain (Server Dialback both ways) must go on.
func TestForgedDialbackAgainstANode(t *testing.T) {
	trusted, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trusted.Close() })
	called := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := trusted.Accept()
			if err != nil {
				return
			}
			called <- c // held open, silent, until the test ends
		}
	}()
	t.Cleanup(func() {
		for {
			select {
			case c := <-called:
				c.Close()
			default:
				return
			}
		}
	})

	aS2S, bS2S := servertest.FreeAddr(t), servertest.FreeAddr(t)
	cfgA := servertest.DefaultConfig(t)
	cfgA.Domain, cfgA.S2S.Listen = "a.test", aS2S
	cfgA.S2S.Hosts = map[string]string{"b.test": bS2S}
	a := servertest.RunServer(t, cfgA, server.WithService(server.NewFederationService()))
	cfgB := servertest.DefaultConfig(t)
	cfgB.Domain, cfgB.S2S.Listen = "b.test", bS2S
	cfgB.S2S.Hosts = map[string]string{"a.test": aS2S, "trusted.example": trusted.Addr().String()}
	b := servertest.RunServer(t, cfgB, server.WithService(server.NewFederationService()))
	servertest.CreateUser(t, a, "alice", "alice-secret")
	servertest.CreateUser(t, b, "bob", "bob-secret")
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	bobJID := bob.Login("bob", "bob-secret", "desk")
	bob.Send(`<presence/>`) // available: a message to the bare JID comes here

	s1 := servertest.DialS2S(t, bS2S, "trusted.example", "b.test")
	s1.Send(`<db:result from='trusted.example' to='b.test'>bogus</db:result>`)
	select {
	case <-called: // b.test asked trusted.example: the request is pending
	case <-time.After(15 * time.Second):
		t.Fatal("b.test never called trusted.example back")
	}
	s2 := servertest.DialS2S(t, bS2S, "trusted.example", "b.test")
	s2.Send(`<db:verify from='trusted.example' to='b.test' id='%s' type='valid'/>`, s1.StreamHeader.ID())
	s2.ExpectStreamError("not-authorized")

	s1.Send(`<message from='admin@trusted.example' to='bob@b.test' type='chat'><body>forged</body></message>`)
	s1.ExpectStreamError("not-authorized")

	// The canary, after the forgery: alice@a.test and bob talk over s2s.
	alice := servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	aliceJID := alice.Login("alice", "alice-secret", "phone")
	alice.Send(`<presence/>`)
	alice.Send(`<message to='bob@b.test' type='chat'><body>canary</body></message>`)
	bob.Await("the canary", func(el *wire.Element) bool {
		if el.ChildText("body", "") == "forged" {
			t.Fatalf("the forged stanza reached bob: %s", el)
		}
		return el.Name == "message" && el.ChildText("body", "") == "canary" && el.From() == aliceJID
	})
	bob.Send(`<message to='%s' type='chat'><body>canary back</body></message>`, aliceJID)
	alice.Await("the canary's answer", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == "canary back" && el.From() == bobJID
	})
}
