package balance_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/balance"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// smClient is a test client with stream management: it counts the
// stanzas it receives (for <a h=.../>) and collects message bodies.
type smClient struct {
	*servertest.Client
	received int
	bodies   []string
}

// next reads one element, counting stanzas and collecting bodies; it
// answers nothing (acks are explicit).
func (c *smClient) next() *wire.Element {
	c.T.Helper()
	el := c.MustNext()
	switch el.Name {
	case "message", "presence", "iq":
		c.received++
		if el.Name == "message" {
			if b := el.ChildText("body", ""); b != "" {
				c.bodies = append(c.bodies, b)
			}
		}
	}
	return el
}

// until reads until match accepts an element.
func (c *smClient) until(what string, match func(*wire.Element) bool) *wire.Element {
	c.T.Helper()
	for {
		el := c.next()
		if match(el) {
			return el
		}
		if el.Name == "stream:error" {
			c.T.Fatalf("stream error while waiting for %s: %s", what, el)
		}
	}
}

// bodiesUntil reads until every wanted body arrived, then does a ping
// round trip so that anything else already queued shows up too.
func (c *smClient) bodiesUntil(want ...string) {
	c.T.Helper()
	has := func(b string) bool {
		for _, x := range c.bodies {
			if x == b {
				return true
			}
		}
		return false
	}
	for _, w := range want {
		for !has(w) {
			c.next()
		}
	}
	c.Send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
	c.until("ping result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "sync" })
}

func seeOtherHost(t *testing.T, c *smClient) string {
	t.Helper()
	el := c.until("stream error", func(el *wire.Element) bool { return el.Name == "stream:error" })
	host, err := redirectedTo(el)
	if err != nil {
		t.Fatal(err)
	}
	return host
}

func sorted(s []string) string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return strings.Join(s, ",")
}

// TestDrainMovesClients drains node-a with a stream-management client
// (alice) and a plain client (carol) on it while bob on node-b writes to
// both. Both are told to go to node-b; alice's unacknowledged messages
// and everything sent while they were away arrive on node-b; nothing
// acknowledged comes twice; new streams to node-a are redirected; the
// drain reports the node empty.
func TestDrainMovesClients(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	// One session per sweep: the two are moved by two sweeps.
	a := startNode(t, h, st, "node-a", func(c *conf.Config) { c.Balance.DrainRate = 1 })
	b := startNode(t, h, st, "node-b", nil)
	for _, u := range []string{"alice", "bob", "carol"} {
		servertest.CreateUser(t, a.n, u, "pw-"+u)
	}

	alice := &smClient{Client: servertest.Dial(t, a.n)}
	alice.Login("alice", "pw-alice", "phone")
	alice.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	smID := alice.until("enabled", func(el *wire.Element) bool { return el.Name == "enabled" }).Attr("id")
	alice.Send("<presence/>")

	carol := &smClient{Client: servertest.Dial(t, a.n)}
	carol.Login("carol", "pw-carol", "laptop")
	carol.Send("<presence/>")

	bob := servertest.Dial(t, b.n)
	bob.Login("bob", "pw-bob", "desk")
	send := func(to, body string) {
		bob.Send("<message to='%s@localhost' type='chat' id='%s'><body>%s</body></message>", to, body, body)
	}

	// alice gets m1..m5 and acknowledges only up to m2.
	for i := 1; i <= 5; i++ {
		send("alice", fmt.Sprintf("m%d", i))
	}
	var ackAfterM2 int
	for len(alice.bodies) < 5 {
		alice.next()
		if len(alice.bodies) == 2 && ackAfterM2 == 0 {
			ackAfterM2 = alice.received
		}
	}
	alice.Send("<a xmlns='urn:xmpp:sm:3' h='%d'/>", ackAfterM2)
	carol.bodies = nil
	send("carol", "c1")
	carol.bodiesUntil("c1")

	// Make sure alice's ack was processed: the server handles her stream
	// in order, so the ping answer comes after it.
	alice.Send("<iq type='get' id='acked'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.until("ping result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "acked" })

	if err := a.bal.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := seeOtherHost(t, alice); got != b.c2s() {
		t.Errorf("alice sent to %s, want node-b at %s", got, b.c2s())
	}
	if got := seeOtherHost(t, carol); got != b.c2s() {
		t.Errorf("carol sent to %s, want node-b at %s", got, b.c2s())
	}
	var report = waitReport(t, a)
	if report.Reason != "empty" || report.Moved != 2 || report.Refused != 0 {
		t.Errorf("drain report %+v, want empty with 2 moved", report)
	}
	t.Logf("node-a drained in %v", report.Took())

	t.Run("new streams go elsewhere", func(t *testing.T) {
		expectRedirect(t, a.c2s(), false, b.c2s())
	})

	// While they are away.
	send("alice", "m6")
	send("carol", "c2")

	t.Run("stream management client", func(t *testing.T) {
		c := &smClient{Client: servertest.DialAddr(t, b.c2s(), "localhost", false)}
		c.StartTLS()
		if err := c.AuthSCRAM("SCRAM-SHA-256", "alice", "pw-alice"); err != nil {
			t.Fatal(err)
		}
		// Resumption on another node fails: the state was not handed over,
		// the messages were re-queued instead.
		c.Send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>", smID, ackAfterM2)
		c.until("failed", func(el *wire.Element) bool { return el.Name == "failed" })
		if _, err := c.Bind("phone"); err != nil {
			t.Fatal(err)
		}
		c.Send("<presence/>")
		c.bodiesUntil("m3", "m4", "m5", "m6")
		if got := sorted(c.bodies); got != "m3,m4,m5,m6" {
			t.Errorf("alice got %s on node-b, want m3,m4,m5,m6 (the unacknowledged and the new, once)", got)
		}
	})
	t.Run("plain client", func(t *testing.T) {
		c := &smClient{Client: servertest.DialAddr(t, b.c2s(), "localhost", false)}
		c.Login("carol", "pw-carol", "laptop")
		c.Send("<presence/>")
		c.bodiesUntil("c2")
		if got := sorted(c.bodies); got != "c2" {
			t.Errorf("carol got %s on node-b, want c2 only", got)
		}
	})
}

// TestDrainDetachedSession: a stream-management session whose connection
// dropped waits for resumption; draining ends it and its unacknowledged
// messages go offline, to be delivered on the other node.
func TestDrainDetachedSession(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", nil)
	b := startNode(t, h, st, "node-b", nil)
	servertest.CreateUser(t, a.n, "alice", "pw-alice")
	servertest.CreateUser(t, a.n, "bob", "pw-bob")

	alice := &smClient{Client: servertest.Dial(t, a.n)}
	alice.Login("alice", "pw-alice", "phone")
	alice.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	alice.until("enabled", func(el *wire.Element) bool { return el.Name == "enabled" })
	alice.Send("<presence/>")
	bob := servertest.Dial(t, b.n)
	bob.Login("bob", "pw-bob", "desk")
	bob.Send("<message to='alice@localhost' type='chat'><body>d1</body></message>")
	alice.bodiesUntil("d1")
	alice.Conn.Close() // no ack, no closing tag: the session detaches

	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := a.n.C2S().Active(); n != 0 {
			return fmt.Errorf("%d streams open", n)
		}
		return nil
	})
	if err := a.bal.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := waitReport(t, a); r.Reason != "empty" {
		t.Errorf("drain report %+v", r)
	}
	c := &smClient{Client: servertest.DialAddr(t, b.c2s(), "localhost", false)}
	c.Login("alice", "pw-alice", "phone")
	c.Send("<presence/>")
	c.bodiesUntil("d1")
}

// TestDrainDeadline: the deadline bounds the whole drain, the notice
// included: here it passes while the node still announces the drain, with
// a stream left open.
func TestDrainDeadline(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", func(c *conf.Config) {
		c.Balance.DrainDeadline = 300 * time.Millisecond
		c.Balance.DrainNotice = time.Hour
	})
	idle := servertest.Dial(t, a.n)
	defer idle.Close()
	if err := a.bal.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := waitReport(t, a)
	if r.Reason != "deadline" || r.Left != 1 {
		t.Errorf("drain report %+v, want deadline with 1 left", r)
	}
}

// TestDrainClosesUnauthenticatedStreams: a stream that opened and never
// authenticated is sent away at once; it used to keep the drain waiting
// until c2s.auth_timeout.
func TestDrainClosesUnauthenticatedStreams(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", func(c *conf.Config) { c.C2S.AuthTimeout = time.Hour })
	b := startNode(t, h, st, "node-b", nil)
	idle := &smClient{Client: servertest.Dial(t, a.n)}
	if err := a.bal.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := seeOtherHost(t, idle); got != b.c2s() {
		t.Errorf("unauthenticated stream sent to %q, want node-b at %s", got, b.c2s())
	}
	if r := waitReport(t, a); r.Reason != "empty" {
		t.Errorf("drain report %+v, want empty", r)
	}
}

// TestDrainNotice: a draining node first only announces it — its health
// check fails and the dispatcher names the other node — while its clients
// stay, so that a load balancer has taken it out before they reconnect.
func TestDrainNotice(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", func(c *conf.Config) { c.Balance.DrainNotice = time.Hour })
	b := startNode(t, h, st, "node-b", nil)
	servertest.CreateUser(t, a.n, "alice", "pw-alice")
	alice := servertest.Dial(t, a.n)
	alice.Login("alice", "pw-alice", "phone")
	if err := a.bal.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.http() + balance.PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health check answered %d while draining, want 503", resp.StatusCode)
	}
	if code, ans, _ := dispatch(t, a.http(), "c2s"); code != http.StatusOK || ans.Node != "node-b" {
		t.Errorf("dispatcher answered %d %+v, want node-b", code, ans)
	}
	// Still served during the notice: a ping gets its answer.
	alice.Send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.Await("ping answer during the notice", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "still" })
	if n := len(a.n.Router().LocalSessions()); n != 1 {
		t.Errorf("%d sessions on the draining node during the notice, want 1", n)
	}
	_ = b
}

func waitReport(t *testing.T, tn *testNode) balance.Report {
	t.Helper()
	select {
	case r := <-tn.drained:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: drain did not end", tn.name)
	}
	return balance.Report{}
}

// TestDrainOnSignal: the first SIGTERM of `aviary serve` drains a node
// that has somewhere to send its clients, is absorbed while that drain
// runs, and stops the node at once when it is alone or the drain ended.
func TestDrainOnSignal(t *testing.T) {
	cases := []struct {
		name   string
		others int
		want   bool
	}{
		{"alone: stop at once", 0, false},
		{"another live node: drain", 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHub()
			st := sharedStore(t)
			a := startNode(t, h, st, "node-a", nil)
			for i := 0; i < c.others; i++ {
				startNode(t, h, st, fmt.Sprintf("node-%c", 'b'+i), nil)
			}
			if got := a.bal.DrainOnSignal(context.Background()); got != c.want {
				t.Fatalf("DrainOnSignal = %v, want %v", got, c.want)
			}
			if a.bal.Draining() != c.want {
				t.Fatalf("Draining = %v after DrainOnSignal = %v", a.bal.Draining(), c.want)
			}
			if !c.want {
				return
			}
			// A second signal while the drain runs changes nothing; once
			// it has ended, one stops the node.
			select {
			case <-a.bal.Drained():
			default:
				if !a.bal.DrainOnSignal(context.Background()) {
					t.Fatal("DrainOnSignal during the drain = false, want true")
				}
			}
			if r := waitReport(t, a); r.Reason != "empty" {
				t.Fatalf("drain report %+v, want empty", r)
			}
			if a.bal.DrainOnSignal(context.Background()) {
				t.Fatal("DrainOnSignal after the drain = true, want false")
			}
		})
	}
}
