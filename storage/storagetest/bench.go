package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/storage"
)

// Bench benchmarks the hot paths of a store: open returns a fresh, empty
// store, which Bench closes.
func Bench(b *testing.B, open func(b *testing.B) storage.Store) {
	ctx := context.Background()
	const owner = "alice@example.com"
	b.Run("GetUser", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		if err := s.CreateUser(ctx, storage.User{Username: "alice", Credentials: creds(1)}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetUser(ctx, "alice"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetRoster20", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		for i := range 20 {
			_, _, _, _, err := s.UpdateRosterItem(ctx, owner, fmt.Sprintf("c%d@x", i), setItem(storage.RosterItem{Name: "c", Subscription: storage.SubBoth, Groups: []string{"g"}, InRoster: true}))
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			if items, _, err := s.GetRoster(ctx, owner); err != nil || len(items) != 20 {
				b.Fatal(len(items), err)
			}
		}
	})
	b.Run("UpdateRosterItem", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			n++
			_, _, _, _, err := s.UpdateRosterItem(ctx, owner, "bob@x", setItem(storage.RosterItem{Name: fmt.Sprint(n), InRoster: true}))
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("StoreOffline", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		msg := []byte("<message to='alice@example.com'><body>hello</body></message>")
		b.ReportAllocs()
		for b.Loop() {
			if err := s.StoreOffline(ctx, owner, msg, 1<<30); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Store10Take10", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		msg := []byte("<message to='alice@example.com'><body>hello</body></message>")
		b.ReportAllocs()
		for b.Loop() {
			for range 10 {
				if err := s.StoreOffline(ctx, owner, msg, 100); err != nil {
					b.Fatal(err)
				}
			}
			if ms, err := s.TakeOffline(ctx, owner); err != nil || len(ms) != 10 {
				b.Fatal(len(ms), err)
			}
		}
	})
}
