package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
)

// TestTryLock: one holder at a time per store and name; unlock hands it
// over and is safe to call twice.
func TestTryLock(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "aviary.db"))
	other := open(t, filepath.Join(t.TempDir(), "aviary.db"))
	unlock, ok, err := s.TryLock(ctx, "acme")
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if _, ok, _ := s.TryLock(ctx, "acme"); ok {
		t.Fatal("second TryLock while held succeeded")
	}
	if u, ok, _ := other.TryLock(ctx, "acme"); !ok {
		t.Fatal("another store's lock of the same name is refused")
	} else {
		u()
	}
	unlock()
	unlock()
	u2, ok, _ := s.TryLock(ctx, "acme")
	if !ok {
		t.Fatal("TryLock after unlock refused")
	}
	unlock() // the old holder's unlock again: must not release the new holder's lock
	if _, ok, _ := s.TryLock(ctx, "acme"); ok {
		t.Fatal("an old holder's second unlock released the new holder's lock")
	}
	u2()
	if u3, ok, _ := s.TryLock(ctx, "acme"); !ok {
		t.Fatal("TryLock after the new holder's unlock refused")
	} else {
		u3()
	}
}
