package storagetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

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
			_, _, _, _, err := s.UpdateRosterItem(ctx, owner, fmt.Sprintf("c%d@x", i), storage.RosterQuota{}, setItem(storage.RosterItem{Name: "c", Subscription: storage.SubBoth, Groups: []string{"g"}, InRoster: true}))
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
			_, _, _, _, err := s.UpdateRosterItem(ctx, owner, "bob@x", storage.RosterQuota{}, setItem(storage.RosterItem{Name: fmt.Sprint(n), InRoster: true}))
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
			if err := s.StoreOffline(ctx, owner, msg, storage.OfflineQuota{Messages: 1 << 30}); err != nil {
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
				if err := s.StoreOffline(ctx, owner, msg, storage.OfflineQuota{Messages: 100}); err != nil {
					b.Fatal(err)
				}
			}
			if ms, err := s.TakeOffline(ctx, owner); err != nil || len(ms) != 10 {
				b.Fatal(len(ms), err)
			}
		}
	})
	benchModules(b, open)
	// LoginPath is what one client login and logout cost the store: the
	// credentials (SASL), the roster at initial presence, the offline
	// queue (usually empty), the subscribers at unavailable presence and
	// the last-activity record. Run in parallel, as logins are, each call
	// with a deadline, as the server gives them.
	b.Run("LoginPath", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		const users = 64
		for i := range users {
			name := fmt.Sprintf("u%d", i)
			if err := s.CreateUser(ctx, storage.User{Username: name, Credentials: creds(1)}); err != nil {
				b.Fatal(err)
			}
			for j := range 3 {
				_, _, _, _, err := s.UpdateRosterItem(ctx, name+"@example.com", fmt.Sprintf("c%d@x", j), storage.RosterQuota{}, setItem(storage.RosterItem{Subscription: storage.SubBoth, InRoster: true}))
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := loginPath(ctx, s, fmt.Sprintf("u%d", next.Add(1)%users)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// loginPath runs what one login and logout ask of the store, each call with
// its own deadline as the server gives them.
func loginPath(ctx context.Context, s storage.Store, name string) error {
	bare := name + "@example.com"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.GetUser(ctx, name); err != nil {
		return err
	}
	// Initial presence, as the router does it.
	if l, ok := s.(RosterOfflineLoader); ok {
		if items, _, ms, _, err := l.GetRosterReadOffline(ctx, bare, nil, 1<<20); err != nil || len(items) != 3 || len(ms) != 0 {
			return fmt.Errorf("GetRosterReadOffline: %d items, %d messages, %v", len(items), len(ms), err)
		}
	} else {
		if items, _, err := s.GetRoster(ctx, bare); err != nil || len(items) != 3 {
			return fmt.Errorf("GetRoster: %d items, %v", len(items), err)
		}
		if ms, _, err := s.ReadOfflineUpTo(ctx, bare, nil, 1<<20); err != nil || len(ms) != 0 {
			return fmt.Errorf("ReadOfflineUpTo: %d messages, %v", len(ms), err)
		}
	}
	if subs, err := s.Subscribers(ctx, bare); err != nil || len(subs) != 3 {
		return fmt.Errorf("Subscribers: %d, %v", len(subs), err)
	}
	// The last-activity record the router writes at logout (plugins/last).
	last := fmt.Appendf(nil, `{"at":%d,"status":""}`, time.Now().UnixMicro())
	_, err := s.KeyValue("last").Set(ctx, bare, "", last, storage.Limits{})
	return err
}
