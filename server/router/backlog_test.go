package router

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// pacedSession is a fakeSession that takes backlog only while it has
// room: each stanza it is sent uses its size, and with none left it keeps
// the router's ready callback until the test grants more (as a client
// reading would).
type pacedSession struct {
	*fakeSession
	mu    sync.Mutex
	room  int
	ready func()
}

var _ Paced = (*pacedSession)(nil)

func (p *pacedSession) Backlog(ready func()) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.room > 0 {
		return p.room
	}
	if ready != nil {
		p.ready = ready
	}
	return 0
}

func (p *pacedSession) Send(el *wire.Element) bool {
	if !p.fakeSession.Send(el) {
		return false
	}
	p.mu.Lock()
	p.room -= len(el.Bytes())
	p.mu.Unlock()
	return true
}

// grant gives the session room again and runs the router's callback.
func (p *pacedSession) grant(n int) {
	p.mu.Lock()
	p.room = n
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	if ready != nil {
		ready()
	}
}

// received counts, under the lock, what the session got and nobody took
// yet that is a name stanza.
func (s *fakeSession) received(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(only(name, s.got))
}

// waiting reports whether the router waits for room.
func (p *pacedSession) waiting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready != nil
}

func (e *env) bindPaced(user, res string, room int) *pacedSession {
	e.t.Helper()
	p := &pacedSession{fakeSession: &fakeSession{}, room: room}
	j, err := e.r.Bind(context.Background(), p, user, res)
	if err != nil {
		e.t.Fatalf("Bind: %v", err)
	}
	p.fakeSession.jid = j
	return p
}

func (e *env) storeMessages(to string, n, body int) {
	e.t.Helper()
	for i := range n {
		el := mustParse(e.t, fmt.Sprintf(`<message to='%s' from='romeo@example.com/o' type='chat' id='o%d'><body>%s</body></message>`, to, i, strings.Repeat("x", body)))
		if err := e.store.StoreOffline(context.Background(), to, el.Bytes(), storage.OfflineQuota{}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitOffline waits until bare has n messages stored offline: the rows
// of messages handed over are deleted once they are safe, after delivery.
func (e *env) waitOffline(bare string, n int) {
	e.t.Helper()
	testutil.CheckFor(e.t, 5*time.Second, time.Millisecond, func() error {
		if left := e.offlineCount(bare); left != n {
			return fmt.Errorf("%d stored offline, want %d", left, n)
		}
		return nil
	})
}

func (e *env) offlineCount(bare string) int {
	e.t.Helper()
	n, err := e.store.CountOffline(context.Background(), bare)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestBacklogPaced: the offline queue reaches a session only as it has
// room, oldest first, never more than one message past its room; the rest
// stays stored until the session has room again, and once the session
// is gone nothing more is taken.
func TestBacklogPaced(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	const msgs, body, room = 10, 1000, 2500
	e.storeMessages("juliet@example.com", msgs, body)
	j := e.bindPaced("juliet", "balcony", room)
	e.send(j.fakeSession, `<presence/>`)

	var got []*wire.Element
	for rounds := 0; len(got) < msgs; rounds++ {
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if !j.waiting() && len(got)+j.received("message") < msgs {
				return fmt.Errorf("the router neither waits for room nor has handed everything")
			}
			return nil
		})
		batch := only("message", j.take())
		if len(batch) == 0 || len(batch) > room/body+1 {
			t.Fatalf("round %d handed %d messages for %d bytes of room", rounds, len(batch), room)
		}
		got = append(got, batch...)
		// What was handed is deleted once queued (no buddy node here).
		e.waitOffline("juliet@example.com", msgs-len(got))
		j.grant(room)
	}
	for i, m := range got {
		if m.ID() != fmt.Sprintf("o%d", i) || m.Child("delay", wire.NSDelay) == nil {
			t.Fatalf("message %d is %s", i, sig(m))
		}
	}

	// A session that goes away while the router waits: nothing more is
	// taken, the queue stays for the next login.
	e.storeMessages("juliet@example.com", msgs, body)
	j2 := e.bindPaced("juliet", "phone", room)
	e.send(j2.fakeSession, `<presence/>`)
	handed := len(only("message", j2.take()))
	if handed == 0 || !j2.waiting() {
		t.Fatalf("handed %d, waiting %v", handed, j2.waiting())
	}
	e.r.Unbind(context.Background(), j2, nil)
	j2.grant(room)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if left := e.offlineCount("juliet@example.com"); left != msgs-handed {
			return fmt.Errorf("%d stored, want %d", left, msgs-handed)
		}
		return nil
	})
}

// TestBacklogReplaysSubscriptionsPaced: subscription requests waiting at
// login are replayed as the session has room, like the offline queue.
func TestBacklogReplaysSubscriptionsPaced(t *testing.T) {
	e := newEnv(t)
	e.user("juliet")
	const n = 30
	for i := range n {
		e.setItem("juliet@example.com", fmt.Sprintf("%s%02d@evil.example", strings.Repeat("m", 200), i), subState{Sub: storage.SubNone, PendingIn: true}, false)
	}
	j := e.bindPaced("juliet", "balcony", 1000)
	e.send(j.fakeSession, `<presence/>`)
	seen := 0
	for seen < n {
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if !j.waiting() && seen+j.received("presence") < n {
				return fmt.Errorf("not waiting")
			}
			return nil
		})
		var batch int
		for _, el := range j.take() {
			if el.Name == "presence" && el.Type() == "subscribe" {
				batch++
			}
		}
		if batch == 0 || batch > 5 {
			t.Fatalf("%d requests of ~250 bytes handed for 1000 bytes of room", batch)
		}
		seen += batch
		j.grant(1000)
	}
}

// TestBacklogOnAnotherNode: a message stored while the user's available
// resource is on another node (a race with its login) is handed over by
// that node's pump, asked over the node link; a node that does not know
// the request (an older version) gets the message as before.
func TestBacklogOnAnotherNode(t *testing.T) {
	e1, e2, net := twoNodes(t)
	j := e2.bindPaced("juliet", "balcony", 1<<20)
	e2.send(j.fakeSession, `<presence/>`)
	j.take()
	ctx := context.Background()

	e1.storeMessages("juliet@example.com", 1, 10)
	e1.r.flushOffline(ctx, "juliet@example.com")
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if j.received("message") != 1 || e1.offlineCount("juliet@example.com") != 0 {
			return fmt.Errorf("not handed over by node2")
		}
		return nil
	})
	j.take()

	net.mu.Lock()
	delete(net.nodes["node2"].handlers, KindBacklog)
	net.mu.Unlock()
	e1.storeMessages("juliet@example.com", 2, 10)
	e1.r.flushOffline(ctx, "juliet@example.com")
	if got := only("message", j.take()); len(got) != 2 || e1.offlineCount("juliet@example.com") != 0 {
		t.Fatalf("an older node got %d messages, %d left stored", len(got), e1.offlineCount("juliet@example.com"))
	}
}

// laggingReplica is a node whose replica of the routing table has not yet
// seen some users' routes (cluster/hazelcast learns other nodes' writes a
// moment after they complete); RoutesFromSource reads the table itself.
type laggingReplica struct {
	*fakeNode
	behind map[string]bool // bare JIDs the replica does not have yet
}

func (c *laggingReplica) Routes(ctx context.Context, bare string) ([]cluster.Route, error) {
	if c.behind[bare] {
		return nil, nil
	}
	return c.fakeNode.Routes(ctx, bare)
}

func (c *laggingReplica) RoutesFromSource(ctx context.Context, bare string) ([]cluster.Route, error) {
	return c.fakeNode.Routes(ctx, bare)
}

// TestOfflineCommitSeesLoginOnAnotherNode: a message routed while the
// sending node's replica has not yet seen the recipient's new session on
// another node is stored offline; the session took the (then empty) queue
// when it came online, so after the commit the sending node reads the
// routes from their source, finds it and has the message delivered at
// once. With the replica's answer the message waited for the session's
// node to look again, offlineRecheck later: turned off here, so that only
// the look after the commit can deliver it.
func TestOfflineCommitSeesLoginOnAnotherNode(t *testing.T) {
	st := openStore(t)
	n := newFakeNet("node1", "node2")
	lag := &laggingReplica{fakeNode: n.nodes["node1"], behind: map[string]bool{"juliet@example.com": true}}
	e1 := newEnvWith(t, st, lag)
	e2 := newEnvWith(t, st, n.nodes["node2"])
	e2.r.offlineRecheck = time.Hour
	e1.user("alice", "juliet")
	j := e2.online("juliet", "balcony", 0)
	j.take()
	a := e1.online("alice", "a", 0)
	e1.send(a, `<message to='juliet@example.com' type='chat' id='m1'><body>while you logged in</body></message>`)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := only("message", j.take()); len(got) != 1 {
			return fmt.Errorf("juliet got %d messages, %d stored offline", len(got), e1.offlineCount("juliet@example.com"))
		}
		return nil
	})
}

// receiptedPaced is a pacedSession that keeps receipts (Receipted), as a
// stream-management session does, so protected messages get custody.
type receiptedPaced struct{ *pacedSession }

func (p receiptedPaced) SendReceipted(el *wire.Element, rc *Receipt) bool { return p.Send(el) }

// TestBacklogPumpTakesNoHold: a pump kicked while a message was routed
// (storeOffline's flush) and resumed later, when its session has room,
// takes no hold from that routing: the routing has ended, and asking the
// sending session for a hold from the pump's goroutine would hold an
// unrelated stanza's acknowledgement (and race on the session's count).
func TestBacklogPumpTakesNoHold(t *testing.T) {
	es, _ := threeNodes(t)
	e := es[0]
	alice := e.bindSM("alice", "a")
	p := &pacedSession{fakeSession: &fakeSession{}, room: 1 << 20}
	bob := receiptedPaced{p}
	j, err := e.r.Bind(context.Background(), bob, "bob", "b")
	if err != nil {
		t.Fatal(err)
	}
	p.fakeSession.jid = j
	e.r.FromClient(context.Background(), bob, mustParse(t, `<presence from='`+j.String()+`'/>`))
	p.mu.Lock()
	p.room = 0
	p.mu.Unlock()
	e.storeMessages("bob@example.com", 1, 10)

	// The routing context of a message alice sends, as FromClient makes it.
	ctx := plugins.WithAckHolder(context.Background(), &holdSrc{s: alice})
	e.r.kickBacklog(ctx, j.String())
	if !p.waiting() {
		t.Fatal("the pump does not wait for room")
	}
	p.grant(1 << 20)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := p.received("message"); n != 1 {
			return fmt.Errorf("bob got %d messages", n)
		}
		return nil
	})
	if _, taken := alice.holdCounts(); taken != 0 {
		t.Fatalf("the pump took %d holds on alice's acknowledgements", taken)
	}
}
