package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
	"github.com/aviary-im/aviary/storage/storagetest"
)

var _ storage.PropertyListener = (*sqlite.Store)(nil)

var _ storagetest.RosterOfflineLoader = (*sqlite.Store)(nil)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	var stores []*sqlite.Store
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s := open(t, filepath.Join(t.TempDir(), "aviary.db"))
		stores = append(stores, s)
		return s
	})
	// Every statement of a write transaction is prepared when the store
	// opens (a new one missing from writeTxQueries would be parsed on
	// every call).
	var n int64
	for _, s := range stores {
		n += s.TxUnprepared()
	}
	if n != 0 {
		t.Errorf("%d statements ran unprepared in write transactions; add them to writeTxQueries", n)
	}
}

// TestTwoHandles runs the shared-database checks with two Stores on one
// file, as the server and the `aviary user` CLI would hold.
func TestTwoHandles(t *testing.T) {
	storagetest.RunShared(t, func(t *testing.T) (storage.Store, storage.Store) {
		p := filepath.Join(t.TempDir(), "aviary.db")
		return open(t, p), open(t, p)
	})
}

func TestSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	// Characters that mean something in a URI must not confuse the driver.
	dir := filepath.Join(t.TempDir(), "data dir #1 ?x=%20")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "aviary.db")
	s := open(t, p)
	if err := s.CreateUser(ctx, storage.User{Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreOffline(ctx, "alice@localhost", []byte("<message/>"), storage.OfflineQuota{}); err != nil {
		t.Fatal(err)
	}
	v1, err := s.SchemaVersion(ctx)
	if err != nil || v1 < 1 {
		t.Fatalf("SchemaVersion = %d, %v", v1, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, p) // migrations must not run twice
	defer s.Close()
	if _, err := s.GetUser(ctx, "alice"); err != nil {
		t.Fatalf("user lost across reopen: %v", err)
	}
	if n, err := s.CountOffline(ctx, "alice@localhost"); err != nil || n != 1 {
		t.Fatalf("offline after reopen = %d, %v", n, err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("database file not at %s: %v", p, err)
	}
	if v2, err := s.SchemaVersion(ctx); err != nil || v2 != v1 {
		t.Fatalf("SchemaVersion after reopen = %d, %v; want %d", v2, err, v1)
	}
	var mode string
	if err := s.DB().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestCancelledContext(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "aviary.db"))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.SetProperty(ctx, "a", "b"); err == nil {
		t.Fatal("write with a cancelled context succeeded")
	}
	if _, err := s.GetProperty(context.Background(), "a"); err != storage.ErrNotFound {
		t.Fatalf("GetProperty after cancelled write = %v, want ErrNotFound", err)
	}
}

// TestEndedContextReads checks that the point lookups, which do not watch
// the context while they run, still refuse to start once it has ended.
func TestEndedContextReads(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "aviary.db"))
	defer s.Close()
	bg := context.Background()
	if err := s.CreateUser(bg, storage.User{Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreOffline(bg, "alice@localhost", []byte("<message/>"), storage.OfflineQuota{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"GetUser", func() error { _, err := s.GetUser(ctx, "alice"); return err }},
		{"GetRoster", func() error { _, _, err := s.GetRoster(ctx, "alice@localhost"); return err }},
		{"Subscribers", func() error { _, err := s.Subscribers(ctx, "alice@localhost"); return err }},
		{"TakeOffline", func() error { _, err := s.TakeOffline(ctx, "alice@localhost"); return err }},
		{"KeyValue.Get", func() error { _, err := s.KeyValue("last").Get(ctx, "alice@localhost", ""); return err }},
		{"KeyValue.Keys", func() error { _, err := s.KeyValue("private").Keys(ctx, "alice@localhost"); return err }},
		{"Map.Count", func() error { _, err := s.Map("pep").Count(ctx, "alice@localhost", ""); return err }},
		{"Archive.Get", func() error { _, err := s.Archive("mam").Get(ctx, "alice@localhost", 1); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with an ended context = %v, want context.Canceled", c.name, err)
			}
		})
	}
	// The message is still there: TakeOffline did not run.
	if n, err := s.CountOffline(bg, "alice@localhost"); err != nil || n != 1 {
		t.Fatalf("CountOffline = %d, %v; want 1", n, err)
	}
}

func BenchmarkStore(b *testing.B) {
	storagetest.Bench(b, func(b *testing.B) storage.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "aviary.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

// TestLockedTimesOut holds the write lock from another connection (another
// process would do the same): a write must give up at its context's
// deadline with storage.ErrUnavailable instead of waiting.
func TestLockedTimesOut(t *testing.T) {
	p := filepath.Join(t.TempDir(), "aviary.db")
	s := open(t, p)
	defer s.Close()
	other := open(t, p)
	defer other.Close()
	ctx := context.Background()
	conn, err := other.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.SetProperty(tctx, "a", "b") }()
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("write under another writer's lock = %v, want storage.ErrUnavailable", err)
		}
	case <-time.After(sqlite.DefaultTimeout + 10*time.Second):
		t.Fatal("write hung past its deadline")
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProperty(ctx, "a", "b"); err != nil {
		t.Fatalf("write after the lock is gone: %v", err)
	}
}
