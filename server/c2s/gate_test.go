package c2s_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// gatedServer runs a node with carol (the canary) and alice, with the
// overload protection settings mod makes.
func gatedServer(t *testing.T, mod func(c *conf.C2SConfig)) *server.Node {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	mod(&cfg.C2S)
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "carol", "carolpw")
	servertest.CreateUser(t, n, "alice", "alicepw")
	return n
}

// firstAnswer opens a stream on the STARTTLS listener and returns what
// follows the server's header: the features, or the stream error of a
// shed stream.
func firstAnswer(t *testing.T, n *server.Node) *wire.Element {
	t.Helper()
	c := servertest.DialRaw(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	defer c.Conn.Close()
	c.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
	if _, err := c.ReadHeaderOnly(); err != nil {
		t.Fatalf("reading the header: %v", err)
	}
	return c.MustNext()
}

func streamCondition(el *wire.Element) string {
	if el.Name != "stream:error" {
		return ""
	}
	for _, ch := range el.Children {
		if ch.NS() == wire.NSStreams && ch.Name != "text" {
			return ch.Name
		}
	}
	return "?"
}

// TestAcceptQueueBounded: with c2s.max_negotiating streams accepted and
// not authenticated, the next stream is shed at once: resource-constraint
// when no node is named, see-other-host when the balancer names one, and
// a direct-TLS connection is closed before its handshake. The node reports
// that it sheds; an established session is served throughout; once the
// queue has room, streams are served again.
func TestAcceptQueueBounded(t *testing.T) {
	n := gatedServer(t, func(c *conf.C2SConfig) { c.MaxNegotiating = 1 })
	watcher := canary(t, n) // authenticated: out of the queue
	if n.C2S().Shedding() {
		t.Fatal("a node at ease reports shedding")
	}
	held := servertest.Dial(t, n) // in the queue: it fills it
	if got := n.C2S().Negotiating(); got != 1 {
		t.Fatalf("negotiating %d, want 1", got)
	}

	if el := firstAnswer(t, n); streamCondition(el) != "resource-constraint" {
		t.Fatalf("stream past the queue got %s, want resource-constraint", el)
	}
	if !n.C2S().Shedding() {
		t.Error("the node does not report shedding after shedding a stream")
	}
	n.C2S().SetShedTarget(func(c2s.Transport) *wire.Element { return c2s.SeeOtherHost("elsewhere.example:5222") })
	el := firstAnswer(t, n)
	if soh := el.Child("see-other-host", wire.NSStreams); soh == nil || soh.AllText() != "elsewhere.example:5222" {
		t.Fatalf("stream past the queue with a shed target got %s, want see-other-host", el)
	}
	conn, err := net.DialTimeout("tcp", n.Addr(server.ListenerC2STLS).String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a direct-TLS connection past the queue got its handshake")
	}
	tc.Close()
	checkCanary(t, watcher)

	held.Close()
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if el := firstAnswer(t, n); el.Name != "stream:features" {
			return fmt.Errorf("after the queue emptied: %s", el)
		}
		return nil
	})
	// The probe streams above hold the one place until the node has seen
	// them close.
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := n.C2S().Negotiating(); got != 0 {
			return fmt.Errorf("negotiating %d", got)
		}
		return nil
	})
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "after")
}

// TestLoginRateSheds: at c2s.max_logins_per_second 1 with a tiny
// admission wait, a stream that arrives within a second of the last
// login's turn is shed with resource-constraint, and an established
// session is served while the node sheds.
func TestLoginRateSheds(t *testing.T) {
	n := gatedServer(t, func(c *conf.C2SConfig) {
		c.MaxLoginsPerSecond = 1
		c.AdmissionWait = time.Millisecond
	})
	watcher := canary(t, n)
	// Each stream served takes the next turn; the first that comes within
	// a second of the previous one must be shed.
	servertest.CheckFor(t, 30*time.Second, 0, func() error {
		el := firstAnswer(t, n)
		switch cond := streamCondition(el); cond {
		case "resource-constraint":
			return nil
		case "":
			return fmt.Errorf("served: %s", el.Name)
		default:
			t.Fatalf("shed stream got %s, want resource-constraint", el)
		}
		return nil
	})
	if !n.C2S().Shedding() {
		t.Error("the node does not report shedding")
	}
	checkCanary(t, watcher)
}

// TestLoginsPacedWithinWait: logins over c2s.max_logins_per_second that
// fit in c2s.admission_wait are not shed: they wait for their turn and log
// in.
func TestLoginsPacedWithinWait(t *testing.T) {
	n := gatedServer(t, func(c *conf.C2SConfig) {
		c.MaxLoginsPerSecond = 2
		c.AdmissionWait = time.Minute
	})
	clients := make([]*servertest.Client, 5)
	for i := range clients {
		clients[i] = servertest.DialTLS(t, n) // each reserves its turn now
	}
	for i, c := range clients {
		c.Login("alice", "alicepw", fmt.Sprintf("r%d", i))
	}
	if n.C2S().Negotiating() != 0 {
		t.Errorf("negotiating %d after every stream logged in", n.C2S().Negotiating())
	}
}
