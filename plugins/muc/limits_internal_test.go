package muc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// BenchmarkOwnedRooms measures listing a user's rooms among 1,000 stored
// rooms (none of them the user's, so every one is read), on the
// in-memory store and on PostgreSQL (a throwaway server, pgtest): what
// muc.max_rooms_per_user would cost every creation if it counted from
// the rooms themselves, and what it costs an account's first creation
// (claimRoom).
//
//	go test -run '^$' -bench OwnedRooms -benchmem ./plugins/muc
func BenchmarkOwnedRooms(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchOwnedRooms(b, nil) })
	b.Run("postgres", func(b *testing.B) {
		url := pgtest.Start(b).NewDatabase(b)
		st, err := postgres.Open(context.Background(), url, postgres.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		benchOwnedRooms(b, st)
	})
}

func benchOwnedRooms(b *testing.B, st storage.Store) {
	var h *plugintest.Host
	if st == nil {
		h = plugintest.NewHost(b)
	} else {
		h = plugintest.NewHostWithStore(b, st)
	}
	p := h.Start(b, New()).Plugin(ID).(*Plugin)
	ctx := context.Background()
	const rooms = 1000
	for i := range rooms {
		r := &Room{Name: fmt.Sprintf("room%d", i), Config: p.defaultConfig(), Affiliations: map[string]string{fmt.Sprintf("user%d@example.com", i): affOwner}}
		if err := p.save(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if names, err := p.ownedRooms(ctx, "alice@example.com"); err != nil || len(names) != 0 {
			b.Fatal(names, err)
		}
	}
}

// BenchmarkClaimRoom measures what muc.max_rooms_per_user costs a room
// creation once the account's list exists: one read and one
// compare-and-swap of the list, whatever the number of stored rooms.
//
//	go test -run '^$' -bench ClaimRoom -benchmem ./plugins/muc
func BenchmarkClaimRoom(b *testing.B) {
	url := pgtest.Start(b).NewDatabase(b)
	st, err := postgres.Open(context.Background(), url, postgres.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	p := plugintest.NewHostWithStore(b, st).Start(b, New()).Plugin(ID).(*Plugin)
	ctx := context.Background()
	if _, err := p.claimRoom(ctx, "alice@example.com", "first", 1<<30); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := p.claimRoom(ctx, "alice@example.com", fmt.Sprintf("r%d", i), 1<<30); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClaimCountsRoomsFromBeforeTheList: rooms an account owned before
// its list existed (an upgrade) count at its first claim.
func TestClaimCountsRoomsFromBeforeTheList(t *testing.T) {
	p := plugintest.NewHost(t).Start(t, New()).Plugin(ID).(*Plugin)
	ctx := context.Background()
	for _, name := range []string{"old1", "old2"} {
		r := &Room{Name: name, Config: p.defaultConfig(), Affiliations: map[string]string{"alice@example.com": affOwner}}
		if err := p.save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := p.claimRoom(ctx, "alice@example.com", "new", 2); !errors.Is(err, errAtLimit) || n != 2 {
		t.Fatalf("claim past two old rooms: %d, %v", n, err)
	}
	if _, err := p.claimRoom(ctx, "bob@example.com", "new", 2); err != nil {
		t.Fatalf("bob owns none: %v", err)
	}
}

// TestClaimTakesTheLastSlotOnce: creations by one user at the same moment
// (on different hosts) cannot both take the last slot, though neither
// room is in the store yet; an entry whose room never reached the store
// stops counting after claimGrace.
func TestClaimTakesTheLastSlotOnce(t *testing.T) {
	p := plugintest.NewHost(t).Start(t, New()).Plugin(ID).(*Plugin)
	ctx := context.Background()
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 8 {
		wg.Go(func() {
			if _, err := p.claimRoom(ctx, "alice@example.com", fmt.Sprintf("r%d", i), 1); err == nil {
				won.Add(1)
			} else if !errors.Is(err, errAtLimit) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d claims took the one slot", won.Load())
	}
	stale, _ := json.Marshal([]ownedEntry{{Room: "never-written", At: time.Now().Add(-claimGrace - time.Minute)}})
	if _, err := p.store.Set(ctx, p.domain, ownedKeyPrefix+"bob@example.com", stale, storage.Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.claimRoom(ctx, "bob@example.com", "new", 1); err != nil {
		t.Fatalf("a stale entry still counts: %v", err)
	}
}
