package router

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/wire"
)

// place is the session's writer counting everything it holds receipts
// for as numbers 1, 2, … of the resumable session sm (c2s countLocked).
func (s *smSession) place(sm string) {
	s.mu.Lock()
	ps := make([]Position, len(s.receipts))
	for i, rc := range s.receipts {
		ps[i] = Position{Receipt: rc, H: uint32(i + 1)}
	}
	s.mu.Unlock()
	s.r.Positions(sm, ps)
}

func waitPositioned(t *testing.T, e *env, want int) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := e.r.custody.positioned(); n != want {
			return fmt.Errorf("%s knows the position of %d copies, want %d", e.r.node, n, want)
		}
		return nil
	})
}

// sendN sends n chat messages "1".."n" from s to to via e.
func sendN(e *env, s *smSession, to string, n int) {
	for i := 1; i <= n; i++ {
		e.sendFrom(s, fmt.Sprintf(`<message to='%s' type='chat' id='m%d'><body>%d</body></message>`, to, i, i))
	}
}

// awaitBodies waits until s has received exactly want (in that order),
// collecting across polls.
func awaitBodies(t *testing.T, s *smSession, want ...string) {
	t.Helper()
	var got []string
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		got = append(got, bodies(s.take())...)
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	})
}

func resumeWait(d time.Duration) envOpt {
	return func(c *conf.Config) { c.Cluster.CrashResumeWait = &d }
}

// TestCustodyResumeVerdictBeforeNodeDown: bob's node dies after his
// client received 5 messages and acknowledged none; it tries to resume on
// node3 saying it had 3, fails, and binds again: node1 routes again only
// 4 and 5, once each, in order.
func TestCustodyResumeVerdictBeforeNodeDown(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	sendN(es[0], alice, "bob@example.com/b", 5)
	if got := bodies(bob.take()); len(got) != 5 {
		t.Fatalf("bob got %q", got)
	}
	bob.place("sm-bob")
	waitKept(t, es[0], 5, 0)
	waitPositioned(t, es[0], 5)

	es[2].r.ResumeFailed("sm-bob", "bob@example.com", 3)
	waitKept(t, es[0], 2, 0) // the client has 1-3
	bob3 := es[2].bindSM("bob", "b")
	net.kill("node2")
	awaitBodies(t, bob3, "4", "5")
	if n := es[0].r.custody.deduplicated.Load(); n != 3 {
		t.Errorf("%d copies deduplicated, want 3", n)
	}
	bob3.ack()
	waitKept(t, es[0], 0, 0)
}

// TestCustodyResumeVerdictAfterNodeDown: node2 is found dead before the
// client tries to resume: node1 waits for the verdict, then routes again
// only what the client did not have.
func TestCustodyResumeVerdictAfterNodeDown(t *testing.T) {
	es, net := threeNodes(t, resumeWait(time.Minute))
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	sendN(es[0], alice, "bob@example.com/b", 4)
	bob.take()
	bob.place("sm-bob")
	waitPositioned(t, es[0], 4)
	// A message queued after the last count: it has no position and is
	// routed again whatever the client says, after the others.
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='m5'><body>5</body></message>`)
	waitKept(t, es[0], 5, 0)

	bob3 := es[2].bindSM("bob", "b")
	net.kill("node2")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		es[0].r.custody.mu.Lock()
		defer es[0].r.custody.mu.Unlock()
		if len(es[0].r.custody.awaiting["sm-bob"]) != 1 {
			return fmt.Errorf("node1 does not wait for sm-bob's verdict")
		}
		return nil
	})
	es[2].r.ResumeFailed("sm-bob", "bob@example.com", 2)
	awaitBodies(t, bob3, "3", "4", "5")
}

// TestCustodyResumeNoVerdict: a client that never tries to resume gets
// everything again once cluster.crash_resume_wait is over (at least
// once, as without positions).
func TestCustodyResumeNoVerdict(t *testing.T) {
	es, net := threeNodes(t, resumeWait(100*time.Millisecond))
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	sendN(es[0], alice, "bob@example.com/b", 3)
	bob.take()
	bob.place("sm-bob")
	waitPositioned(t, es[0], 3)
	bob3 := es[2].bindSM("bob", "b")
	net.kill("node2")
	awaitBodies(t, bob3, "1", "2", "3")
	if n := es[0].r.custody.deduplicated.Load(); n != 0 {
		t.Errorf("%d copies deduplicated without a verdict", n)
	}
}

// TestCustodyResumeVerdictOtherUser: a verdict for a session of another
// user drops nothing: a client can only give up its own messages.
func TestCustodyResumeVerdictOtherUser(t *testing.T) {
	es, net := threeNodes(t, resumeWait(0))
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	sendN(es[0], alice, "bob@example.com/b", 2)
	bob.take()
	bob.place("sm-bob")
	waitPositioned(t, es[0], 2)
	es[2].r.ResumeFailed("sm-bob", "carol@example.com", 2)
	bob3 := es[2].bindSM("bob", "b")
	net.kill("node2")
	awaitBodies(t, bob3, "1", "2")
}

// TestCustodyResumeVerdictDeposits: messages between two sessions of
// node1 are deposited with node2; the positions go there, and after
// node1's death node2 stores offline only what bob's client did not
// have, the verdict arriving before the positions.
func TestCustodyResumeVerdictDeposits(t *testing.T) {
	es, net := threeNodes(t, resumeWait(time.Minute))
	alice := es[0].bindSM("alice", "a")
	bob := es[0].bindSM("bob", "b")
	sendN(es[0], alice, "bob@example.com/b", 3)
	bob.take()
	waitKept(t, es[1], 0, 3)
	es[2].r.ResumeFailed("sm-bob", "bob@example.com", 2)
	bob.place("sm-bob")
	waitKept(t, es[1], 0, 1) // the position of 1 and 2 meets the verdict
	net.kill("node1")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n, _ := es[1].store.CountOffline(context.Background(), "bob@example.com"); n != 1 {
			return fmt.Errorf("%d offline for bob, want 1", n)
		}
		return nil
	})
	c := es[1].r.custody
	if r, d := c.rerouted.Load(), c.deduplicated.Load(); r != 1 || d != 2 {
		t.Fatalf("node2 routed again %d deposits and dropped %d, want 1 and 2", r, d)
	}
	msgs, err := es[1].store.TakeOffline(context.Background(), "bob@example.com")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("offline for bob: %d, %v", len(msgs), err)
	}
	if el, err := wire.Parse(msgs[0].Stanza, wire.Limits{}); err != nil || el.ChildText("body", "") != "3" {
		t.Fatalf("offline %s (%v), want message 3", msgs[0].Stanza, err)
	}
}

// TestCustodyPositionsKeptAndDeposited: node2 keeps copy 1 of a message
// it forwarded to bob on node1, and holds node1's deposit 1 of a message
// between two sessions of node1: the same number from two counters. The
// positions bob's session reports to node2 for each reach the right one.
func TestCustodyPositionsKeptAndDeposited(t *testing.T) {
	es, _ := threeNodes(t, resumeWait(0))
	alice := es[0].bindSM("alice", "a")
	bob := es[0].bindSM("bob", "b")
	carol := es[1].bindSM("carol", "c")
	es[1].sendFrom(carol, `<message to='bob@example.com/b' type='chat' id='c1'><body>from carol</body></message>`)
	waitKept(t, es[1], 1, 0)
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='a1'><body>from alice</body></message>`)
	waitKept(t, es[1], 1, 1)
	if got := bodies(bob.take()); !slices.Equal(got, []string{"from carol", "from alice"}) {
		t.Fatalf("bob got %q", got)
	}
	bob.place("sm-bob") // carol's is number 1, alice's number 2
	waitPositioned(t, es[1], 2)
	es[2].r.ResumeFailed("sm-bob", "bob@example.com", 1)
	waitKept(t, es[1], 0, 1) // carol's copy goes, alice's deposit stays
}
