package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// TestWriterLane: with every connection of the shared pool taken (a login
// storm's reads), a group-commit batch (storage.InWriterLane) still
// commits at once over the writer lane, while an ordinary call waits for
// a connection until its deadline.
func TestWriterLane(t *testing.T) {
	s := open(t, pgtest.Shared(t).NewSchema(t), postgres.Options{PoolSize: 2, Timeout: 3 * time.Second})
	defer s.Close()
	ctx := context.Background()
	for range 2 {
		c, err := s.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
	}
	a := s.Archive("mam")
	batch := []storage.ArchiveEntry{{Owner: "alice@x", With: "bob@x", Value: []byte("1")}, {Owner: "bob@x", With: "alice@x", Value: []byte("1")}}

	lctx, cancel := context.WithTimeout(storage.InWriterLane(ctx), time.Second)
	defer cancel()
	if _, err := a.AppendBatch(lctx, batch); err != nil {
		t.Fatalf("a group-commit batch with the shared pool taken: %v", err)
	}
	octx, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := a.AppendBatch(octx, batch); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("an ordinary batch with the shared pool taken = %v, want it to wait and fail", err)
	}
}
