package postgres_test

import (
	"context"
	"testing"

	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// TestTryLock: of two nodes on one database, one holds a lock at a time;
// unlocking hands it over; another schema of the same database has locks
// of its own.
func TestTryLock(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewSchema(t)
	a, b := open(t, url, postgres.Options{PoolSize: 2}), open(t, url, postgres.Options{PoolSize: 2})
	ctx := context.Background()

	unlockA, ok, err := a.TryLock(ctx, "acme")
	if err != nil || !ok {
		t.Fatalf("first TryLock = %v, %v; want it taken", ok, err)
	}
	if _, ok, err := b.TryLock(ctx, "acme"); err != nil || ok {
		t.Fatalf("second node's TryLock while held = %v, %v; want refused", ok, err)
	}
	if _, ok, err := a.TryLock(ctx, "acme"); err != nil || ok {
		t.Fatalf("the holder's second TryLock = %v, %v; want refused (a lock is not re-entrant)", ok, err)
	}
	unlockOther, ok, err := b.TryLock(ctx, "other")
	if err != nil || !ok {
		t.Fatalf("another name = %v, %v; want taken", ok, err)
	}
	defer unlockOther()
	other := open(t, srv.NewSchema(t), postgres.Options{PoolSize: 2})
	unlockSchema, ok, err := other.TryLock(ctx, "acme")
	if err != nil || !ok {
		t.Fatalf("the same name on another schema = %v, %v; want taken", ok, err)
	}
	unlockSchema()

	unlockA()
	unlockB, ok, err := b.TryLock(ctx, "acme")
	if err != nil || !ok {
		t.Fatalf("TryLock after unlock = %v, %v; want taken", ok, err)
	}
	unlockB()
}
