package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// logCount is a slog.Handler that counts messages.
type logCount struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }

func (l *logCount) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

const (
	downMsg = "ERROR postgres: database unavailable; calls fail until it is back"
	upMsg   = "INFO postgres: database reachable again"
)

// TestOutage runs the outage tests on one server of their own, each on a
// fresh database (they stop, freeze and restart it).
func TestOutage(t *testing.T) {
	srv := pgtest.Start(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, srv *pgtest.Server)
	}{
		{"Restart", testRestart},
		{"Frozen", testFrozen},
		{"ListenPropertyReconnects", testListenPropertyReconnects},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, srv) })
	}
}

// ops are the calls a server makes on the hot path; each must fail fast
// with storage.ErrUnavailable while the database is gone.
func ops(s storage.Store) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"GetUser": func(c context.Context) error { _, err := s.GetUser(c, "alice"); return err },
		"StoreOffline": func(c context.Context) error {
			return s.StoreOffline(c, "alice@example.com", []byte("<message/>"), storage.OfflineQuota{Messages: 100})
		},
		"TakeOffline": func(c context.Context) error { _, err := s.TakeOffline(c, "bob@example.com"); return err },
		"UpdateRosterItem": func(c context.Context) error {
			_, _, _, _, err := s.UpdateRosterItem(c, "alice@example.com", "carol@example.com", storage.RosterQuota{},
				func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
					it.Name = "Carol"
					return it, false, nil
				})
			return err
		},
		"GetRoster":   func(c context.Context) error { _, _, err := s.GetRoster(c, "alice@example.com"); return err },
		"SetProperty": func(c context.Context) error { return s.SetProperty(c, "x", "y") },
		"Ping":        func(c context.Context) error { return s.Ping(c) },
	}
}

// failFast runs every op and requires an ErrUnavailable within the
// store's timeout plus slack: an error, never a hang.
func failFast(t *testing.T, s storage.Store, timeout time.Duration) {
	t.Helper()
	type result struct {
		name string
		err  error
	}
	all := ops(s)
	done := make(chan result, len(all))
	for name, op := range all {
		go func() { done <- result{name, op(context.Background())} }()
	}
	watchdog := time.After(timeout + 10*time.Second)
	for range all {
		select {
		case r := <-done:
			if !errors.Is(r.err, storage.ErrUnavailable) {
				t.Errorf("%s while the database is gone: %v, want storage.ErrUnavailable", r.name, r.err)
			}
		case <-watchdog:
			t.Fatalf("calls hung past the %v timeout", timeout)
		}
	}
}

func seed(t *testing.T, s storage.Store) {
	ctx := context.Background()
	if err := s.CreateUser(ctx, storage.User{Username: "alice", Credentials: storage.Credentials{SHA256: storage.SCRAM{Salt: []byte("salt"), Iterations: 4096}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.StoreOffline(ctx, "bob@example.com", []byte(fmt.Sprintf("<message id='%d'/>", i)), storage.OfflineQuota{}); err != nil {
			t.Fatal(err)
		}
	}
}

func recovered(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := context.Background()
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error { return s.Ping(ctx) })
	// Everything still works on the same Store, and nothing was lost.
	if u, err := s.GetUser(ctx, "alice"); err != nil || string(u.Credentials.SHA256.Salt) != "salt" {
		t.Fatalf("GetUser after recovery = %+v, %v", u, err)
	}
	msgs, err := s.TakeOffline(ctx, "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Stanza))
	}
	want := []string{"<message id='0'/>", "<message id='1'/>", "<message id='2'/>"}
	if !slices.Equal(got, want) {
		t.Fatalf("offline after recovery = %q, want %q", got, want)
	}
	for name, op := range ops(s) {
		if err := op(ctx); err != nil {
			t.Errorf("%s after recovery: %v", name, err)
		}
	}
}

// testRestart stops PostgreSQL under a Store: calls fail fast with
// storage.ErrUnavailable, the outage is logged once, and when PostgreSQL
// is back the same Store works again with nothing lost.
func testRestart(t *testing.T, srv *pgtest.Server) {
	logs := &logCount{}
	const timeout = 2 * time.Second
	s := open(t, srv.NewDatabase(t), postgres.Options{Timeout: timeout, PoolSize: 4, Logger: slog.New(logs)})
	defer s.Close()
	seed(t, s)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		failFast(t, s, timeout)
	}
	if n := logs.count(downMsg); n != 1 {
		t.Fatalf("outage logged %d times over %d failed calls, want once", n, 3*len(ops(s)))
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	recovered(t, s)
	if n := logs.count(upMsg); n != 1 {
		t.Fatalf("recovery logged %d times, want once", n)
	}
	if n := logs.count(downMsg); n != 1 {
		t.Fatalf("outage logged %d times in all, want once", n)
	}
}

// testFrozen makes PostgreSQL stop answering without closing anything (a
// hung server or a network black hole): calls must end at the timeout
// with storage.ErrUnavailable, not hang, and recover once it answers.
func testFrozen(t *testing.T, srv *pgtest.Server) {
	logs := &logCount{}
	const timeout = 1 * time.Second
	s := open(t, srv.NewDatabase(t), postgres.Options{Timeout: timeout, PoolSize: 4, Logger: slog.New(logs)})
	defer s.Close()
	seed(t, s)

	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	failFast(t, s, timeout)
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	recovered(t, s)
	if logs.count(downMsg) != 1 || logs.count(upMsg) != 1 {
		t.Fatalf("logs = %q, want one outage and one recovery", logs.msgs)
	}
}

// testListenPropertyReconnects checks a listener survives a restart and
// delivers the value changed while it was cut off.
func testListenPropertyReconnects(t *testing.T, srv *pgtest.Server) {
	url := srv.NewDatabase(t)
	s := open(t, url, postgres.Options{Timeout: 2 * time.Second})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ListenProperty(ctx, "cluster.enabled", func(v string) { got <- v })
	}()
	defer func() { cancel(); <-done }()
	next := func(want string) {
		t.Helper()
		select {
		case v := <-got:
			if v != want {
				t.Fatalf("listener got %q, want %q", v, want)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("listener never got %q", want)
		}
	}
	next("")
	if err := s.SetProperty(context.Background(), "cluster.enabled", "true"); err != nil {
		t.Fatal(err)
	}
	next("true")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// A second store (another node) changes it right after the restart.
	other := open(t, url, postgres.Options{})
	defer other.Close()
	if err := other.SetProperty(context.Background(), "cluster.enabled", "false"); err != nil {
		t.Fatal(err)
	}
	next("false")
}
