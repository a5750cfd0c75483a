package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// loginSM binds user/res with a stream-management session, sends initial
// presence and returns the messages the session was handed.
func (e *env) loginSM(user, res string) (*smSession, []*wire.Element) {
	e.t.Helper()
	s := &smSession{fakeSession: &fakeSession{}, r: e.r}
	j, err := e.r.Bind(context.Background(), s, user, res)
	if err != nil {
		e.t.Fatalf("Bind(%s/%s): %v", user, res, err)
	}
	s.fakeSession.mu.Lock()
	s.jid = j
	s.fakeSession.mu.Unlock()
	e.sendFrom(s, `<presence/>`)
	return s, only("message", s.take())
}

func ids(els []*wire.Element) []string {
	var out []string
	for _, el := range els {
		out = append(out, el.ID())
	}
	return out
}

// TestOfflineHandOverDeletesOnceSafe: the offline queue handed to a
// session stays stored until the buddy node has each message's deposit,
// so a node dying in between loses nothing (issue 24); the rows handed
// over are not read again, by the same session's next look nor by a
// second session of the user on the node.
func TestOfflineHandOverDeletesOnceSafe(t *testing.T) {
	es, net := threeNodes(t)
	e := es[0]
	e.storeMessages("bob@example.com", 3, 10)
	net.mu.Lock()
	net.deferReports = true // the buddy's link acknowledgements wait
	net.mu.Unlock()

	bob, got := e.loginSM("bob", "b")
	if fmt.Sprint(ids(got)) != "[o0 o1 o2]" {
		t.Fatalf("bob was handed %v, want o0 o1 o2", ids(got))
	}
	waitKept(t, es[1], 0, 3) // node2, node1's buddy, has the deposits...
	if n := e.offlineCount("bob@example.com"); n != 3 {
		// ...but node1 does not know yet: the rows must stay.
		t.Fatalf("%d offline rows before the buddy acknowledged the deposits, want all 3 kept", n)
	}

	// The pump looking again (a kick) reads past what was handed over.
	e.r.kickBacklog(context.Background(), "bob@example.com/b")
	if again := only("message", bob.take()); len(again) != 0 {
		t.Fatalf("a second look handed %v again", ids(again))
	}
	// A second session of bob on this node is not handed them either.
	_, second := e.loginSM("bob", "b2")
	if len(second) != 0 {
		t.Fatalf("a second session was handed %v while the first had them", ids(second))
	}
	// A message stored meanwhile comes, and only it.
	e.storeMessages("bob@example.com", 1, 20)
	e.r.kickBacklog(context.Background(), "bob@example.com/b")
	if fresh := only("message", bob.take()); len(fresh) != 1 || len(fresh[0].ChildText("body", "")) != 20 {
		t.Fatalf("after a new message the pump handed %v, want the new one only", ids(fresh))
	}

	e.r.handed.linger = 50 * time.Millisecond
	net.reports()
	e.waitOffline("bob@example.com", 0)
	// Deleted rows stay claimed a while (a late reader skips them), then go.
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := e.r.handed.count(); n != 0 {
			return fmt.Errorf("%d rows still claimed after they were deleted", n)
		}
		return nil
	})
}

// TestOfflineHandOverStaleRead: a hand-over that read the queue just
// before another hand-over on the node delivered and deleted the same
// rows, and claims them just after, hands over nothing: the deleted rows
// stay claimed a while. Without that the message came twice (a flush one
// node asked for racing the session's own hand-over at its initial
// presence, server/clustertest TestCrashResumeOnce, 1 run in 5).
func TestOfflineHandOverStaleRead(t *testing.T) {
	e := newEnv(t)
	e.storeMessages("bob@example.com", 2, 10)
	ctx := context.Background()
	stale, _, err := e.store.ReadOfflineUpTo(ctx, "bob@example.com", nil, 1<<20)
	if err != nil || len(stale) != 2 {
		t.Fatalf("read %d rows, %v", len(stale), err)
	}
	bob, got := e.loginSM("bob", "b")
	if len(got) != 2 {
		t.Fatalf("bob was handed %d messages at login, want 2", len(got))
	}
	e.waitOffline("bob@example.com", 0) // delivered and deleted
	if !e.r.handOverOffline(ctx, "bob@example.com/b", "bob@example.com", stale) {
		t.Fatal("the late hand-over reports the session gone")
	}
	if again := only("message", bob.take()); len(again) != 0 {
		t.Fatalf("the late hand-over delivered %v again", ids(again))
	}
}

// TestOfflineHandOverSessionEnds: a session that ends before the buddy
// acknowledged hands its messages back (Unbind); they are stored offline
// again, and the rows they came from are deleted only then: each message
// is stored once afterwards, none lost, none doubled.
func TestOfflineHandOverSessionEnds(t *testing.T) {
	es, net := threeNodes(t)
	e := es[0]
	e.storeMessages("bob@example.com", 3, 10)
	net.mu.Lock()
	net.deferReports = true
	net.mu.Unlock()

	bob, got := e.loginSM("bob", "b")
	if len(got) != 3 {
		t.Fatalf("bob was handed %d messages, want 3", len(got))
	}
	e.r.Unbind(context.Background(), bob, bob.unsent(got))
	e.waitOffline("bob@example.com", 3)
	msgs, err := e.store.PeekOffline(context.Background(), "bob@example.com", 10)
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, m := range msgs {
		stored = append(stored, mustParse(t, string(m.Stanza)).ID())
	}
	if fmt.Sprint(stored) != "[o0 o1 o2]" {
		t.Fatalf("stored after the session ended: %v, want o0 o1 o2 once each", stored)
	}
	net.reports()
	if _, again := e.loginSM("bob", "c"); fmt.Sprint(ids(again)) != "[o0 o1 o2]" {
		t.Fatalf("the next login got %v, want o0 o1 o2", ids(again))
	}
}

// TestOfflineHandOverDeleteRetries: a delete the database does not
// answer is tried again until it passes; one that never passes gives up
// (counted), leaving the messages stored for the next login.
func TestOfflineHandOverDeleteRetries(t *testing.T) {
	e, g := retryEnv(t)
	e.r.handed.first, e.r.handed.max, e.r.handed.attempts = time.Millisecond, 2*time.Millisecond, 3
	e.storeMessages("bob@example.com", 2, 10)
	g.deleteFails.Store(2)
	if _, got := e.loginSM("bob", "b"); len(got) != 2 {
		t.Fatalf("bob was handed %d messages, want 2", len(got))
	}
	e.waitOffline("bob@example.com", 0)

	e.storeMessages("carol@example.com", 1, 10)
	g.deleteFails.Store(3)
	if _, got := e.loginSM("carol", "c"); len(got) != 1 {
		t.Fatalf("carol was handed %d messages, want 1", len(got))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if v := counterValue(t, e.r.m.offlineDeleteFailed); v != 1 {
			return fmt.Errorf("%v deletes given up, want 1", v)
		}
		return nil
	})
	if n := e.offlineCount("carol@example.com"); n != 1 {
		t.Fatalf("%d stored for carol after the delete failed, want the message kept", n)
	}
	if _, again := e.loginSM("carol", "c2"); len(again) != 1 {
		t.Fatalf("carol's next login got %d messages, want the one not deleted", len(again))
	}
}

// TestOfflineHandOverReadRetried: when reading an online user's offline
// queue fails (a database a storm times out), it is read again later,
// without another login or another message stored for the user.
func TestOfflineHandOverReadRetried(t *testing.T) {
	e, g := retryEnv(t)
	e.r.backlogRetryFirst, e.r.backlogRetryMax = 5*time.Millisecond, 20*time.Millisecond
	e.storeMessages("bob@example.com", 3, 10)
	g.readFails.Store(3)
	s, got := e.loginSM("bob", "b")
	got = append(got, only("message", s.take())...)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		got = append(got, only("message", s.take())...)
		if len(got) != 3 {
			return fmt.Errorf("bob was handed %d of his 3 stored messages", len(got))
		}
		return nil
	})
	e.waitOffline("bob@example.com", 0)
}

// TestOfflineHandOverPluginDrop: a message a plugin drops at
// PointDeliver is settled like a delivered one: its row goes with the
// portion's once the others are safe, and it does not come back.
func TestOfflineHandOverPluginDrop(t *testing.T) {
	es, net := threeNodes(t)
	e := es[0]
	e.storeMessages("bob@example.com", 3, 10)
	e.r.SetPlugins(plugins.NewManager(nil, e.r.log, []plugins.Plugin{&fakePlugin{
		points: []plugins.Point{plugins.PointDeliver},
		intercept: func(p plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
			if st.El.ID() == "o1" {
				return plugins.Drop, nil
			}
			return plugins.Continue, nil
		},
	}}))
	net.mu.Lock()
	net.deferReports = true
	net.mu.Unlock()

	if _, got := e.loginSM("bob", "b"); fmt.Sprint(ids(got)) != "[o0 o2]" {
		t.Fatalf("bob was handed %v, want o0 o2 (o1 dropped by the plugin)", ids(got))
	}
	waitKept(t, es[1], 0, 2)
	if n := e.offlineCount("bob@example.com"); n != 3 {
		t.Fatalf("%d offline rows before the deposits were acknowledged, want 3", n)
	}
	net.reports()
	e.waitOffline("bob@example.com", 0)
}
