package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gateStore is a store whose offline writes and account look-ups fail as
// a database that does not answer would, while down is set.
type gateStore struct {
	storage.Store
	down     atomic.Bool // StoreOffline fails with storage.ErrUnavailable
	userDown atomic.Bool // GetUser fails with storage.ErrUnavailable
	// refuse, when set, is returned by StoreOffline (a permanent error).
	refuse   atomic.Pointer[error]
	attempts atomic.Int32 // StoreOffline calls
	stored   atomic.Int32 // StoreOffline calls that stored
	// deleteFails is how many DeleteOffline calls fail from now on;
	// readFails the same for ReadOfflineUpTo.
	deleteFails atomic.Int32
	readFails   atomic.Int32
}

func (g *gateStore) ReadOfflineUpTo(ctx context.Context, owner string, skip []int64, budget int) ([]storage.OfflineMessage, bool, error) {
	if g.readFails.Add(-1) >= 0 {
		return nil, false, errNoAnswer
	}
	return g.Store.ReadOfflineUpTo(ctx, owner, skip, budget)
}

func (g *gateStore) DeleteOffline(ctx context.Context, owner string, ids []int64) error {
	if g.deleteFails.Add(-1) >= 0 {
		return errNoAnswer
	}
	return g.Store.DeleteOffline(ctx, owner, ids)
}

var errNoAnswer = fmt.Errorf("%w: %w", storage.ErrUnavailable, context.DeadlineExceeded)

func (g *gateStore) StoreOffline(ctx context.Context, owner string, stanza []byte, q storage.OfflineQuota) error {
	g.attempts.Add(1)
	if g.down.Load() {
		return errNoAnswer
	}
	if err := g.refuse.Load(); err != nil {
		return *err
	}
	err := g.Store.StoreOffline(ctx, owner, stanza, q)
	if err == nil {
		g.stored.Add(1)
	}
	return err
}

func (g *gateStore) GetUser(ctx context.Context, username string) (storage.User, error) {
	if g.userDown.Load() {
		return storage.User{}, errNoAnswer
	}
	return g.Store.GetUser(ctx, username)
}

// retryEnv is one node whose store is a gateStore, its lanes retrying
// every few milliseconds.
func retryEnv(t *testing.T, opts ...envOpt) (*env, *gateStore) {
	t.Helper()
	g := &gateStore{Store: openStore(t)}
	e := newEnvWith(t, g, local.New("node1"), opts...)
	fastRetry(t, e)
	e.user("alice", "bob", "carol")
	return e, g
}

// fastRetry shortens a router's backoff and stops its lanes at the end.
func fastRetry(t *testing.T, e *env) {
	e.r.retry.first, e.r.retry.max = time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.r.StopOfflineRetry(ctx)
	})
}

// waitAttempts waits until the store has been asked at least n times.
func waitAttempts(t *testing.T, g *gateStore, n int32) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if a := g.attempts.Load(); a < n {
			return fmt.Errorf("%d attempts to store, want %d", a, n)
		}
		return nil
	})
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestOfflineRetryStoresWhenDatabaseAnswers: offline storage does not
// answer; the messages are not bounced but kept, in order, and stored
// once each when it answers, stamped with the time they arrived. The
// sender's acknowledgement waits until then.
func TestOfflineRetryStoresWhenDatabaseAnswers(t *testing.T) {
	e, g := retryEnv(t)
	alice := e.bindSM("alice", "a")
	g.down.Store(true)
	arrived := e.now
	e.sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>one</body></message>`)
	e.now = e.now.Add(time.Second)
	e.sendFrom(alice, `<message to='bob@example.com' type='chat' id='m2'><body>two</body></message>`)
	if held, taken := alice.holdCounts(); held != 2 || taken != 2 {
		t.Fatalf("alice's acknowledgements: %d held of %d taken, want both held while the database does not answer", held, taken)
	}
	waitAttempts(t, g, 4) // the lane has tried again, more than once
	if got := alice.take(); len(got) != 0 {
		t.Fatalf("alice got %q while the database did not answer, want nothing", sigs(got))
	}
	if held, _ := alice.holdCounts(); held != 2 {
		t.Fatalf("%d acknowledgements held before the messages are stored, want 2", held)
	}
	if n := counterValue(t, e.r.retry.retries); n < 1 {
		t.Fatalf("retries counted %v, want some", n)
	}
	if n, _ := e.r.retry.waitingCounts(); n != 2 {
		t.Fatalf("%d messages waiting, want 2", n)
	}

	g.down.Store(false)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if held, _ := alice.holdCounts(); held != 0 {
			return fmt.Errorf("%d acknowledgements still held", held)
		}
		return nil
	})
	// Released only once stored: both are there the moment the holds go.
	if n := e.offlineCount("bob@example.com"); n != 2 {
		t.Fatalf("%d offline messages for bob when alice's acknowledgements were released, want 2", n)
	}
	if s := g.stored.Load(); s != 2 {
		t.Fatalf("stored %d times, want each message once", s)
	}
	if got := alice.take(); len(got) != 0 {
		t.Fatalf("alice got %q, want no error", sigs(got))
	}
	msgs, err := e.store.TakeOffline(context.Background(), "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"one", "two"} {
		el := mustParse(t, string(msgs[i].Stanza))
		if b := el.ChildText("body", ""); b != want {
			t.Fatalf("stored message %d is %q, want %q (arrival order)", i, b, want)
		}
		stamp := arrived.Add(time.Duration(i) * time.Second).UTC().Format("2006-01-02T15:04:05.000Z")
		if d := el.Child("delay", wire.NSDelay); d == nil || d.Attr("stamp") != stamp {
			t.Fatalf("stored message %d: %s, want a delay stamped %s (when it arrived)", i, el, stamp)
		}
	}
	if n, b := e.r.retry.waitingCounts(); n != 0 || b != 0 {
		t.Fatalf("%d messages (%d bytes) still counted as waiting", n, b)
	}
}

// TestOfflineRetryFlushesToLogin: a user who logs in while a message for
// them waits gets it once it is stored (flushOffline after the commit).
func TestOfflineRetryFlushesToLogin(t *testing.T) {
	e, g := retryEnv(t)
	alice := e.bind("alice", "a")
	g.down.Store(true)
	e.send(alice, `<message to='bob@example.com' type='chat' id='m1'><body>late</body></message>`)
	waitAttempts(t, g, 2)
	bob := e.online("bob", "b", 0) // his login finds the queue empty
	g.down.Store(false)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := bodies(bob.take()); len(got) != 1 || got[0] != "late" {
			return fmt.Errorf("bob got %q", got)
		}
		return nil
	})
	if got := alice.take(); len(got) != 0 {
		t.Fatalf("alice got %q, want no error", sigs(got))
	}
}

// TestOfflineRetryBounces: what is not kept is bounced as before: a
// permanent refusal at once, a message past c2s.offline_retry_max_bytes,
// one that waited c2s.offline_retry_max_wait, and everything with
// retrying off.
func TestOfflineRetryBounces(t *testing.T) {
	t.Run("permanent error", func(t *testing.T) {
		e, g := retryEnv(t)
		alice := e.bindSM("alice", "a")
		bad := errors.New("constraint violated")
		g.refuse.Store(&bad)
		e.sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>x</body></message>`)
		if got := alice.take(); len(got) != 1 || errCond(got[0]) != "internal-server-error" {
			t.Fatalf("alice got %q, want internal-server-error at once", sigs(got))
		}
		if a := g.attempts.Load(); a != 1 {
			t.Fatalf("%d attempts, want 1", a)
		}
		if n, _ := e.r.retry.waitingCounts(); n != 0 {
			t.Fatalf("%d messages waiting after a permanent error", n)
		}
	})
	t.Run("quota", func(t *testing.T) {
		e, g := retryEnv(t, func(c *conf.Config) { c.C2S.OfflineLimit = 1 })
		alice := e.bind("alice", "a")
		e.send(alice, `<message to='bob@example.com' type='chat' id='m1'><body>fits</body></message>`)
		e.send(alice, `<message to='bob@example.com' type='chat' id='m2'><body>full</body></message>`)
		got := alice.take()
		if len(got) != 1 || errCond(got[0]) != "service-unavailable" || !strings.Contains(got[0].String(), "storage is full") {
			t.Fatalf("alice got %q, want service-unavailable (storage full) for m2", sigs(got))
		}
		if a := g.attempts.Load(); a != 2 {
			t.Fatalf("%d attempts, want 2", a)
		}
	})
	t.Run("past the cap", func(t *testing.T) {
		// Room for one message, not two.
		e, g := retryEnv(t, func(c *conf.Config) { c.C2S.OfflineRetryMaxBytes = 700 })
		alice := e.bindSM("alice", "a")
		g.down.Store(true)
		e.sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>kept</body></message>`)
		e.sendFrom(alice, `<message to='carol@example.com' type='chat' id='m2'><body>over the cap</body></message>`)
		got := alice.take()
		if len(got) != 1 || got[0].ID() != "m2" || errCond(got[0]) != "resource-constraint" {
			t.Fatalf("alice got %q, want m2 bounced with resource-constraint", sigs(got))
		}
		if held, _ := alice.holdCounts(); held != 1 {
			t.Fatalf("%d acknowledgements held, want m1's only", held)
		}
		if n := counterValue(t, e.r.retry.gaveFull); n != 1 {
			t.Fatalf("gave up (full) %v, want 1", n)
		}
		g.down.Store(false)
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if n := e.offlineCount("bob@example.com"); n != 1 {
				return fmt.Errorf("%d offline for bob", n)
			}
			return nil
		})
	})
	t.Run("waited too long", func(t *testing.T) {
		e, g := retryEnv(t, func(c *conf.Config) { c.C2S.OfflineRetryMaxWait = 20 * time.Millisecond })
		alice := e.bindSM("alice", "a")
		g.down.Store(true)
		e.sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>x</body></message>`)
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if got := alice.take(); len(got) != 1 || errCond(got[0]) != "resource-constraint" {
				return fmt.Errorf("alice got %q", sigs(got))
			}
			return nil
		})
		if held, _ := alice.holdCounts(); held != 0 {
			t.Fatalf("acknowledgement still held after the bounce")
		}
		if n := counterValue(t, e.r.retry.gaveOld); n != 1 {
			t.Fatalf("gave up (expired) %v, want 1", n)
		}
	})
	t.Run("retrying off", func(t *testing.T) {
		e, g := retryEnv(t, func(c *conf.Config) { c.C2S.OfflineRetryMaxBytes = -1 })
		alice := e.bind("alice", "a")
		g.down.Store(true)
		e.send(alice, `<message to='bob@example.com' type='chat' id='m1'><body>x</body></message>`)
		if got := alice.take(); len(got) != 1 || errCond(got[0]) != "resource-constraint" {
			t.Fatalf("alice got %q, want resource-constraint at once", sigs(got))
		}
	})
}

// TestOfflineRetryAccountCheck: an account the database could not look
// up is not taken for unknown; the check is made again before storing,
// and a message for an account that does not exist is still bounced.
func TestOfflineRetryAccountCheck(t *testing.T) {
	e, g := retryEnv(t)
	alice := e.bind("alice", "a")
	g.userDown.Store(true)
	e.send(alice, `<message to='bob@example.com' type='chat' id='known'><body>x</body></message>`)
	e.send(alice, `<message to='nobody@example.com' type='chat' id='unknown'><body>x</body></message>`)
	if got := alice.take(); len(got) != 0 {
		t.Fatalf("alice got %q while accounts could not be looked up, want nothing", sigs(got))
	}
	g.userDown.Store(false)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := alice.take(); len(got) != 1 || got[0].ID() != "unknown" || errCond(got[0]) != "service-unavailable" {
			return fmt.Errorf("alice got %q, want the message to nobody bounced", sigs(got))
		}
		return nil
	})
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := e.offlineCount("bob@example.com"); n != 1 {
			return fmt.Errorf("%d offline for bob", n)
		}
		return nil
	})
	if n := e.offlineCount("nobody@example.com"); n != 0 {
		t.Fatalf("%d offline for an account that does not exist", n)
	}
}

// TestOfflineRetryStop: a stopping node tries once more. What the
// database takes then is stored; what it does not is left to whoever
// still holds it (the sender's acknowledgement stays held), or bounced
// when nobody does.
func TestOfflineRetryStop(t *testing.T) {
	t.Run("database answers", func(t *testing.T) {
		e, g := retryEnv(t)
		e.r.retry.first, e.r.retry.max = time.Hour, time.Hour // the lane waits
		alice := e.bindSM("alice", "a")
		g.down.Store(true)
		e.sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>x</body></message>`)
		waitAttempts(t, g, 2)
		g.down.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.r.StopOfflineRetry(ctx)
		if n := e.offlineCount("bob@example.com"); n != 1 {
			t.Fatalf("%d offline for bob after the stop, want the waiting message", n)
		}
		if held, _ := alice.holdCounts(); held != 0 {
			t.Fatalf("acknowledgement still held after the message was stored")
		}
	})
	t.Run("database still away", func(t *testing.T) {
		e, g := retryEnv(t)
		alice := e.bindSM("alice", "a")
		carol := e.bind("carol", "c") // no stream management: nothing held
		g.down.Store(true)
		e.sendFrom(alice, `<message to='bob@example.com' type='chat' id='m1'><body>x</body></message>`)
		e.send(carol, `<message to='bob@example.com' type='chat' id='m2'><body>y</body></message>`)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.r.StopOfflineRetry(ctx)
		if held, _ := alice.holdCounts(); held != 1 {
			t.Fatalf("alice's acknowledgement released for a message never stored")
		}
		if got := alice.take(); len(got) != 0 {
			t.Fatalf("alice got %q; her client sends it again instead", sigs(got))
		}
		if got := carol.take(); len(got) != 1 || got[0].ID() != "m2" || got[0].Type() != "error" {
			t.Fatalf("carol got %q, want m2 bounced", sigs(got))
		}
		if n := counterValue(t, e.r.retry.gaveEnd); n != 2 {
			t.Fatalf("gave up (stopped) %v, want 2", n)
		}
	})
}

// TestOfflineRetryCustodyReceipt: a protected message whose recipient's
// session on node2 is gone falls back to offline storage there; node1,
// which keeps the copy, gets its receipt only once the message is stored,
// not when the database first failed (the old bounce let the copy go).
func TestOfflineRetryCustodyReceipt(t *testing.T) {
	g := &gateStore{Store: openStore(t)}
	n := newFakeNet("node1", "node2", "node3")
	var es [3]*env
	for i := range es {
		es[i] = newEnvWith(t, g, n.nodes[fmt.Sprintf("node%d", i+1)])
		fastRetry(t, es[i])
	}
	es[0].user("alice", "bob")
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	// Bob's session leaves node2's registry while his route stays: the
	// message node1 forwards finds no session (handleHeld falls back).
	es[1].r.mu.Lock()
	delete(es[1].r.sessions, "bob@example.com/b")
	delete(es[1].r.byBare, "bob@example.com")
	es[1].r.mu.Unlock()
	g.down.Store(true)
	es[0].sendFrom(alice, `<message to='bob@example.com/b' type='chat' id='m1'><body>x</body></message>`)
	waitAttempts(t, g, 3)
	// Whatever receipt node2 has released goes to node1 now, not in 5ms.
	es[1].r.custody.flushNotices()
	if k, _ := es[0].custodyCounts(); k != 1 {
		t.Fatalf("node1 keeps %d copies while the message is not stored, want 1", k)
	}
	if got := alice.take(); len(got) != 0 {
		t.Fatalf("alice got %q, want no bounce", sigs(got))
	}
	if got := bob.take(); len(got) != 0 {
		t.Fatalf("bob's gone session got %q", sigs(got))
	}
	g.down.Store(false)
	waitKept(t, es[0], 0, 0)
	if n := es[0].offlineCount("bob@example.com"); n != 1 {
		t.Fatalf("%d offline for bob when node1 let its copy go, want 1", n)
	}
}

// TestOfflineRetryRestoredBacklog: messages taken from storage for a
// session that then refuses them go back; when the database does not
// take them back at once they wait, never dropped.
func TestOfflineRetryRestoredBacklog(t *testing.T) {
	e, g := retryEnv(t)
	for _, b := range []string{"one", "two"} {
		el := mustParse(t, `<message from='alice@example.com/a' to='bob@example.com' type='chat'><body>`+b+`</body></message>`)
		if err := e.store.StoreOffline(context.Background(), "bob@example.com", el.Bytes(), storage.OfflineQuota{}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := e.store.TakeOffline(context.Background(), "bob@example.com")
	if err != nil || len(msgs) != 2 {
		t.Fatalf("TakeOffline: %d, %v", len(msgs), err)
	}
	g.down.Store(true)
	e.r.restoreOffline(context.Background(), "bob@example.com", e.r.stampOffline("bob@example.com", msgs))
	waitAttempts(t, g, 3)
	g.down.Store(false)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := e.offlineCount("bob@example.com"); n != 2 {
			return fmt.Errorf("%d offline for bob", n)
		}
		return nil
	})
}
