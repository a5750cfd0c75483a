package router

import (
	"context"
	"fmt"
	"github.com/aviary-im/aviary/internal/testutil"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/wire"
)

// smSession is a fakeSession whose client uses stream management: it
// holds the receipts of what it received until ack, and records the
// acknowledgement holds of what it sent (router.Receipted, AckHolder).
type smSession struct {
	*fakeSession
	r *Router

	mu       sync.Mutex
	receipts []*Receipt
	held     int // acknowledgement holds taken and not yet released
	holds    int // taken in all
}

func (s *smSession) SendReceipted(el *wire.Element, rc *Receipt) bool {
	if !s.fakeSession.Send(el) {
		return false
	}
	s.mu.Lock()
	s.receipts = append(s.receipts, rc)
	s.mu.Unlock()
	return true
}

func (s *smSession) HoldAck() func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held++
	s.holds++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.held--
			s.mu.Unlock()
		})
	}
}

// ack is the client acknowledging everything it received.
func (s *smSession) ack() {
	s.mu.Lock()
	rcs := s.receipts
	s.receipts = nil
	s.mu.Unlock()
	s.r.Release(rcs)
}

// unacked returns what the session would hand back with Unbind.
func (s *smSession) unsent(els []*wire.Element) []Unsent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Unsent, len(els))
	for i, el := range els {
		out[i] = Unsent{El: el, Receipt: s.receipts[i]}
	}
	s.receipts = nil
	return out
}

func (s *smSession) holdCounts() (held, taken int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held, s.holds
}

// bindSM binds user/res with a stream-management session, requests the
// roster and sends initial presence.
func (e *env) bindSM(user, res string) *smSession {
	e.t.Helper()
	s := &smSession{fakeSession: &fakeSession{}, r: e.r}
	j, err := e.r.Bind(context.Background(), s, user, res)
	if err != nil {
		e.t.Fatalf("Bind(%s/%s): %v", user, res, err)
	}
	s.fakeSession.mu.Lock()
	s.jid = j
	s.fakeSession.mu.Unlock()
	e.sendFrom(s, `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	e.sendFrom(s, `<presence/>`)
	s.take()
	return s
}

// sendFrom is env.send for any session.
func (e *env) sendFrom(s Session, xml string) {
	e.t.Helper()
	el := mustParse(e.t, xml)
	el.SetAttr("from", s.JID().String())
	e.r.FromClient(context.Background(), s, el)
}

// threeNodes returns three routers on one store, joined by a fakeNet.
func threeNodes(t *testing.T, opts ...envOpt) ([3]*env, *fakeNet) {
	t.Helper()
	st := openStore(t)
	n := newFakeNet("node1", "node2", "node3")
	var es [3]*env
	for i := range es {
		es[i] = newEnvWith(t, st, n.nodes[fmt.Sprintf("node%d", i+1)], opts...)
	}
	es[0].user("alice", "bob", "carol")
	return es, n
}

func (e *env) custodyCounts() (int, int) { return e.r.custody.counts() }

// waitKept waits until the node keeps and holds what is wanted (the
// notices that let copies go travel a few milliseconds later).
func waitKept(t *testing.T, e *env, kept, deposits int) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if k, d := e.custodyCounts(); k != kept || d != deposits {
			return fmt.Errorf("%s keeps %d copies and holds %d deposits, want %d and %d", e.r.node, k, d, kept, deposits)
		}
		return nil
	})
}

func bodies(els []*wire.Element) []string {
	var out []string
	for _, el := range only("message", els) {
		out = append(out, el.ChildText("body", ""))
	}
	return out
}

// TestCustodyForward: a message to a session on another node is kept by
// the sender's node until the recipient's client acknowledges it; the
// sender's acknowledgement waits for the other node to have it.
func TestCustodyForward(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	net.mu.Lock()
	net.deferReports = true
	net.mu.Unlock()

	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='m1'><body>one</body></message>`)
	if held, taken := alice.holdCounts(); held != 1 || taken != 1 {
		t.Fatalf("alice's acknowledgement: %d held of %d taken, want 1 of 1 until node2 has the message", held, taken)
	}
	net.reports()
	if held, _ := alice.holdCounts(); held != 0 {
		t.Fatalf("alice's acknowledgement still held after node2 handled the message")
	}
	if got := bodies(bob.take()); len(got) != 1 || got[0] != "one" {
		t.Fatalf("bob got %q", got)
	}
	waitKept(t, es[0], 1, 0)
	bob.ack()
	waitKept(t, es[0], 0, 0)

	// A chat state and a headline are not kept: nobody would store them.
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='headline'><body>h</body></message>`)
	net.reports()
	waitKept(t, es[0], 0, 0)
	if _, taken := alice.holdCounts(); taken != 1 {
		t.Fatalf("%d acknowledgement holds taken, want none for what is not kept", taken)
	}
}

// TestCustodyRecipientNodeDies: node2 dies holding a message its client
// had not acknowledged; node1 routes its copy again: to bob's new session
// on node3, stamped with the time it first arrived, or to offline storage.
func TestCustodyRecipientNodeDies(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	carol := es[1].bindSM("carol", "c")
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='m1'><body>to bob</body></message>`)
	es[0].sendFrom(alice, `<message to='carol@example.com' type='chat' id='m2'><body>to carol</body></message>`)
	if len(bob.take()) != 1 || len(carol.take()) != 1 {
		t.Fatal("messages not delivered")
	}
	waitKept(t, es[0], 2, 0)

	bob3 := es[2].bindSM("bob", "b") // bob is back on node3 before node2 is found dead
	net.kill("node2")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if got := only("message", bob3.take()); len(got) != 1 {
			return fmt.Errorf("bob on node3 got %d messages", len(got))
		} else if got[0].ChildText("body", "") != "to bob" || got[0].Child("delay", wire.NSDelay) == nil {
			return fmt.Errorf("bob on node3 got %s, want the kept message with a delay stamp", got[0])
		}
		return nil
	})
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n, _ := es[0].store.CountOffline(context.Background(), "carol@example.com"); n != 1 {
			return fmt.Errorf("%d offline for carol, want her kept message", n)
		}
		return nil
	})
	// Forwarded again to node3, node1 keeps a new copy until bob's new
	// session has it.
	waitKept(t, es[0], 1, 0)
	bob3.ack()
	waitKept(t, es[0], 0, 0)
	waitKept(t, es[2], 0, 0)
}

// TestCustodySenderNodeDies: a message between two sessions of node1 is
// deposited with node1's buddy, which routes it again when node1 dies.
func TestCustodySenderNodeDies(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[0].bindSM("bob", "b")
	net.mu.Lock()
	net.deferReports = true
	net.mu.Unlock()
	es[0].sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>local</body></message>`)
	if held, _ := alice.holdCounts(); held != 1 {
		t.Fatalf("alice's acknowledgement not held while the deposit is on its way")
	}
	net.reports()
	if held, _ := alice.holdCounts(); held != 0 {
		t.Fatalf("alice's acknowledgement still held after the buddy took the deposit")
	}
	if got := bodies(bob.take()); len(got) != 1 {
		t.Fatalf("bob got %q", got)
	}
	waitKept(t, es[0], 1, 0)
	waitKept(t, es[1], 0, 1) // node2 is node1's buddy: the next name
	net.kill("node1")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n, _ := es[1].store.CountOffline(context.Background(), "bob@example.com"); n != 1 {
			return fmt.Errorf("%d offline for bob, want the deposited message", n)
		}
		return nil
	})
	waitKept(t, es[1], 0, 0)
}

// TestCustodyDropOnAck: once the local recipient acknowledges, the
// deposit at the buddy goes too.
func TestCustodyDropOnAck(t *testing.T) {
	es, _ := threeNodes(t)
	alice := es[2].bindSM("alice", "a")
	bob := es[2].bindSM("bob", "b")
	for i := range 3 {
		es[2].sendFrom(alice, fmt.Sprintf(`<message to='bob@example.com' type='chat' id='m%d'><body>%d</body></message>`, i, i))
	}
	waitKept(t, es[2], 3, 0)
	waitKept(t, es[0], 0, 3) // node3's buddy wraps around to node1
	bob.ack()
	waitKept(t, es[2], 0, 0)
	waitKept(t, es[0], 0, 0)
}

// TestCustodyBuddyDies: a node whose buddy dies deposits its local copies
// with another.
func TestCustodyBuddyDies(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	es[0].bindSM("bob", "b")
	es[0].sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>x</body></message>`)
	waitKept(t, es[1], 0, 1)
	net.kill("node2")
	waitKept(t, es[2], 0, 1)
	waitKept(t, es[0], 1, 0)
}

// TestCustodyUnbindReleases: a session that ends hands its unacknowledged
// message back; once it is stored offline the sender's node lets its copy
// go.
func TestCustodyUnbindReleases(t *testing.T) {
	es, _ := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='m1'><body>x</body></message>`)
	got := bob.take()
	waitKept(t, es[0], 1, 0)
	es[1].r.Unbind(context.Background(), bob, bob.unsent(got))
	if n, _ := es[1].store.CountOffline(context.Background(), "bob@example.com"); n != 1 {
		t.Fatalf("%d offline for bob, want the message", n)
	}
	waitKept(t, es[0], 0, 0)
}

// TestCustodyHandOver: a session handed to another node (cross-node
// resumption) takes receipts of copies its old node keeps; the new
// node's acknowledgement releases the old receipts.
func TestCustodyHandOver(t *testing.T) {
	es, _ := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='m1'><body>x</body></message>`)
	got := bob.take()
	waitKept(t, es[0], 1, 0)
	seqs := es[1].r.HandOver("node3", bob.unsent(got))
	if len(seqs) != 1 || seqs[0] == 0 {
		t.Fatalf("HandOver = %v", seqs)
	}
	waitKept(t, es[1], 1, 0)
	waitKept(t, es[0], 1, 0)
	es[2].r.Release([]*Receipt{RemoteReceipt("node2", seqs[0])})
	waitKept(t, es[1], 0, 0)
	waitKept(t, es[0], 0, 0)
}

// TestCustodyOff: with cluster.crash_safety false nothing is kept and
// nothing held.
func TestCustodyOff(t *testing.T) {
	off := false
	es, _ := threeNodes(t, func(c *conf.Config) { c.Cluster.CrashSafety = &off })
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='m1'><body>x</body></message>`)
	if got := bodies(bob.take()); len(got) != 1 {
		t.Fatalf("bob got %q", got)
	}
	if k, _ := es[0].custodyCounts(); k != 0 {
		t.Fatalf("node1 keeps %d copies with crash safety off", k)
	}
	if _, taken := alice.holdCounts(); taken != 0 {
		t.Fatalf("%d acknowledgement holds with crash safety off", taken)
	}
}

// TestRerouteKeepsOrderAcrossLogin: node2 dies holding three messages for
// carol; she logs in on node3 after node1 has stored the first copy
// offline and before it routes the second. Her new session takes its
// offline queue only as its client reads (paced), so the later copies,
// delivered live, would overtake the first; stored behind it, all three
// arrive in order.
func TestRerouteKeepsOrderAcrossLogin(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	carol := es[1].bindSM("carol", "c")
	for i := 1; i <= 3; i++ {
		es[0].sendFrom(alice, fmt.Sprintf(`<message to='carol@example.com/c' type='chat' id='m%d'><body>m%d</body></message>`, i, i))
	}
	if got := bodies(carol.take()); len(got) != 3 {
		t.Fatalf("carol got %q", got)
	}
	waitKept(t, es[0], 3, 0)

	var (
		mu     sync.Mutex
		routed int
		carol3 *pacedSession
	)
	es[0].r.custody.afterReroute = func(*kept) {
		mu.Lock()
		defer mu.Unlock()
		if routed++; routed == 1 {
			if n := es[0].offlineCount("carol@example.com"); n != 1 {
				t.Errorf("after the first copy %d stored for carol, want it", n)
			}
			carol3 = es[2].bindPaced("carol", "new", 0)
			es[2].sendFrom(carol3, `<presence/>`)
		}
	}
	net.kill("node2")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if routed != 3 {
			return fmt.Errorf("%d copies routed again", routed)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if n := carol3.received("message"); n != 0 {
		t.Fatalf("carol's new session was given %d messages live while the first waited in storage", n)
	}
	carol3.grant(1 << 20)
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := carol3.received("message"); n != 3 {
			return fmt.Errorf("carol's new session got %d messages", n)
		}
		return nil
	})
	if got := bodies(carol3.take()); fmt.Sprint(got) != "[m1 m2 m3]" {
		t.Fatalf("carol got %q, want [m1 m2 m3]", got)
	}
}
