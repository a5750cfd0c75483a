package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// tripCounter counts requests sent to the server: a query outside a batch
// is one, a whole batch is one.
type tripCounter struct {
	mu      sync.Mutex
	trips   int
	inBatch bool
}

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	if !c.inBatch {
		c.trips++
	}
	c.mu.Unlock()
	return ctx
}
func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.mu.Lock()
	c.trips++
	c.inBatch = true
	c.mu.Unlock()
	return ctx
}
func (c *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	c.mu.Lock()
	c.inBatch = false
	c.mu.Unlock()
}

func (c *tripCounter) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.trips
	c.trips = 0
	return n
}

// TestRoundTrips pins how many requests the hot paths send (statements
// are prepared once per connection; after that each is one round trip).
func TestRoundTrips(t *testing.T) {
	tc := &tripCounter{}
	// One connection, so the warm-up prepares every statement on it.
	s := open(t, pgtest.Shared(t).NewSchema(t), postgres.Options{PoolSize: 1, Tracer: tc})
	defer s.Close()
	ctx := context.Background()
	if err := s.CreateUser(ctx, storage.User{Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	calls := []struct {
		name  string
		trips int
		call  func() error
	}{
		{"GetUser (login)", 1, func() error { _, err := s.GetUser(ctx, "alice"); return err }},
		{"GetRoster", 1, func() error { _, _, err := s.GetRoster(ctx, "alice@example.com"); return err }},
		{"StoreOffline with quota", 1, func() error {
			return s.StoreOffline(ctx, "alice@example.com", []byte("<m/>"), storage.OfflineQuota{Messages: 100})
		}},
		{"StoreOffline", 1, func() error { return s.StoreOffline(ctx, "alice@example.com", []byte("<m/>"), storage.OfflineQuota{}) }},
		{"StoreOffline with byte quota", 1, func() error {
			return s.StoreOffline(ctx, "alice@example.com", []byte("<m/>"), storage.OfflineQuota{Messages: 1000, Bytes: 1 << 20})
		}},
		{"TakeOffline", 1, func() error { _, err := s.TakeOffline(ctx, "alice@example.com"); return err }},
		{"TakeOfflineUpTo", 1, func() error { _, _, err := s.TakeOfflineUpTo(ctx, "alice@example.com", 1<<20); return err }},
		{"ReadOfflineUpTo", 1, func() error {
			_, _, err := s.ReadOfflineUpTo(ctx, "alice@example.com", []int64{1, 2}, 1<<20)
			return err
		}},
		{"DeleteOffline", 1, func() error { return s.DeleteOffline(ctx, "alice@example.com", []int64{1, 2}) }},
		{"GetRosterReadOffline", 1, func() error {
			_, _, _, _, err := s.GetRosterReadOffline(ctx, "alice@example.com", []int64{1}, 1<<20)
			return err
		}},
		{"Subscribers", 1, func() error { _, err := s.Subscribers(ctx, "alice@example.com"); return err }},
		// BEGIN, lock+read batch, write+bump batch, COMMIT.
		{"UpdateRosterItem", 4, func() error {
			_, _, _, _, err := s.UpdateRosterItem(ctx, "alice@example.com", "bob@example.com", storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
				it.Name += "x"
				return it, false, nil
			})
			return err
		}},
		// A new item under a quota counts the rows first: one batch more.
		{"UpdateRosterItem creating under a quota", 5, func() error {
			n++
			_, _, _, _, err := s.UpdateRosterItem(ctx, "alice@example.com", fmt.Sprintf("c%d@example.com", n), storage.RosterQuota{Items: 1000, PendingIn: 100}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
				it.InRoster = true
				return it, false, nil
			})
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); err != nil { // warm-up: prepares statements
				t.Fatal(err)
			}
			tc.take()
			if err := c.call(); err != nil {
				t.Fatal(err)
			}
			if got := tc.take(); got != c.trips {
				t.Fatalf("%s sent %d requests, want %d", c.name, got, c.trips)
			}
		})
	}
}
