package c2s_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// usable checks the victim's session still works both ways after its
// backlog: a message out and one in.
func usable(t *testing.T, victim, other *servertest.Client, victimJID, otherJID string) {
	t.Helper()
	victim.Send("<message to='%s' type='chat' id='after'><body>still here</body></message>", otherJID)
	other.Await("the victim's message", func(el *wire.Element) bool { return el.Name == "message" && el.ID() == "after" })
	other.Send("<message to='%s' type='chat' id='back'><body>welcome back</body></message>", victimJID)
	victim.Await("a message to the victim", func(el *wire.Element) bool { return el.Name == "message" && el.ID() == "back" })
}

// TestOfflineFloodDoesNotLockOut: the victim logs in after the flood and
// gets every message, in order, with no stream error, then uses the
// account; nothing is left in storage.
func TestOfflineFloodDoesNotLockOut(t *testing.T) {
	n := startServer(t, "alice", "mallory")
	m := servertest.DialTLS(t, n)
	m.Login("mallory", "mallorypw", "r")
	servertest.FloodOffline(t, n, m, "alice@localhost")

	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "phone")
	a.Send("<presence/>")
	servertest.FloodInOrder(t, servertest.ReadFlood(t, a.Next, servertest.FloodMessages))
	usable(t, a, m, "alice@localhost/phone", "mallory@localhost/r")
	// Each portion's rows are deleted once its messages are safe, just
	// after they were handed over (server/router/offlinehand.go).
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if cnt, err := n.Store().CountOffline(context.Background(), "alice@localhost"); err != nil || cnt != 0 {
			return fmt.Errorf("%d offline messages left (%v)", cnt, err)
		}
		return nil
	})
}

// TestOfflineFloodWithSMLosesNothing: a client with stream management
// that reads part of the flood, acknowledges nothing and drops its
// connection loses none of it: what it was handed and did not acknowledge
// goes back to storage, what it was not handed stayed there, and the next
// login gets the rest.
func TestOfflineFloodWithSMLosesNothing(t *testing.T) {
	n := startServer(t, "alice", "mallory")
	m := servertest.DialTLS(t, n)
	m.Login("mallory", "mallorypw", "r")
	servertest.FloodOffline(t, n, m, "alice@localhost")

	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "phone")
	a.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	a.Send("<presence/>")
	first := servertest.ReadFlood(t, a.Next, 3)
	_ = a.Conn.Close()
	// Nothing was acknowledged: all of it must be stored again.
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if rs, _ := n.Router().Resources(context.Background(), "alice@localhost"); len(rs) != 0 {
			return fmt.Errorf("still bound: %v", rs)
		}
		if left, err := n.Store().CountOffline(context.Background(), "alice@localhost"); err != nil || left != servertest.FloodMessages {
			return fmt.Errorf("%d stored after the session died unacknowledged, want %d (%v)", left, servertest.FloodMessages, err)
		}
		return nil
	})

	a2 := servertest.DialTLS(t, n)
	a2.Login("alice", "alicepw", "phone")
	a2.Send("<presence/>")
	second := servertest.ReadFlood(t, a2.Next, servertest.FloodMessages)
	seen := map[string]bool{}
	for _, id := range second {
		seen[id] = true
	}
	if len(seen) != servertest.FloodMessages {
		t.Fatalf("second login got %d distinct messages %v (first had %v)", len(seen), second, first)
	}
}

// TestOfflineFloodAcrossCluster: the flood is stored by another node (the
// sender is there) and the victim logs in on this one; the queue lives in
// the shared database and this node's session is handed it as it reads.
func TestOfflineFloodAcrossCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	a, b := twoNodes(t)
	servertest.CreateUser(t, a, "mallory", "mallorypw")
	m := servertest.DialTLS(t, b)
	m.Login("mallory", "mallorypw", "r")
	servertest.FloodOffline(t, b, m, "alice@localhost")

	v := servertest.DialTLS(t, a)
	v.Login("alice", "alicepw", "phone")
	v.Send("<presence/>")
	servertest.FloodInOrder(t, servertest.ReadFlood(t, v.Next, servertest.FloodMessages))
	usable(t, v, m, "alice@localhost/phone", "mallory@localhost/r")
}

// TestOfflineByteQuota: past c2s.offline_max_bytes a message for an
// offline user is not stored and its sender gets service-unavailable
// saying the storage is full (what Prosody answers when its offline store
// refuses); what was stored is delivered whole.
func TestOfflineByteQuota(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.OfflineMaxBytes = 1 << 20
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "mallory", "mallorypw")
	m := servertest.DialTLS(t, n)
	m.Login("mallory", "mallorypw", "r")
	body := strings.Repeat("x", servertest.FloodBody)
	for i := range 5 {
		m.Send("<message to='alice@localhost' type='chat' id='flood%d'><body>%s</body></message>", i, body)
	}
	e := m.Await("the bounce", func(el *wire.Element) bool { return el.Name == "message" && el.Type() == "error" })
	if cond, text := stanzaErr(e); e.ID() != "flood4" || cond != "service-unavailable" || !strings.Contains(text, "storage is full") {
		t.Fatalf("the message past the byte quota answered %.300s", e)
	}
	if cnt, err := n.Store().CountOffline(context.Background(), "alice@localhost"); err != nil || cnt != 4 {
		t.Fatalf("%d stored (%v), want the 4 that fit in 1 MiB", cnt, err)
	}
	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "phone")
	a.Send("<presence/>")
	servertest.FloodInOrder(t, servertest.ReadFlood(t, a.Next, 4))
}
