package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aviary-im/aviary/storage"
)

// testOfflineBytes checks the byte quota of the offline queue: the
// stanzas waiting and the new one together, apart from the message count,
// per owner, and room again once the queue is taken.
func testOfflineBytes(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	q := storage.OfflineQuota{Bytes: 100}
	must(t, s.StoreOffline(c, owner, []byte(strings.Repeat("a", 60)), q))
	must(t, s.StoreOffline(c, owner, []byte(strings.Repeat("b", 40)), q)) // exactly 100
	wantErr(t, s.StoreOffline(c, owner, []byte("c"), q), storage.ErrQuotaExceeded)
	// A message bigger than the whole quota is refused on an empty queue.
	wantErr(t, s.StoreOffline(c, "bob@example.com", []byte(strings.Repeat("x", 101)), q), storage.ErrQuotaExceeded)
	must(t, s.StoreOffline(c, "bob@example.com", []byte(strings.Repeat("x", 100)), q))
	// Both caps apply; either refuses.
	must(t, s.StoreOffline(c, "carol@example.com", []byte("1"), storage.OfflineQuota{Messages: 1, Bytes: 1 << 20}))
	wantErr(t, s.StoreOffline(c, "carol@example.com", []byte("2"), storage.OfflineQuota{Messages: 1, Bytes: 1 << 20}), storage.ErrQuotaExceeded)
	if n, err := s.CountOffline(c, owner); err != nil || n != 2 {
		t.Fatalf("queue = %d, %v; want the 2 messages that fit", n, err)
	}
	msgs, err := s.TakeOffline(c, owner)
	must(t, err)
	if len(msgs) != 2 {
		t.Fatalf("took %d, want 2", len(msgs))
	}
	must(t, s.StoreOffline(c, owner, []byte(strings.Repeat("d", 100)), q))
}

// testTakeOfflineUpTo checks the bounded take: oldest first, the first
// message whatever its size, then as many as fit, more telling whether
// anything is left, and nothing of another owner's taken.
func testTakeOfflineUpTo(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	msgs, more, err := s.TakeOfflineUpTo(c, owner, 100)
	must(t, err)
	if len(msgs) != 0 || more {
		t.Fatalf("empty queue: %d messages, more=%v", len(msgs), more)
	}
	for i, n := range []int{10, 20, 30, 40, 5} {
		must(t, s.StoreOffline(c, owner, []byte(fmt.Sprintf("%d:%s", i, strings.Repeat("x", n-2))), storage.OfflineQuota{}))
	}
	must(t, s.StoreOffline(c, "bob@example.com", []byte("bob's"), storage.OfflineQuota{}))
	steps := []struct {
		max  int
		want []string // first bytes of the messages taken
		more bool
	}{
		{35, []string{"0", "1"}, true}, // 10+20 fit, +30 would not
		{1, []string{"2"}, true},       // the first is taken whatever its size
		{45, []string{"3", "4"}, false},
		{45, nil, false},
	}
	for i, st := range steps {
		msgs, more, err := s.TakeOfflineUpTo(c, owner, st.max)
		must(t, err)
		var got []string
		for _, m := range msgs {
			got = append(got, string(m.Stanza[:1]))
			if m.Stored.IsZero() || m.ID == 0 {
				t.Fatalf("step %d: message without id or time: %+v", i, m)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) || more != st.more {
			t.Fatalf("step %d: TakeOfflineUpTo(%d) = %v more=%v, want %v more=%v", i, st.max, got, more, st.want, st.more)
		}
	}
	for i := range 3 {
		must(t, s.StoreOffline(c, owner, []byte(fmt.Sprint(i)), storage.OfflineQuota{}))
	}
	msgs, more, err = s.TakeOfflineUpTo(c, owner, 0)
	must(t, err)
	if len(msgs) != 3 || more {
		t.Fatalf("TakeOfflineUpTo(0) = %d more=%v, want all 3", len(msgs), more)
	}
	if n, err := s.CountOffline(c, "bob@example.com"); err != nil || n != 1 {
		t.Fatalf("bob's queue = %d, %v; want untouched", n, err)
	}
}

// testRosterQuota checks the roster caps inside UpdateRosterItem: rows,
// pending inbound requests and the size of an item; a refused write
// changes nothing, and removals and unchanged or shrinking items pass.
func testRosterQuota(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	q := storage.RosterQuota{Items: 3, PendingIn: 2, ItemBytes: 200}
	update := func(contact string, it storage.RosterItem) error {
		_, _, _, _, err := s.UpdateRosterItem(c, owner, contact, q, setItem(it))
		return err
	}
	must(t, update("a@x", storage.RosterItem{InRoster: true}))
	must(t, update("b@x", storage.RosterItem{PendingIn: true}))
	must(t, update("c@x", storage.RosterItem{PendingIn: true}))
	ver, err := s.RosterVersion(c, owner)
	must(t, err)
	err = update("d@x", storage.RosterItem{InRoster: true})
	wantErr(t, err, storage.ErrRosterFull)
	wantErr(t, err, storage.ErrQuotaExceeded)
	// Changing an existing row needs no room; a third pending request does.
	must(t, update("a@x", storage.RosterItem{Name: "A", InRoster: true}))
	wantErr(t, update("a@x", storage.RosterItem{InRoster: true, PendingIn: true}), storage.ErrTooManyPending)
	must(t, update("b@x", storage.RosterItem{PendingIn: true, InRoster: true}))
	// Too large an item, even an existing one growing.
	big := storage.RosterItem{Name: strings.Repeat("n", 150), InRoster: true}
	wantErr(t, update("a@x", big), storage.ErrRosterItemTooLarge)
	// Removing makes room.
	_, removed, _, _, err := s.UpdateRosterItem(c, owner, "c@x", q, func(storage.RosterItem, bool) (storage.RosterItem, bool, error) {
		return storage.RosterItem{}, true, nil
	})
	must(t, err)
	if !removed {
		t.Fatal("removal at the cap did not remove")
	}
	must(t, update("d@x", storage.RosterItem{PendingIn: true}))
	items, after, err := s.GetRoster(c, owner)
	must(t, err)
	if len(items) != 3 || after != ver+4 {
		t.Fatalf("roster = %d items, version %d; want 3 items and only the 4 accepted writes after version %d", len(items), after, ver)
	}
	for _, it := range items {
		if it.Contact == "a@x" && (it.Name != "A" || it.PendingIn) {
			t.Fatalf("a refused write changed %+v", it)
		}
	}
	// No quota, no limit.
	for i := range 5 {
		_, _, _, _, err := s.UpdateRosterItem(c, owner, fmt.Sprintf("free%d@x", i), storage.RosterQuota{}, setItem(big))
		must(t, err)
	}
}

// concurrentRosterQuota adds distinct contacts through two stores at once
// under one cap: exactly the cap is reached, never passed.
func concurrentRosterQuota(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	const owner, limit = "alice@example.com", 20
	q := storage.RosterQuota{Items: limit}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var added, refused int
	var other error
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range 5 {
				_, _, _, _, err := s.UpdateRosterItem(c, owner, fmt.Sprintf("c%d-%d@x", w, i), q, setItem(storage.RosterItem{InRoster: true}))
				mu.Lock()
				switch {
				case err == nil:
					added++
				case errors.Is(err, storage.ErrRosterFull):
					refused++
				default:
					other = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	must(t, other)
	items, _, err := a.GetRoster(c, owner)
	must(t, err)
	if added != limit || len(items) != limit || refused != workers*5-limit {
		t.Fatalf("added %d, refused %d, roster %d; want exactly %d added", added, refused, len(items), limit)
	}
}

// concurrentByteQuota stores through two stores at once under one byte
// cap: exactly what fits is stored.
func concurrentByteQuota(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	q := storage.OfflineQuota{Bytes: 20 * 4}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stored int
	var other error
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range 5 {
				err := s.StoreOffline(c, owner, []byte("mmmm"), q)
				mu.Lock()
				if err == nil {
					stored++
				} else if !errors.Is(err, storage.ErrQuotaExceeded) {
					other = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	must(t, other)
	if n, err := a.CountOffline(c, owner); err != nil || stored != 20 || n != 20 {
		t.Fatalf("stored %d, queue %d (%v); want exactly 20 of 4 bytes under 80", stored, n, err)
	}
}

// testReadOfflineUpTo checks the read the hand-over makes: like
// TakeOfflineUpTo, but nothing is deleted, the IDs in skip are passed
// over (more counts only the others), and DeleteOffline then removes
// exactly the given IDs of that owner.
func testReadOfflineUpTo(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	msgs, more, err := s.ReadOfflineUpTo(c, owner, nil, 100)
	must(t, err)
	if len(msgs) != 0 || more {
		t.Fatalf("empty queue: %d messages, more=%v", len(msgs), more)
	}
	for i, n := range []int{10, 20, 30, 40, 5} {
		must(t, s.StoreOffline(c, owner, []byte(fmt.Sprintf("%d:%s", i, strings.Repeat("x", n-2))), storage.OfflineQuota{}))
	}
	must(t, s.StoreOffline(c, "bob@example.com", []byte("bob's"), storage.OfflineQuota{}))
	var skip []int64
	ids := map[string]int64{}
	steps := []struct {
		max  int
		want []string // first bytes of the messages read
		more bool
	}{
		{35, []string{"0", "1"}, true}, // 10+20 fit, +30 would not
		{1, []string{"2"}, true},       // the first is read whatever its size
		{45, []string{"3", "4"}, false},
		{45, nil, false},
	}
	for i, st := range steps {
		msgs, more, err := s.ReadOfflineUpTo(c, owner, skip, st.max)
		must(t, err)
		var got []string
		for _, m := range msgs {
			got = append(got, string(m.Stanza[:1]))
			if m.Stored.IsZero() || m.ID == 0 {
				t.Fatalf("step %d: message without id or time: %+v", i, m)
			}
			skip = append(skip, m.ID)
			ids[string(m.Stanza[:1])] = m.ID
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) || more != st.more {
			t.Fatalf("step %d: ReadOfflineUpTo(%d) = %v more=%v, want %v more=%v", i, st.max, got, more, st.want, st.more)
		}
	}
	if n, err := s.CountOffline(c, owner); err != nil || n != 5 {
		t.Fatalf("queue after reading = %d, %v; want all 5 still stored", n, err)
	}
	// Skipping only some: the rest in order, all of it with no limit.
	msgs, more, err = s.ReadOfflineUpTo(c, owner, []int64{ids["1"], ids["3"]}, 0)
	must(t, err)
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Stanza[:1]))
	}
	if fmt.Sprint(got) != "[0 2 4]" || more {
		t.Fatalf("ReadOfflineUpTo(skip 1 and 3, all) = %v more=%v, want [0 2 4] more=false", got, more)
	}
	// Deleting: exactly the IDs given, of this owner only.
	bob, err := s.PeekOffline(c, "bob@example.com", 1)
	must(t, err)
	must(t, s.DeleteOffline(c, owner, []int64{ids["0"], ids["2"], bob[0].ID}))
	must(t, s.DeleteOffline(c, owner, nil))
	msgs, more, err = s.ReadOfflineUpTo(c, owner, nil, 0)
	must(t, err)
	got = nil
	for _, m := range msgs {
		got = append(got, string(m.Stanza[:1]))
	}
	if fmt.Sprint(got) != "[1 3 4]" || more {
		t.Fatalf("after deleting 0 and 2: %v more=%v, want [1 3 4]", got, more)
	}
	if n, err := s.CountOffline(c, "bob@example.com"); err != nil || n != 1 {
		t.Fatalf("bob's queue = %d, %v; want untouched by a delete naming alice", n, err)
	}
	// Deleting again what is gone is no error.
	must(t, s.DeleteOffline(c, owner, []int64{ids["0"], ids["1"], ids["3"], ids["4"]}))
	if n, err := s.CountOffline(c, owner); err != nil || n != 0 {
		t.Fatalf("queue = %d, %v; want empty", n, err)
	}
}
