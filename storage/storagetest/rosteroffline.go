package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/storage"
)

// RosterOfflineLoader is the optional store method initial presence uses
// to read the roster and take the offline queue in one call.
type RosterOfflineLoader interface {
	GetRosterTakeOffline(ctx context.Context, owner string) ([]storage.RosterItem, int64, []storage.OfflineMessage, error)
}

func testRosterTakeOffline(t *testing.T, s storage.Store) {
	l, ok := s.(RosterOfflineLoader)
	if !ok {
		t.Skip("store has no GetRosterTakeOffline (optional)")
	}
	ctx := context.Background()
	const owner = "alice@example.com"
	cases := []struct {
		name     string
		contacts int
		messages int
	}{
		{"empty", 0, 0},
		{"roster only", 2, 0},
		{"offline only", 0, 3},
		{"both", 3, 2},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			owner := fmt.Sprintf("%d%s", i, owner)
			var ver int64
			for j := range tc.contacts {
				_, _, _, v, err := s.UpdateRosterItem(ctx, owner, fmt.Sprintf("c%d@x", j), setItem(storage.RosterItem{Subscription: storage.SubBoth, InRoster: true}))
				if err != nil {
					t.Fatal(err)
				}
				ver = v
			}
			for j := range tc.messages {
				if err := s.StoreOffline(ctx, owner, fmt.Appendf(nil, "<message id='m%d'/>", j), 0); err != nil {
					t.Fatal(err)
				}
			}
			// Another user's queue is not touched.
			if err := s.StoreOffline(ctx, "other@example.com", []byte("<message/>"), 0); err != nil {
				t.Fatal(err)
			}
			items, gotVer, msgs, err := l.GetRosterTakeOffline(ctx, owner)
			if err != nil {
				t.Fatal(err)
			}
			wantItems, wantVer, err := s.GetRoster(ctx, owner)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != tc.contacts || len(items) != len(wantItems) || gotVer != ver || gotVer != wantVer {
				t.Fatalf("roster = %d items, version %d; want %d items, version %d", len(items), gotVer, tc.contacts, ver)
			}
			for j := range items {
				if items[j].Contact != wantItems[j].Contact || items[j].Owner != owner || items[j].Subscription != storage.SubBoth {
					t.Fatalf("item %d = %+v, want %+v", j, items[j], wantItems[j])
				}
			}
			if len(msgs) != tc.messages {
				t.Fatalf("took %d messages, want %d", len(msgs), tc.messages)
			}
			for j, m := range msgs {
				if want := fmt.Sprintf("<message id='m%d'/>", j); string(m.Stanza) != want {
					t.Fatalf("message %d = %s, want %s (oldest first)", j, m.Stanza, want)
				}
			}
			if n, err := s.CountOffline(ctx, owner); err != nil || n != 0 {
				t.Fatalf("CountOffline after taking = %d, %v; want 0", n, err)
			}
			if ms, err := s.TakeOffline(ctx, "other@example.com"); err != nil || len(ms) != 1 {
				t.Fatalf("other user's queue = %d, %v; want 1", len(ms), err)
			}
		})
	}
}
