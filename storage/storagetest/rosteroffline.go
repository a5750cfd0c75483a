package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/storage"
)

// RosterOfflineLoader is the optional store method initial presence uses
// to read the roster and the first part of the offline queue (up to
// maxBytes, skipping skip, as ReadOfflineUpTo) in one call.
type RosterOfflineLoader interface {
	GetRosterReadOffline(ctx context.Context, owner string, skip []int64, maxBytes int) ([]storage.RosterItem, int64, []storage.OfflineMessage, bool, error)
}

func testRosterReadOffline(t *testing.T, s storage.Store) {
	l, ok := s.(RosterOfflineLoader)
	if !ok {
		t.Skip("store has no GetRosterReadOffline (optional)")
	}
	ctx := context.Background()
	const owner = "alice@example.com"
	cases := []struct {
		name     string
		contacts int
		messages int
		maxBytes int // each message is 19 bytes
		skip     int // the first messages to skip
		took     int
	}{
		{"empty", 0, 0, 0, 0, 0},
		{"roster only", 2, 0, 0, 0, 0},
		{"offline only", 0, 3, 0, 0, 3},
		{"both", 3, 2, 0, 0, 2},
		{"all that fit", 3, 2, 1 << 20, 0, 2},
		{"part of the queue", 2, 4, 40, 0, 2},
		{"the first whatever its size", 1, 2, 1, 0, 1},
		{"skipping", 2, 4, 40, 1, 2},
		{"skipping all", 1, 2, 0, 2, 0},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			owner := fmt.Sprintf("%d%s", i, owner)
			var ver int64
			for j := range tc.contacts {
				_, _, _, v, err := s.UpdateRosterItem(ctx, owner, fmt.Sprintf("c%d@x", j), storage.RosterQuota{}, setItem(storage.RosterItem{Subscription: storage.SubBoth, InRoster: true}))
				if err != nil {
					t.Fatal(err)
				}
				ver = v
			}
			var skip []int64
			for j := range tc.messages {
				if err := s.StoreOffline(ctx, owner, fmt.Appendf(nil, "<message id='m%d'/>", j), storage.OfflineQuota{}); err != nil {
					t.Fatal(err)
				}
			}
			// Another user's queue is not touched.
			if err := s.StoreOffline(ctx, "other@example.com", []byte("<message/>"), storage.OfflineQuota{}); err != nil {
				t.Fatal(err)
			}
			if tc.skip > 0 {
				all, err := s.PeekOffline(ctx, owner, tc.skip)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range all {
					skip = append(skip, m.ID)
				}
			}
			items, gotVer, msgs, more, err := l.GetRosterReadOffline(ctx, owner, skip, tc.maxBytes)
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
			left := tc.messages - tc.skip
			if len(msgs) != tc.took || more != (tc.took < left) {
				t.Fatalf("read %d messages, more=%v; want %d of %d", len(msgs), more, tc.took, left)
			}
			for j, m := range msgs {
				if want := fmt.Sprintf("<message id='m%d'/>", tc.skip+j); string(m.Stanza) != want {
					t.Fatalf("message %d = %s, want %s (oldest first)", j, m.Stanza, want)
				}
			}
			if n, err := s.CountOffline(ctx, owner); err != nil || n != tc.messages {
				t.Fatalf("CountOffline after reading = %d, %v; want %d (nothing deleted)", n, err, tc.messages)
			}
			if ms, err := s.TakeOffline(ctx, "other@example.com"); err != nil || len(ms) != 1 {
				t.Fatalf("other user's queue = %d, %v; want 1", len(ms), err)
			}
		})
	}
}
