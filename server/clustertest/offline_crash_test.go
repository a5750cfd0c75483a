package clustertest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/server/clustertest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestOfflineHandOverSurvivesKill (issue 24, CRASHSAFETY.md): five users
// have messages stored offline and log in on node 1 with stream
// management; each reads his and acknowledges none. Node 1's buddy (node
// 2, the next custody-capable member by name) is frozen (SIGSTOP) before,
// so none of the copies node 1 deposits with it is acknowledged; then
// node 1 is SIGKILLed. Each user logs in on node 3 and must get every
// message.
//
// Before, the hand-over deleted the messages from PostgreSQL when it
// read them: what the frozen node's socket buffers had not taken of the
// deposits was only in node 1's memory (the link's queue) and died with
// it. The messages are big (150 KB, 4.5 MB in all; a session takes about
// 1 MB of unacknowledged backlog) so that the deposits overflow the
// kernel's buffers between the two nodes. Now each row stays until the
// buddy has acknowledged its deposit, so the next login gets them from
// offline storage (and node 2, thawed, may route again the deposits it
// did read once it finds node 1 dead: duplicates are allowed, a missing
// message is not).
//
// It runs on a cluster of its own: it freezes and kills nodes.
func TestOfflineHandOverSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and three aviary processes")
	}
	const users, n, size = 5, 6, 150 << 10
	alice := "oh-alice"
	var bobs []string
	for i := range users {
		bobs = append(bobs, fmt.Sprint("oh-bob", i))
	}
	pg, st := ownPostgres(t, append(bobs, alice)...)
	nodes := newNodes(t, "oh", 3, pg.URL(), hztest.Shared(t, hzName+"-oh"))
	for _, n := range nodes {
		t.Cleanup(n.Kill)
	}
	startAll(t, nodes...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("---- %s log tail:\n%s", n.Cfg.Name, n.LogTail(60))
			}
		}
	})
	waitMembers(t, nodes, 3)
	n1, buddy, n3 := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := clustertest.AdminLogin(ctx, n1.AdminURL(), adminUser+"@"+domain, adminPass)
	if err != nil {
		t.Fatal(err)
	}

	// A message between two sessions of node 1 is deposited with node 2:
	// the link that will carry the deposits is up before node 2 freezes.
	a := login(t, n1, alice, "a", 1)
	defer a.Close()
	b := login(t, n1, bobs[0], "b", 1)
	awaitRoute(t, a, b)
	send(a, bare(bobs[0]), "hello")
	b.Await("hello", isMsg("hello"))
	b.Send("<presence type='unavailable'/>")
	b.Close()
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ss, err := admin.Sessions(ctx)
		if err != nil {
			return err
		}
		for _, s := range ss {
			if wire.BareJID(s.JID) == bare(bobs[0]) {
				return fmt.Errorf("%s still has a session on %s", bobs[0], s.Node)
			}
		}
		return nil
	})

	for _, bob := range bobs {
		for i := range n {
			body := fmt.Sprintf("offline %d ", i)
			send(a, bare(bob), body+strings.Repeat("x", size-len(body)))
		}
	}
	storedFor := func(bob string) int {
		c, err := st.CountOffline(ctx, bare(bob))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, bob := range bobs {
			if c := storedFor(bob); c != n {
				return fmt.Errorf("%d stored offline for %s, want %d", c, bob, n)
			}
		}
		return nil
	})

	buddy.Pause()
	t.Cleanup(buddy.Resume)
	for _, bob := range bobs {
		bs := login(t, n1, bob, "doomed", -1)
		defer bs.Close()
		bs.Send("<enable xmlns='urn:xmpp:sm:3'/>")
		bs.Await("sm enabled", func(el *wire.Element) bool { return el.Name == "enabled" })
		bs.Send("<presence/>")
		awaitNumbered(t, bs, n) // read, never acknowledged
	}
	left := 0
	for _, bob := range bobs {
		left += storedFor(bob)
	}
	n1.Kill()
	buddy.Resume()
	t.Logf("node 1 killed with %d of the %d messages handed over still stored offline", left, users*n)

	for _, bob := range bobs {
		back := login(t, n3, bob, "back", 1)
		defer back.Close()
		back.Timeout = rerouteTimeout
		for i, m := range awaitNumbered(t, back, n) {
			if !delayed(m) {
				t.Errorf("%s: message %d without a delay stamp", bob, i)
			}
		}
	}
}

// awaitNumbered reads cl's stream until the messages "offline 0" to
// "offline n-1" (body prefixes; the bodies are too big to print) have
// come, and returns them by number.
func awaitNumbered(t *testing.T, cl *servertest.Client, n int) map[int]*wire.Element {
	t.Helper()
	got := map[int]*wire.Element{}
	for len(got) < n {
		var missing []int
		for i := range n {
			if got[i] == nil {
				missing = append(missing, i)
			}
		}
		cl.Await(fmt.Sprintf("offline messages %v", missing), func(el *wire.Element) bool {
			var i int
			if el.Name != "message" {
				return false
			}
			if _, err := fmt.Sscanf(el.ChildText("body", ""), "offline %d ", &i); err != nil || i < 0 || i >= n || got[i] != nil {
				return false
			}
			got[i] = el
			return true
		})
	}
	return got
}
