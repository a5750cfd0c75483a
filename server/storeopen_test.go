package server

import (
	"context"
	"errors"
	"log/slog"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// TestOpenStoreWaitsForPostgres: a node started while PostgreSQL is down
// keeps trying (database.startup_retries) and opens the store once the
// database is back; an error waiting cannot fix fails at the first try.
func TestOpenStoreWaitsForPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.Start(t)
	url := pg.NewDatabase(t)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := &conf.Config{}
	cfg.Database.URL = url
	cfg.ApplyDefaults()
	cfg.Database.StartupRetries, cfg.Database.StartupRetryInterval, cfg.Database.Timeout = 100, 100*time.Millisecond, time.Second

	type result struct {
		st  storage.Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := OpenStore(context.Background(), cfg, testLogger())
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("OpenStore returned while PostgreSQL was down: %v", r.err)
	case <-time.After(500 * time.Millisecond): // several attempts have failed by now
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("OpenStore after PostgreSQL came back: %v", r.err)
	}
	defer r.st.Close()
	if _, err := r.st.GetUser(context.Background(), "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("store not usable: %v", err)
	}

	t.Run("gives up after the retries", func(t *testing.T) {
		bad := *cfg
		bad.Database.URL = "postgres://postgres@127.0.0.1:1/aviary?sslmode=disable"
		bad.Database.StartupRetries = 3
		_, err := OpenStore(context.Background(), &bad, testLogger())
		if err == nil || !strings.Contains(err.Error(), "attempt 3 of 3") {
			t.Fatalf("got %v, want a failure after 3 attempts", err)
		}
	})
	t.Run("no such database fails at once", func(t *testing.T) {
		bad := *cfg
		u, err := neturl.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/no_such_db"
		bad.Database.URL = u.String()
		_, err = OpenStore(context.Background(), &bad, testLogger())
		if err == nil || !strings.Contains(err.Error(), "attempt 1 of") {
			t.Fatalf("got %v, want a failure at the first attempt", err)
		}
	})
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
