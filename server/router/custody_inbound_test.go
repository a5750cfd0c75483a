package router

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
)

// waitSafeInbound waits until e answers the count want for the session
// sm of bare (want < 0: none known), as a failed resumption asks it,
// skipping skip.
func waitSafeInbound(t *testing.T, e *env, sm, bare, skip string, want int64) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		h, ok := e.r.SafeInbound(context.Background(), sm, bare, skip)
		got := int64(-1)
		if ok {
			got = int64(h)
		}
		if got != want {
			return fmt.Errorf("%s answers %d for %s of %s, want %d", e.r.node, got, sm, bare, want)
		}
		return nil
	})
}

// TestCustodyInboundCount: node2's resumable session reports its safe
// inbound counts; they reach node2's buddy (node3), a lower one that
// overtook a higher one changes nothing, and after node2 dies node1 and
// node3 answer the last one, for bob only.
func TestCustodyInboundCount(t *testing.T) {
	es, net := threeNodes(t)
	es[1].r.InboundSafe("sm-bob", "bob@example.com", 3, nil)
	es[1].r.InboundSafe("sm-bob", "bob@example.com", 5, nil)
	es[1].r.InboundSafe("sm-bob", "bob@example.com", 4, nil)
	es[1].r.InboundSafe("sm-carol", "carol@example.com", 2, nil)
	waitSafeInbound(t, es[0], "sm-bob", "bob@example.com", "node2", 5)
	if h, ok := es[2].r.custody.in.known("sm-bob", "bob@example.com"); !ok || h != 5 {
		t.Fatalf("node3 (node2's buddy) holds %d (%v), want 5", h, ok)
	}
	if n := es[2].r.custody.in.counted.Load(); n != 7 {
		t.Errorf("node3 counted %d stanzas, want 7", n)
	}
	// Another user's session is not answered, whoever asks.
	waitSafeInbound(t, es[0], "sm-bob", "carol@example.com", "node2", -1)
	waitSafeInbound(t, es[2], "sm-carol", "bob@example.com", "node2", -1)
	// A session that ended (or moved on) is forgotten.
	es[1].r.InboundEnded("sm-carol")
	waitSafeInbound(t, es[0], "sm-carol", "carol@example.com", "node2", -1)

	net.kill("node2")
	answered := es[0].r.custody.in.answered.Load()
	if h, ok := es[0].r.SafeInbound(context.Background(), "sm-bob", "bob@example.com", "node2"); !ok || h != 5 {
		t.Errorf("after node2 died node1 answers %d (%v), want 5", h, ok)
	}
	if _, ok := es[0].r.SafeInbound(context.Background(), "sm-bob", "carol@example.com", "node2"); ok {
		t.Error("after node2 died node1 answers bob's count to carol")
	}
	if n := es[0].r.custody.in.answered.Load() - answered; n != 1 {
		t.Errorf("node1 answered %d resumptions with a count, want 1", n)
	}
	waitSafeInbound(t, es[2], "sm-bob", "bob@example.com", "node2", 5)
}

// TestCustodyInboundBuddyDies: node1's counts are with node2; when node2
// dies they go, all of them, to node3.
func TestCustodyInboundBuddyDies(t *testing.T) {
	es, net := threeNodes(t)
	es[0].r.InboundSafe("sm-alice", "alice@example.com", 4, nil)
	waitSafeInbound(t, es[2], "sm-alice", "alice@example.com", "node1", 4)
	if _, ok := es[2].r.custody.in.known("sm-alice", "alice@example.com"); ok {
		t.Fatal("node3 has the count: node2 is node1's buddy")
	}
	net.kill("node2")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if h, ok := es[2].r.custody.in.known("sm-alice", "alice@example.com"); !ok || h != 4 {
			return fmt.Errorf("node3 holds %d (%v), want 4", h, ok)
		}
		return nil
	})
}

// TestCustodyInboundOff: without crash safety nothing is made safe, so
// nothing is reported or answered.
func TestCustodyInboundOff(t *testing.T) {
	es, _ := threeNodes(t, func(c *conf.Config) { off := false; c.Cluster.CrashSafety = &off })
	if es[1].r.InboundSafe("sm-bob", "bob@example.com", 3, func(uint32) {}) {
		t.Error("with crash safety off a session is told to wait for its count to reach a buddy")
	}
	if _, ok := es[0].r.SafeInbound(context.Background(), "sm-bob", "bob@example.com", "node2"); ok {
		t.Fatal("a count answered with crash safety off")
	}
}

// TestCustodyInboundHeld: a session is told its count reached another
// node only once the buddy acknowledged handling it (its <a h/> waits
// for that); when the buddy cannot be told, it is told all the same (the
// buddy failing is the one failure); with no buddy nothing waits.
func TestCustodyInboundHeld(t *testing.T) {
	es, net := threeNodes(t)
	held := make(chan uint32, 8)
	tell := func(h uint32) { held <- h }
	net.mu.Lock()
	net.deferReports = true
	net.mu.Unlock()
	if !es[1].r.InboundSafe("sm-bob", "bob@example.com", 3, tell) {
		t.Fatal("InboundSafe with a buddy says nothing will be told")
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if h, ok := es[2].r.custody.in.known("sm-bob", "bob@example.com"); !ok || h != 3 {
			return fmt.Errorf("node3 holds %d (%v), want 3", h, ok)
		}
		return nil
	})
	select {
	case h := <-held:
		t.Fatalf("told %d before the buddy acknowledged it", h)
	case <-time.After(30 * time.Millisecond):
	}
	net.reports()
	if h := <-held; h != 3 {
		t.Fatalf("told %d, want 3", h)
	}

	// The buddy is dead, not yet found so: the count cannot reach it,
	// and the session is not left waiting.
	net.mu.Lock()
	net.deferReports = false
	net.mu.Unlock()
	found := net.killUnnoticed("node3")
	es[1].r.InboundSafe("sm-bob", "bob@example.com", 5, tell)
	select {
	case h := <-held:
		if h != 5 {
			t.Fatalf("told %d, want 5", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a session whose buddy died waits for its count to be held")
	}
	found()
	// Once node3 is found dead node2's counts go to node1 (told again
	// as they go: a count told twice is no harm).
	es[1].r.InboundSafe("sm-bob", "bob@example.com", 6, tell)
	for h := uint32(0); h != 6; {
		select {
		case h = <-held:
		case <-time.After(5 * time.Second):
			t.Fatal("count 6 never told")
		}
	}
	if h, ok := es[0].r.custody.in.known("sm-bob", "bob@example.com"); !ok || h != 6 {
		t.Errorf("told 6 while node1 holds %d (%v)", h, ok)
	}

	// Alone, nobody is asked: nothing waits (once the node has seen the
	// members again, as its next flush does; a report never refreshes
	// that view itself, it runs under a session's lock).
	net.kill("node1")
	es[1].r.custody.forgetPeers()
	es[1].r.custody.view()
	if es[1].r.InboundSafe("sm-bob", "bob@example.com", 7, tell) {
		t.Error("a lone node's session is told to wait for a buddy")
	}
}

// TestCustodyInboundChunks: a full set too big for one notice is split;
// the parts together give every count, and a new full set replaces them
// (the old ones are kept a while for their clients' resumptions).
func TestCustodyInboundChunks(t *testing.T) {
	mine := map[string]inCount{}
	for i := range 5000 {
		mine[fmt.Sprintf("c2Vzc2lvbi1pZC1vZi1hLW5vZGU.%040d", i)] = inCount{bare: fmt.Sprintf("user%d@example.com", i), h: uint32(i)}
	}
	msgs := appendInbound(nil, inFull, mine, nil)
	if len(msgs) < 2 {
		t.Fatalf("%d messages for %d counts, want them split", len(msgs), len(mine))
	}
	e := newEnv(t)
	c := e.r.custody
	for _, m := range msgs {
		if _, err := c.handleInbound(context.Background(), "node2", m); err != nil {
			t.Fatal(err)
		}
	}
	for sm, want := range mine {
		if h, ok := c.in.known(sm, want.bare); !ok || h != want.h {
			t.Fatalf("%s: %d (%v), want %d", sm, h, ok, want.h)
		}
	}
	// node2 restarted: a new set; the old counts stay answerable.
	if _, err := c.handleInbound(context.Background(), "node2", appendInbound(nil, inFull, map[string]inCount{"new": {bare: "a@example.com", h: 1}}, nil)[0]); err != nil {
		t.Fatal(err)
	}
	if h, ok := c.in.known("new", "a@example.com"); !ok || h != 1 {
		t.Fatalf("new set: %d (%v)", h, ok)
	}
	if _, ok := c.in.known("c2Vzc2lvbi1pZC1vZi1hLW5vZGU.0000000000000000000000000000000000000007", "user7@example.com"); !ok {
		t.Fatal("the previous set was forgotten at once")
	}
	c.in.mu.Lock()
	held := c.in.held
	c.in.mu.Unlock()
	if held != len(mine)+1 {
		t.Errorf("held %d, want %d", held, len(mine)+1)
	}
}

// TestCustodyInboundOlderBuddy: a member that does not publish
// custody.inbound (an older version, in a rolling upgrade) is skipped:
// node2's counts go to node1, and nobody sends node3 the new kinds.
func TestCustodyInboundOlderBuddy(t *testing.T) {
	es, net := threeNodes(t)
	net.mu.Lock()
	n3 := net.nodes["node3"]
	n3.member.Features = slices.DeleteFunc(slices.Clone(n3.member.Features), func(f string) bool { return f == FeatureInboundCount })
	delete(n3.handlers, KindInbound)
	delete(n3.handlers, KindInboundQuery)
	net.mu.Unlock()
	es[1].r.custody.forgetPeers()
	es[0].r.custody.forgetPeers()
	es[1].r.InboundSafe("sm-bob", "bob@example.com", 2, nil)
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if h, ok := es[0].r.custody.in.known("sm-bob", "bob@example.com"); !ok || h != 2 {
			return fmt.Errorf("node1 holds %d (%v), want 2", h, ok)
		}
		return nil
	})
	if h, ok := es[0].r.SafeInbound(context.Background(), "sm-bob", "bob@example.com", "node2"); !ok || h != 2 {
		t.Errorf("node1 answers %d (%v), want 2", h, ok)
	}
}
