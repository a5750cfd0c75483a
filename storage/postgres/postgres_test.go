package postgres_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/storage/storagetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var _ storagetest.RosterOfflineLoader = (*postgres.Store)(nil)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func open(t testing.TB, url string, opts postgres.Options) *postgres.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := pgtest.Shared(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, srv.NewSchema(t), postgres.Options{})
	})
}

// TestTwoNodes runs the shared checks with two pools on one database, as
// two nodes hold.
func TestTwoNodes(t *testing.T) {
	srv := pgtest.Shared(t)
	storagetest.RunShared(t, func(t *testing.T) (storage.Store, storage.Store) {
		url := srv.NewSchema(t)
		return open(t, url, postgres.Options{PoolSize: 4}), open(t, url, postgres.Options{PoolSize: 4})
	})
}

func BenchmarkStore(b *testing.B) {
	srv := pgtest.Shared(b)
	storagetest.Bench(b, func(b *testing.B) storage.Store {
		return open(b, srv.NewSchema(b), postgres.Options{})
	})
}
