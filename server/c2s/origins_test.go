package c2s_test

import (
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// A message a session was already given (same sender, same XEP-0359
// origin-id: a client's resend after reconnecting) is not given again;
// another sender's message with that id, a group chat message and a
// message without an origin-id are.
func TestResentMessageDroppedByOriginID(t *testing.T) {
	n := startServer(t, "alice", "bob", "carol")
	alice := servertest.DialTLS(t, n)
	aliceJID := alice.Login("alice", "alicepw", "phone")
	enableSM(t, alice)
	bob := servertest.DialTLS(t, n)
	bob.Login("bob", "bobpw", "desk")
	carol := servertest.DialTLS(t, n)
	carol.Login("carol", "carolpw", "pc")

	msg := func(c *servertest.Client, id, typ, origin string) {
		o := ""
		if origin != "" {
			o = "<origin-id xmlns='urn:xmpp:sid:0' id='" + origin + "'/>"
		}
		c.Send("<message to='%s' type='%s' id='%s'><body>%s</body>%s</message>", aliceJID, typ, id, id, o)
	}
	msg(bob, "first", "chat", "o-1")
	// bob reconnects and resends it: the same origin-id from another
	// resource of the same account.
	bob2 := servertest.DialTLS(t, n)
	bob2.Login("bob", "bobpw", "laptop")
	msg(bob2, "resent", "chat", "o-1")
	msg(carol, "carol-same-id", "chat", "o-1")
	msg(bob, "no-origin", "chat", "")
	msg(bob, "no-origin", "chat", "")
	msg(bob, "other-origin", "normal", "o-2")
	msg(bob, "end", "chat", "o-3")
	msg(carol, "carol-end", "chat", "o-4")

	// Each sender's messages arrive in order; the two senders' may mix.
	got := map[string]int{}
	for got["end"] == 0 || got["carol-end"] == 0 {
		el := alice.Await("a message", func(el *wire.Element) bool { return el.Name == "message" })
		got[el.ID()]++
	}
	want := map[string]int{"first": 1, "carol-same-id": 1, "no-origin": 2, "other-origin": 1, "end": 1, "carol-end": 1}
	if len(got) != len(want) {
		t.Fatalf("alice got %v, want %v", got, want)
	}
	for id, n := range want {
		if got[id] != n {
			t.Fatalf("alice got %v, want %v", got, want)
		}
	}
	// Stream management counts what she was sent: seven stanzas.
	alice.Send("<r xmlns='urn:xmpp:sm:3'/>")
	alice.Send("<a xmlns='urn:xmpp:sm:3' h='7'/>")
	alice.Send("<message to='%s' type='chat' id='ping'><body>p</body></message>", aliceJID)
	if el := alice.Await("her own message", func(el *wire.Element) bool { return el.Name == "message" }); el.ID() != "ping" {
		t.Fatalf("after acknowledging seven: %s", el)
	}
}
