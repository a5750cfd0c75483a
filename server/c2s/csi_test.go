package c2s_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

const composing = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"

// pingServer makes a round trip to the server: what c sent before it has
// been handled (c's stanzas are read and routed in order).
func pingServer(t *testing.T, c *servertest.Client) {
	t.Helper()
	id := c.NextID()
	c.Send("<iq type='get' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", id)
	c.Await("ping result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
}

// csiPair logs alice in and makes her inactive, and bob in beside her.
func csiPair(t *testing.T) (alice, bob *servertest.Client) {
	t.Helper()
	n := startServer(t, "alice", "bob")
	alice = servertest.DialTLS(t, n)
	alice.Login("alice", "alicepw", "phone")
	bob = servertest.DialTLS(t, n)
	bob.Login("bob", "bobpw", "r")
	alice.Send("<inactive xmlns='urn:xmpp:csi:0'/>")
	pingServer(t, alice)
	return alice, bob
}

// nothingArrives fails if c can read a byte within wait. A timeout leaves
// the TLS connection usable.
func nothingArrives(t *testing.T, c *servertest.Client, wait time.Duration) {
	t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(wait))
	var b [1]byte
	if n, _ := c.Conn.Read(b[:]); n > 0 {
		t.Fatalf("an inactive client was sent data that could wait (starting %q)", b[:n])
	}
}

// An inactive client gets a chat state only with the next message worth a
// notification, in order, and offers CSI among the stream features.
func TestCSIHoldsUntilUrgent(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	if c.Features.Child("csi", wire.NSCSI) == nil {
		t.Fatalf("features after login %s, want <csi xmlns='%s'/>", c.Features, wire.NSCSI)
	}

	alice, bob := csiPair(t)
	bob.Send("<message to='alice@localhost/phone' type='chat' id='cs1'>%s</message>", composing)
	pingServer(t, bob) // cs1 is in alice's queue now
	nothingArrives(t, alice, 300*time.Millisecond)

	bob.Send("<message to='alice@localhost/phone' type='chat' id='b1'><body>wake up</body></message>")
	for _, want := range []string{"cs1", "b1"} {
		if m := alice.Await("message", isMsg); m.ID() != want {
			t.Fatalf("got %s, want %s (held stanzas go first)", m, want)
		}
	}
}

// A client may say <inactive/> between authentication and binding
// (XEP-0352 §3); the session it then binds starts inactive.
func TestCSIBeforeBind(t *testing.T) {
	n := startServer(t, "alice", "bob")
	alice := servertest.DialTLS(t, n)
	if err := alice.AuthSCRAM("SCRAM-SHA-256", "alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
	alice.Send("<inactive xmlns='urn:xmpp:csi:0'/>")
	if _, err := alice.Bind("phone"); err != nil {
		t.Fatal(err)
	}
	bob := servertest.DialTLS(t, n)
	bob.Login("bob", "bobpw", "r")
	bob.Send("<message to='alice@localhost/phone' type='chat' id='cs1'>%s</message>", composing)
	pingServer(t, bob)
	nothingArrives(t, alice, 300*time.Millisecond)
	alice.Send("<active xmlns='urn:xmpp:csi:0'/>")
	if m := alice.Await("message", isMsg); m.ID() != "cs1" {
		t.Fatalf("got %s, want cs1", m)
	}
}

// <active/> delivers what waited, in order.
func TestCSIActiveFlushes(t *testing.T) {
	alice, bob := csiPair(t)
	for i := 1; i <= 3; i++ {
		bob.Send("<message to='alice@localhost/phone' type='chat' id='cs%d'>%s</message>", i, composing)
	}
	pingServer(t, bob)
	nothingArrives(t, alice, 200*time.Millisecond)
	alice.Send("<active xmlns='urn:xmpp:csi:0'/>")
	for i := 1; i <= 3; i++ {
		if m := alice.Await("message", isMsg); m.ID() != fmt.Sprintf("cs%d", i) {
			t.Fatalf("got %s, want cs%d", m, i)
		}
	}
}

// An inactive session holds a bounded number of stanzas: past it,
// everything goes out without any other trigger.
func TestCSIHoldsABoundedNumber(t *testing.T) {
	alice, bob := csiPair(t)
	const sent = 200 // more than c2s holds
	for i := 1; i <= sent; i++ {
		bob.Send("<message to='alice@localhost/phone' type='chat' id='cs%d'>%s</message>", i, composing)
	}
	if m := alice.Await("message", isMsg); m.ID() != "cs1" {
		t.Fatalf("got %s first, want cs1", m)
	}
}
