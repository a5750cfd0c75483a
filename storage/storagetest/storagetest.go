// Package storagetest is the conformance suite every storage.Store
// implementation runs, so the embedded store and PostgreSQL cannot drift
// apart. Call Run from the implementation's tests with a function that opens
// a fresh, empty store; RunShared additionally checks two Store values on
// one database (two nodes) writing the same account at once.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// Open returns a fresh, empty store; the suite closes it.
type Open func(t *testing.T) storage.Store

// Run runs the conformance suite. Each subtest gets its own store.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"Ping", testPing},
		{"Users", testUsers},
		{"ListUsers", testListUsers},
		{"LockUser", testLockUser},
		{"DeleteUserCascades", testDeleteUserCascades},
		{"Roster", testRoster},
		{"RosterAbort", testRosterAbort},
		{"RosterRemove", testRosterRemove},
		{"Subscribers", testSubscribers},
		{"Offline", testOffline},
		{"PeekOffline", testPeekOffline},
		{"OfflineQuota", testOfflineQuota},
		{"OfflineBytes", testOfflineBytes},
		{"TakeOfflineUpTo", testTakeOfflineUpTo},
		{"ReadOfflineUpTo", testReadOfflineUpTo},
		{"RosterQuota", testRosterQuota},
		{"ExpireOffline", testExpireOffline},
		{"RosterReadOffline", testRosterReadOffline},
		{"Blocking", testBlocking},
		{"Properties", testProperties},
		{"ListenProperty", testListenProperty},
		{"KeyValue", testKeyValue},
		{"KeyValueCompareAndSet", testKeyValueCAS},
		{"KeyValueQuota", testKeyValueQuota},
		{"Map", testMap},
		{"MapMax", testMapMax},
		{"MapQuota", testMapQuota},
		{"Archive", testArchive},
		{"ArchivePaging", testArchivePaging},
		{"ArchiveBatch", testArchiveBatch},
		{"ArchiveGivenIDs", testArchiveGivenIDs},
		{"ArchiveOneInstant", testArchiveOneInstant},
		{"ArchiveDelete", testArchiveDelete},
		{"PluginCatalogue", testPlugins},
		{"NodePlugins", testNodePlugins},
		{"ConcurrentRoster", func(t *testing.T, s storage.Store) { concurrentRoster(t, s, s) }},
		{"ConcurrentOffline", func(t *testing.T, s storage.Store) { concurrentOffline(t, s, s) }},
		{"ConcurrentQuota", func(t *testing.T, s storage.Store) { concurrentQuota(t, s, s) }},
		{"ConcurrentUpdateKV", func(t *testing.T, s storage.Store) { concurrentUpdateKV(t, s, s) }},
		{"ConcurrentMapQuota", func(t *testing.T, s storage.Store) { concurrentMapQuota(t, s, s) }},
		{"ConcurrentByteQuota", func(t *testing.T, s storage.Store) { concurrentByteQuota(t, s, s) }},
		{"ConcurrentRosterQuota", func(t *testing.T, s storage.Store) { concurrentRosterQuota(t, s, s) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

// OpenPair returns two stores on one fresh database, as two nodes would
// hold; the suite closes both.
type OpenPair func(t *testing.T) (a, b storage.Store)

// RunShared checks that two stores on one database, writing the same
// account's roster and offline queue concurrently, lose nothing.
func RunShared(t *testing.T, open OpenPair) {
	tests := []struct {
		name string
		fn   func(t *testing.T, a, b storage.Store)
	}{
		{"ConcurrentRoster", concurrentRoster},
		{"ConcurrentOffline", concurrentOffline},
		{"ConcurrentQuota", concurrentQuota},
		{"ConcurrentUpdateKV", concurrentUpdateKV},
		{"ConcurrentMapQuota", concurrentMapQuota},
		{"ConcurrentByteQuota", concurrentByteQuota},
		{"ConcurrentRosterQuota", concurrentRosterQuota},
		{"SeeEachOther", seeEachOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			tc.fn(t, a, b)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

// when is a fixed time at the microsecond precision stores keep.
var when = time.Date(2024, 5, 17, 10, 11, 12, 123456000, time.UTC)

func creds(seed byte) storage.Credentials {
	b := func(n int) []byte { return bytes.Repeat([]byte{seed + byte(n)}, 20+n) }
	return storage.Credentials{
		SHA1:   storage.SCRAM{Salt: b(1), Iterations: 4096, StoredKey: b(2), ServerKey: b(3)},
		SHA256: storage.SCRAM{Salt: b(4), Iterations: 10000, StoredKey: b(5), ServerKey: b(6)},
	}
}

func sameCreds(a, b storage.Credentials) bool {
	eq := func(x, y storage.SCRAM) bool {
		return bytes.Equal(x.Salt, y.Salt) && x.Iterations == y.Iterations &&
			bytes.Equal(x.StoredKey, y.StoredKey) && bytes.Equal(x.ServerKey, y.ServerKey)
	}
	return eq(a.SHA1, b.SHA1) && eq(a.SHA256, b.SHA256)
}

func testPing(t *testing.T, s storage.Store) {
	must(t, s.Ping(ctx(t)))
}

func testUsers(t *testing.T, s storage.Store) {
	c := ctx(t)
	_, err := s.GetUser(c, "alice")
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.SetCredentials(c, "alice", creds(1)), storage.ErrNotFound)
	wantErr(t, s.DeleteUser(c, "alice"), storage.ErrNotFound)

	must(t, s.CreateUser(c, storage.User{Username: "alice", Credentials: creds(1), CreatedAt: when}))
	wantErr(t, s.CreateUser(c, storage.User{Username: "alice", Credentials: creds(9)}), storage.ErrExists)

	u, err := s.GetUser(c, "alice")
	must(t, err)
	if u.Username != "alice" || !sameCreds(u.Credentials, creds(1)) || !u.CreatedAt.Equal(when) {
		t.Fatalf("GetUser = %+v", u)
	}
	must(t, s.SetCredentials(c, "alice", creds(7)))
	u, err = s.GetUser(c, "alice")
	must(t, err)
	if !sameCreds(u.Credentials, creds(7)) {
		t.Fatalf("credentials after SetCredentials = %+v", u.Credentials)
	}

	before := time.Now().Add(-time.Minute)
	must(t, s.CreateUser(c, storage.User{Username: "bob", Credentials: creds(2)}))
	u, err = s.GetUser(c, "bob")
	must(t, err)
	if u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("zero CreatedAt stored as %v, want about now", u.CreatedAt)
	}
	n, err := s.CountUsers(c)
	must(t, err)
	if n != 2 {
		t.Fatalf("CountUsers = %d, want 2", n)
	}
	must(t, s.DeleteUser(c, "alice"))
	_, err = s.GetUser(c, "alice")
	wantErr(t, err, storage.ErrNotFound)
	n, err = s.CountUsers(c)
	must(t, err)
	if n != 1 {
		t.Fatalf("CountUsers after delete = %d, want 1", n)
	}
}

func testLockUser(t *testing.T, s storage.Store) {
	c := ctx(t)
	wantErr(t, s.SetLocked(c, "alice", when), storage.ErrNotFound)
	must(t, s.CreateUser(c, storage.User{Username: "alice", Credentials: creds(1), CreatedAt: when}))
	u, err := s.GetUser(c, "alice")
	must(t, err)
	if u.Locked() {
		t.Fatalf("a new account is locked: %+v", u.LockedAt)
	}
	at := when.Add(time.Hour)
	must(t, s.SetLocked(c, "alice", at))
	// Locking again keeps the first time.
	must(t, s.SetLocked(c, "alice", at.Add(time.Hour)))
	u, err = s.GetUser(c, "alice")
	must(t, err)
	if !u.Locked() || !u.LockedAt.Equal(at) || !sameCreds(u.Credentials, creds(1)) {
		t.Fatalf("after SetLocked: locked at %v (want %v), credentials kept %v", u.LockedAt, at, sameCreds(u.Credentials, creds(1)))
	}
	// A password change leaves the lock alone.
	must(t, s.SetCredentials(c, "alice", creds(2)))
	if u, _ = s.GetUser(c, "alice"); !u.Locked() {
		t.Fatal("SetCredentials unlocked the account")
	}
	must(t, s.SetLocked(c, "alice", time.Time{}))
	u, err = s.GetUser(c, "alice")
	must(t, err)
	if u.Locked() {
		t.Fatalf("after unlocking: locked at %v", u.LockedAt)
	}
	must(t, s.SetLocked(c, "alice", time.Time{})) // unlocking an unlocked account is fine
}

func testListUsers(t *testing.T, s storage.Store) {
	c := ctx(t)
	names := []string{"dave", "carol", "alice", "bob", "alfred", "eve", "mallory"}
	for _, n := range names {
		must(t, s.CreateUser(c, storage.User{Username: n, Credentials: creds(3)}))
	}
	tests := []struct {
		contains      string
		limit, offset int
		want          []string
	}{
		{"", 0, 0, []string{"alfred", "alice", "bob", "carol", "dave", "eve", "mallory"}},
		{"", 3, 0, []string{"alfred", "alice", "bob"}},
		{"", 3, 3, []string{"carol", "dave", "eve"}},
		{"", 3, 6, []string{"mallory"}},
		{"", 3, 7, nil},
		{"al", 0, 0, []string{"alfred", "alice", "mallory"}},
		{"l", 2, 1, []string{"alice", "carol"}},
		{"e", 0, 0, []string{"alfred", "alice", "dave", "eve"}},
		{"zz", 10, 0, nil},
		{"%", 0, 0, nil},
		{"_", 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q/%d/%d", tc.contains, tc.limit, tc.offset), func(t *testing.T) {
			got, err := s.ListUsers(c, tc.contains, tc.limit, tc.offset)
			must(t, err)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ListUsers = %q, want %q", got, tc.want)
			}
		})
	}
}

// fillUser stores one of everything for owner keys of a user.
func fillUser(t *testing.T, s storage.Store, owner string) {
	c := ctx(t)
	_, _, _, _, err := s.UpdateRosterItem(c, owner, "friend@example.net", storage.RosterQuota{}, setItem(storage.RosterItem{Subscription: storage.SubBoth, InRoster: true}))
	must(t, err)
	must(t, s.StoreOffline(c, owner, []byte("<message/>"), storage.OfflineQuota{}))
	must(t, s.Block(c, owner, []string{"spam@example.net"}))
	_, err = s.KeyValue("vcard").Set(c, owner, "", []byte("<vCard/>"), storage.Limits{})
	must(t, err)
	_, err = s.Map("pep").Set(c, owner, "node", "item", []byte("<item/>"), storage.Limits{})
	must(t, err)
	_, err = s.Archive("mam").Append(c, storage.ArchiveEntry{Owner: owner, With: "friend@example.net", Value: []byte("<message/>")})
	must(t, err)
}

// hasData reports which kinds of records exist for owner.
func hasData(t *testing.T, s storage.Store, owner string) []string {
	c := ctx(t)
	var have []string
	items, ver, err := s.GetRoster(c, owner)
	must(t, err)
	if len(items) > 0 || ver != 0 {
		have = append(have, "roster")
	}
	n, err := s.CountOffline(c, owner)
	must(t, err)
	if n > 0 {
		have = append(have, "offline")
	}
	bl, err := s.BlockList(c, owner)
	must(t, err)
	if len(bl) > 0 {
		have = append(have, "blocking")
	}
	if _, err := s.KeyValue("vcard").Get(c, owner, ""); err == nil {
		have = append(have, "keyvalue")
	}
	if n, err := s.Map("pep").Count(c, owner, "node"); err == nil && n > 0 {
		have = append(have, "map")
	}
	page, err := s.Archive("mam").Query(c, owner, storage.ArchiveQuery{})
	must(t, err)
	if len(page.Entries) > 0 {
		have = append(have, "archive")
	}
	return have
}

var allKinds = []string{"roster", "offline", "blocking", "keyvalue", "map", "archive"}

func testDeleteUserCascades(t *testing.T, s storage.Store) {
	c := ctx(t)
	for _, u := range []string{"alice", "alice2", "alic"} {
		must(t, s.CreateUser(c, storage.User{Username: u, Credentials: creds(4)}))
	}
	// Owner keys in both forms the server may use, and neighbours that
	// must survive.
	owners := []string{"alice", "alice@example.com", "alice2", "alice2@example.com", "alic", "alic@example.com"}
	for _, o := range owners {
		fillUser(t, s, o)
	}
	for _, o := range owners {
		if got := hasData(t, s, o); !slices.Equal(got, allKinds) {
			t.Fatalf("before delete, %s has %v, want %v", o, got, allKinds)
		}
	}
	must(t, s.DeleteUser(c, "alice"))
	for _, o := range owners {
		got := hasData(t, s, o)
		want := allKinds
		if o == "alice" || o == "alice@example.com" {
			want = nil
		}
		if !slices.Equal(got, want) {
			t.Errorf("after DeleteUser(alice), %s has %v, want %v", o, got, want)
		}
	}
	if _, err := s.GetUser(c, "alice2"); err != nil {
		t.Fatalf("alice2 was deleted with alice: %v", err)
	}
}

func setItem(it storage.RosterItem) storage.RosterUpdate {
	return func(storage.RosterItem, bool) (storage.RosterItem, bool, error) { return it, false, nil }
}

func testRoster(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner, bob = "alice@example.com", "bob@example.com"
	_, err := s.GetRosterItem(c, owner, bob)
	wantErr(t, err, storage.ErrNotFound)
	items, ver, err := s.GetRoster(c, owner)
	must(t, err)
	if len(items) != 0 || ver != 0 {
		t.Fatalf("empty roster = %v, version %d", items, ver)
	}
	v, err := s.RosterVersion(c, owner)
	must(t, err)
	if v != 0 {
		t.Fatalf("RosterVersion of empty roster = %d", v)
	}

	// fn sees a zero item with Owner and Contact set when there is none.
	var sawExists bool
	var saw storage.RosterItem
	bobItem := storage.RosterItem{Name: "Bob", Subscription: storage.SubTo, PendingIn: true, Groups: []string{"Friends", "Work"}, InRoster: true}
	it, removed, changed, ver, err := s.UpdateRosterItem(c, owner, bob, storage.RosterQuota{}, func(cur storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		saw, sawExists = cur, exists
		return bobItem, false, nil
	})
	must(t, err)
	if sawExists || saw.Owner != owner || saw.Contact != bob || saw.Name != "" || saw.InRoster || saw.PendingIn || saw.PendingOut || len(saw.Groups) != 0 {
		t.Fatalf("fn saw %+v exists=%v, want a zero item for %s/%s", saw, sawExists, owner, bob)
	}
	if saw.Subscription != "" && saw.Subscription != storage.SubNone {
		t.Fatalf("fn saw subscription %q for a new item", saw.Subscription)
	}
	if removed || !changed || ver != 1 {
		t.Fatalf("first update: removed=%v changed=%v version=%d, want false true 1", removed, changed, ver)
	}
	want := bobItem
	want.Owner, want.Contact = owner, bob
	if !sameItem(it, want) {
		t.Fatalf("returned item %+v, want %+v", it, want)
	}
	got, err := s.GetRosterItem(c, owner, bob)
	must(t, err)
	if !sameItem(got, want) {
		t.Fatalf("GetRosterItem = %+v, want %+v", got, want)
	}

	// The same state again: no change, no version bump; fn sees the item.
	_, _, changed, ver, err = s.UpdateRosterItem(c, owner, bob, storage.RosterQuota{}, func(cur storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		saw, sawExists = cur, exists
		return cur, false, nil
	})
	must(t, err)
	if !sawExists || !sameItem(saw, want) {
		t.Fatalf("fn saw %+v exists=%v, want %+v", saw, sawExists, want)
	}
	if changed || ver != 1 {
		t.Fatalf("no-op update: changed=%v version=%d, want false 1", changed, ver)
	}

	// Each real change bumps by exactly one.
	steps := []storage.RosterItem{
		{Name: "Bobby", Subscription: storage.SubTo, PendingIn: true, Groups: []string{"Friends", "Work"}, InRoster: true},
		{Name: "Bobby", Subscription: storage.SubBoth, Groups: []string{"Friends", "Work"}, InRoster: true},
		{Name: "Bobby", Subscription: storage.SubBoth, Groups: []string{"Work"}, InRoster: true},
		{Name: "Bobby", Subscription: storage.SubBoth, PendingOut: true, InRoster: true},
		{Name: "Bobby", Subscription: storage.SubBoth, PendingOut: true, InRoster: false},
	}
	for i, st := range steps {
		_, _, changed, ver, err = s.UpdateRosterItem(c, owner, bob, storage.RosterQuota{}, setItem(st))
		must(t, err)
		if !changed || ver != int64(i+2) {
			t.Fatalf("step %d: changed=%v version=%d, want true %d", i, changed, ver, i+2)
		}
		st.Owner, st.Contact = owner, bob
		got, err := s.GetRosterItem(c, owner, bob)
		must(t, err)
		if !sameItem(got, st) {
			t.Fatalf("step %d: stored %+v, want %+v", i, got, st)
		}
	}
	// Same state with the groups as an empty, non-nil slice: unchanged.
	last := steps[len(steps)-1]
	last.Groups = []string{}
	_, _, changed, ver, err = s.UpdateRosterItem(c, owner, bob, storage.RosterQuota{}, setItem(last))
	must(t, err)
	if changed || ver != int64(len(steps)+1) {
		t.Fatalf("empty-groups no-op: changed=%v version=%d", changed, ver)
	}

	// An invalid subscription is refused and writes nothing.
	_, _, _, _, err = s.UpdateRosterItem(c, owner, "x@example.com", storage.RosterQuota{}, setItem(storage.RosterItem{Subscription: "sideways"}))
	if err == nil {
		t.Fatal("invalid subscription accepted")
	}
	// An empty subscription means none.
	it, _, _, ver, err = s.UpdateRosterItem(c, owner, "carol@example.com", storage.RosterQuota{}, setItem(storage.RosterItem{InRoster: true}))
	must(t, err)
	if it.Subscription != storage.SubNone || ver != int64(len(steps)+2) {
		t.Fatalf("empty subscription stored as %q, version %d", it.Subscription, ver)
	}

	items, ver, err = s.GetRoster(c, owner)
	must(t, err)
	if ver != int64(len(steps)+2) || len(items) != 2 || items[0].Contact != bob || items[1].Contact != "carol@example.com" {
		t.Fatalf("GetRoster = %+v version %d", items, ver)
	}
	v, err = s.RosterVersion(c, owner)
	must(t, err)
	if v != ver {
		t.Fatalf("RosterVersion = %d, GetRoster version %d", v, ver)
	}
	// Other owners are separate.
	items, ver, err = s.GetRoster(c, bob)
	must(t, err)
	if len(items) != 0 || ver != 0 {
		t.Fatalf("bob's roster = %v version %d", items, ver)
	}
}

func sameItem(a, b storage.RosterItem) bool {
	return a.Owner == b.Owner && a.Contact == b.Contact && a.Name == b.Name &&
		a.Subscription == b.Subscription && a.PendingOut == b.PendingOut &&
		a.PendingIn == b.PendingIn && a.InRoster == b.InRoster &&
		len(a.Groups) == len(b.Groups) && (len(a.Groups) == 0 || slices.Equal(a.Groups, b.Groups))
}

var errAbort = errors.New("storagetest: abort")

func testRosterAbort(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	_, _, _, _, err := s.UpdateRosterItem(c, owner, "bob@example.com", storage.RosterQuota{}, setItem(storage.RosterItem{Name: "Bob", InRoster: true}))
	must(t, err)
	tests := []struct {
		name    string
		contact string
		fn      storage.RosterUpdate
	}{
		{"new item", "carol@example.com", func(cur storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
			cur.Name = "Carol"
			return cur, false, errAbort
		}},
		{"change", "bob@example.com", func(cur storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
			cur.Name = "Robert"
			return cur, false, errAbort
		}},
		{"remove", "bob@example.com", func(cur storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
			return cur, true, errAbort
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, _, err := s.UpdateRosterItem(c, owner, tc.contact, storage.RosterQuota{}, tc.fn)
			wantErr(t, err, errAbort)
			items, ver, err := s.GetRoster(c, owner)
			must(t, err)
			if ver != 1 || len(items) != 1 || items[0].Name != "Bob" {
				t.Fatalf("after abort: %+v version %d, want only Bob at version 1", items, ver)
			}
		})
	}
}

func testRosterRemove(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner, bob = "alice@example.com", "bob@example.com"
	remove := func(cur storage.RosterItem, _ bool) (storage.RosterItem, bool, error) { return cur, true, nil }
	// Removing what is not there changes nothing.
	_, removed, changed, ver, err := s.UpdateRosterItem(c, owner, bob, storage.RosterQuota{}, remove)
	must(t, err)
	if removed || changed || ver != 0 {
		t.Fatalf("remove of missing item: removed=%v changed=%v version=%d", removed, changed, ver)
	}
	_, _, _, _, err = s.UpdateRosterItem(c, owner, bob, storage.RosterQuota{}, setItem(storage.RosterItem{Name: "Bob", Subscription: storage.SubFrom, InRoster: true}))
	must(t, err)
	it, removed, changed, ver, err := s.UpdateRosterItem(c, owner, bob, storage.RosterQuota{}, remove)
	must(t, err)
	if !removed || !changed || ver != 2 || it.Contact != bob || it.Name != "Bob" {
		t.Fatalf("remove: item %+v removed=%v changed=%v version=%d", it, removed, changed, ver)
	}
	_, err = s.GetRosterItem(c, owner, bob)
	wantErr(t, err, storage.ErrNotFound)
	items, ver, err := s.GetRoster(c, owner)
	must(t, err)
	if len(items) != 0 || ver != 2 {
		t.Fatalf("roster after remove: %v version %d, want empty at 2", items, ver)
	}
	subs, err := s.Subscribers(c, owner)
	must(t, err)
	if len(subs) != 0 {
		t.Fatalf("Subscribers after remove = %v", subs)
	}
}

func testSubscribers(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	for contact, st := range map[string]storage.RosterItem{
		"none@x":      {Subscription: storage.SubNone, InRoster: true},
		"to@x":        {Subscription: storage.SubTo, InRoster: true},
		"from@x":      {Subscription: storage.SubFrom, InRoster: true},
		"both@x":      {Subscription: storage.SubBoth, InRoster: true},
		"pendingin@x": {Subscription: storage.SubNone, PendingIn: true},
		"topending@x": {Subscription: storage.SubTo, PendingIn: true, InRoster: true},
	} {
		_, _, _, _, err := s.UpdateRosterItem(c, owner, contact, storage.RosterQuota{}, setItem(st))
		must(t, err)
	}
	_, _, _, _, err := s.UpdateRosterItem(c, "other@example.com", "z@x", storage.RosterQuota{}, setItem(storage.RosterItem{Subscription: storage.SubBoth}))
	must(t, err)
	subs, err := s.Subscribers(c, owner)
	must(t, err)
	slices.Sort(subs)
	if want := []string{"both@x", "from@x"}; !slices.Equal(subs, want) {
		t.Fatalf("Subscribers = %q, want %q", subs, want)
	}
}

func testOffline(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	msgs, err := s.TakeOffline(c, owner)
	must(t, err)
	if len(msgs) != 0 {
		t.Fatalf("TakeOffline on empty queue = %v", msgs)
	}
	start := time.Now().Add(-time.Minute)
	var want [][]byte
	for i := range 5 {
		m := []byte(fmt.Sprintf("<message id='%d'><body>hi</body></message>", i))
		want = append(want, m)
		must(t, s.StoreOffline(c, owner, m, storage.OfflineQuota{}))
		must(t, s.StoreOffline(c, "bob@example.com", m, storage.OfflineQuota{}))
	}
	n, err := s.CountOffline(c, owner)
	must(t, err)
	if n != 5 {
		t.Fatalf("CountOffline = %d, want 5", n)
	}
	msgs, err = s.TakeOffline(c, owner)
	must(t, err)
	if len(msgs) != 5 {
		t.Fatalf("TakeOffline returned %d messages, want 5", len(msgs))
	}
	for i, m := range msgs {
		if !bytes.Equal(m.Stanza, want[i]) {
			t.Errorf("message %d = %s, want %s (oldest first)", i, m.Stanza, want[i])
		}
		if i > 0 && m.ID <= msgs[i-1].ID {
			t.Errorf("IDs not increasing: %d after %d", m.ID, msgs[i-1].ID)
		}
		if m.Stored.Before(start) || m.Stored.After(time.Now().Add(time.Minute)) {
			t.Errorf("message %d stored at %v, want about now", i, m.Stored)
		}
	}
	msgs, err = s.TakeOffline(c, owner)
	must(t, err)
	if len(msgs) != 0 {
		t.Fatalf("second TakeOffline = %d messages, want none", len(msgs))
	}
	n, err = s.CountOffline(c, owner)
	must(t, err)
	if n != 0 {
		t.Fatalf("CountOffline after take = %d", n)
	}
	n, err = s.CountOffline(c, "bob@example.com")
	must(t, err)
	if n != 5 {
		t.Fatalf("bob's queue = %d after alice's take, want 5", n)
	}
}

func testPeekOffline(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	msgs, err := s.PeekOffline(c, owner, 10)
	must(t, err)
	if len(msgs) != 0 {
		t.Fatalf("PeekOffline on an empty queue = %v", msgs)
	}
	for i := range 4 {
		must(t, s.StoreOffline(c, owner, []byte(strconv.Itoa(i)), storage.OfflineQuota{}))
	}
	must(t, s.StoreOffline(c, "bob@example.com", []byte("b"), storage.OfflineQuota{}))
	msgs, err = s.PeekOffline(c, owner, 3)
	must(t, err)
	if len(msgs) != 3 || string(msgs[0].Stanza) != "0" || string(msgs[2].Stanza) != "2" || msgs[0].Stored.IsZero() {
		t.Fatalf("PeekOffline(3) = %+v, want the oldest three", msgs)
	}
	// Nothing was taken.
	n, err := s.CountOffline(c, owner)
	must(t, err)
	if n != 4 {
		t.Fatalf("CountOffline after PeekOffline = %d, want 4", n)
	}
	taken, err := s.TakeOffline(c, owner)
	must(t, err)
	if len(taken) != 4 || taken[0].ID != msgs[0].ID {
		t.Fatalf("TakeOffline after PeekOffline = %d messages", len(taken))
	}
}

func testOfflineQuota(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	for i := range 3 {
		must(t, s.StoreOffline(c, owner, []byte(strconv.Itoa(i)), storage.OfflineQuota{Messages: 3}))
	}
	wantErr(t, s.StoreOffline(c, owner, []byte("over"), storage.OfflineQuota{Messages: 3}), storage.ErrQuotaExceeded)
	wantErr(t, s.StoreOffline(c, owner, []byte("over"), storage.OfflineQuota{Messages: 2}), storage.ErrQuotaExceeded)
	// Another user's quota is separate; limit 0 means no limit.
	must(t, s.StoreOffline(c, "bob@example.com", []byte("x"), storage.OfflineQuota{Messages: 3}))
	must(t, s.StoreOffline(c, owner, []byte("unlimited"), storage.OfflineQuota{}))
	n, err := s.CountOffline(c, owner)
	must(t, err)
	if n != 4 {
		t.Fatalf("CountOffline = %d, want 4", n)
	}
	_, err = s.TakeOffline(c, owner)
	must(t, err)
	must(t, s.StoreOffline(c, owner, []byte("room again"), storage.OfflineQuota{Messages: 3}))
}

func testExpireOffline(t *testing.T, s storage.Store) {
	c := ctx(t)
	for i := range 3 {
		must(t, s.StoreOffline(c, "alice@example.com", []byte(strconv.Itoa(i)), storage.OfflineQuota{}))
		must(t, s.StoreOffline(c, "bob@example.com", []byte(strconv.Itoa(i)), storage.OfflineQuota{}))
	}
	n, err := s.ExpireOffline(c, time.Now().Add(-time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("ExpireOffline(an hour ago) deleted %d, want 0", n)
	}
	n, err = s.ExpireOffline(c, time.Now().Add(time.Hour))
	must(t, err)
	if n != 6 {
		t.Fatalf("ExpireOffline(in an hour) deleted %d, want 6", n)
	}
	left, err := s.CountOffline(c, "alice@example.com")
	must(t, err)
	if left != 0 {
		t.Fatalf("%d messages left after expiry", left)
	}
}

func testBlocking(t *testing.T, s storage.Store) {
	c := ctx(t)
	const owner = "alice"
	list := func() []string {
		l, err := s.BlockList(c, owner)
		must(t, err)
		slices.Sort(l)
		return l
	}
	if l := list(); len(l) != 0 {
		t.Fatalf("initial BlockList = %v", l)
	}
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"block", func() error { return s.Block(c, owner, []string{"b@x", "a@x", "x.example"}) }, []string{"a@x", "b@x", "x.example"}},
		{"block duplicates", func() error { return s.Block(c, owner, []string{"a@x", "c@x/res", "c@x/res"}) }, []string{"a@x", "b@x", "c@x/res", "x.example"}},
		{"unblock some", func() error { return s.Unblock(c, owner, []string{"a@x", "not@listed"}) }, []string{"b@x", "c@x/res", "x.example"}},
		{"block nothing", func() error { return s.Block(c, owner, nil) }, []string{"b@x", "c@x/res", "x.example"}},
		{"other owner", func() error { return s.Block(c, "bob", []string{"q@x"}) }, []string{"b@x", "c@x/res", "x.example"}},
		{"unblock all", func() error { return s.Unblock(c, owner, nil) }, nil},
	}
	for _, st := range steps {
		must(t, st.do())
		if got := list(); !slices.Equal(got, st.want) {
			t.Fatalf("after %s: BlockList = %q, want %q", st.name, got, st.want)
		}
	}
	l, err := s.BlockList(c, "bob")
	must(t, err)
	if !slices.Equal(l, []string{"q@x"}) {
		t.Fatalf("bob's list = %q after alice's unblock-all", l)
	}
}

func testProperties(t *testing.T, s storage.Store) {
	c := ctx(t)
	_, err := s.GetProperty(c, "cluster.enabled")
	wantErr(t, err, storage.ErrNotFound)
	must(t, s.SetProperty(c, "cluster.enabled", "false"))
	must(t, s.SetProperty(c, "cluster.enabled", "true"))
	must(t, s.SetProperty(c, "other", ""))
	v, err := s.GetProperty(c, "cluster.enabled")
	must(t, err)
	if v != "true" {
		t.Fatalf("GetProperty = %q, want true", v)
	}
	v, err = s.GetProperty(c, "other")
	must(t, err)
	if v != "" {
		t.Fatalf("empty property = %q", v)
	}
	all, err := s.ListProperties(c)
	must(t, err)
	if len(all) != 2 || all["cluster.enabled"] != "true" || all["other"] != "" {
		t.Fatalf("ListProperties = %v", all)
	}
	if pc, ok := s.(storage.PropertyCreator); ok {
		// The first value stays; a later create returns it.
		for _, try := range []string{"first", "second"} {
			v, err := pc.CreateProperty(c, "created.once", try)
			must(t, err)
			if v != "first" {
				t.Fatalf("CreateProperty(%q) = %q, want first", try, v)
			}
		}
		must(t, s.DeleteProperty(c, "created.once"))
	} else {
		t.Fatal("the store does not implement storage.PropertyCreator")
	}
	must(t, s.DeleteProperty(c, "cluster.enabled"))
	must(t, s.DeleteProperty(c, "never.set"))
	_, err = s.GetProperty(c, "cluster.enabled")
	wantErr(t, err, storage.ErrNotFound)
	all, err = s.ListProperties(c)
	must(t, err)
	if len(all) != 1 {
		t.Fatalf("ListProperties after delete = %v", all)
	}
}

// testListenProperty checks stores that implement storage.PropertyListener.
func testListenProperty(t *testing.T, s storage.Store) {
	l, ok := s.(storage.PropertyListener)
	if !ok {
		t.Skip("store does not implement storage.PropertyListener")
	}
	c := ctx(t)
	must(t, s.SetProperty(c, "cluster.enabled", "false"))
	got := make(chan string, 16)
	lctx, cancel := context.WithCancel(c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.ListenProperty(lctx, "cluster.enabled", func(v string) { got <- v })
	}()
	defer func() { cancel(); <-done }()
	next := func(want string) {
		t.Helper()
		select {
		case v := <-got:
			if v != want {
				t.Fatalf("listener got %q, want %q", v, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("listener never got %q", want)
		}
	}
	next("false") // the value when listening starts
	must(t, s.SetProperty(c, "unrelated", "x"))
	must(t, s.SetProperty(c, "cluster.enabled", "true"))
	next("true")
	must(t, s.DeleteProperty(c, "cluster.enabled"))
	next("")
}

func testPlugins(t *testing.T, s storage.Store) {
	c := ctx(t)
	_, err := s.GetPlugin(c, "motd", "1.0.0")
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.SetPluginEnabled(c, "motd", "1.0.0", true), storage.ErrNotFound)
	wantErr(t, s.DeletePlugin(c, "motd", "1.0.0"), storage.ErrNotFound)

	recs := []storage.PluginRecord{
		{Name: "motd", Version: "1.0.0", Checksum: "aa", Artifact: []byte("wasm-1"), Enabled: true, Uploaded: when},
		{Name: "motd", Version: "1.1.0", Checksum: "bb", Artifact: []byte("wasm-2"), Uploaded: when.Add(time.Hour)},
		{Name: "echo", Version: "0.1.0", Checksum: "cc", Artifact: []byte("wasm-3"), Uploaded: when},
	}
	for _, r := range recs {
		must(t, s.PutPlugin(c, r))
	}
	p, err := s.GetPlugin(c, "motd", "1.1.0")
	must(t, err)
	if p.Name != "motd" || p.Version != "1.1.0" || p.Checksum != "bb" || string(p.Artifact) != "wasm-2" || p.Enabled || !p.Uploaded.Equal(when.Add(time.Hour)) {
		t.Fatalf("GetPlugin = %+v", p)
	}
	list, err := s.ListPlugins(c)
	must(t, err)
	if len(list) != 3 {
		t.Fatalf("ListPlugins = %+v", list)
	}
	for _, r := range list {
		if len(r.Artifact) != 0 {
			t.Errorf("ListPlugins returned the artifact of %s %s", r.Name, r.Version)
		}
		if r.Checksum == "" || r.Uploaded.IsZero() {
			t.Errorf("ListPlugins lost fields: %+v", r)
		}
	}
	must(t, s.SetPluginEnabled(c, "motd", "1.1.0", true))
	must(t, s.SetPluginEnabled(c, "motd", "1.0.0", false))
	p, err = s.GetPlugin(c, "motd", "1.1.0")
	must(t, err)
	if !p.Enabled {
		t.Fatal("SetPluginEnabled(true) not stored")
	}
	p, err = s.GetPlugin(c, "motd", "1.0.0")
	must(t, err)
	if p.Enabled {
		t.Fatal("SetPluginEnabled(false) not stored")
	}
	// A version is never replaced: nodes load and roll back by version.
	// (Replacing it also cleared the enabled flag: a node restarted
	// afterwards ran nothing. Issue 17.)
	must(t, s.SetPluginEnabled(c, "echo", "0.1.0", true))
	wantErr(t, s.PutPlugin(c, storage.PluginRecord{Name: "echo", Version: "0.1.0", Checksum: "dd", Artifact: []byte("wasm-4")}), storage.ErrExists)
	p, err = s.GetPlugin(c, "echo", "0.1.0")
	must(t, err)
	if p.Checksum != "cc" || string(p.Artifact) != "wasm-3" || !p.Enabled || !p.Uploaded.Equal(when) {
		t.Fatalf("a refused Put changed the plugin: %+v", p)
	}
	must(t, s.DeletePlugin(c, "motd", "1.0.0"))
	_, err = s.GetPlugin(c, "motd", "1.0.0")
	wantErr(t, err, storage.ErrNotFound)
	list, err = s.ListPlugins(c)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListPlugins after delete = %+v", list)
	}
}

func testNodePlugins(t *testing.T, s storage.Store) {
	c := ctx(t)
	l, err := s.ListNodePlugins(c)
	must(t, err)
	if len(l) != 0 {
		t.Fatalf("initial ListNodePlugins = %v", l)
	}
	must(t, s.SetNodePlugin(c, storage.NodePlugin{Node: "n1", Name: "motd", Version: "1.0.0", State: "loaded", Updated: when}))
	must(t, s.SetNodePlugin(c, storage.NodePlugin{Node: "n2", Name: "motd", Version: "1.0.0", State: "loaded", Updated: when}))
	must(t, s.SetNodePlugin(c, storage.NodePlugin{Node: "n1", Name: "motd", Version: "1.1.0", State: "failed", Error: "checksum mismatch", Updated: when.Add(time.Minute)}))
	l, err = s.ListNodePlugins(c)
	must(t, err)
	slices.SortFunc(l, func(a, b storage.NodePlugin) int {
		if a.Node != b.Node {
			return cmpStr(a.Node, b.Node)
		}
		return cmpStr(a.Name, b.Name)
	})
	if len(l) != 2 || l[0].Node != "n1" || l[0].Version != "1.1.0" || l[0].State != "failed" || l[0].Error != "checksum mismatch" || !l[0].Updated.Equal(when.Add(time.Minute)) || l[1].Node != "n2" {
		t.Fatalf("ListNodePlugins = %+v", l)
	}
	must(t, s.SetNodePlugin(c, storage.NodePlugin{Node: "n1", Name: "motd", Version: "1.1.0", State: "loaded", Updated: when.Add(2 * time.Minute)}))
	l, err = s.ListNodePlugins(c)
	must(t, err)
	for _, np := range l {
		if np.Node == "n1" && (np.State != "loaded" || np.Error != "") {
			t.Fatalf("a new report kept the old one's error: %+v", np)
		}
	}
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Concurrency: workers on a and b (the same store or two stores on one
// database) change the same item; nothing may be lost.
const (
	workers   = 8
	perWorker = 15
)

func concurrentRoster(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	const owner, contact = "alice@example.com", "bob@example.com"
	inc := func(cur storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		n := 0
		if exists {
			var err error
			if n, err = strconv.Atoi(cur.Name); err != nil {
				return cur, false, err
			}
		}
		cur.Name = strconv.Itoa(n + 1)
		cur.InRoster = true
		return cur, false, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range perWorker {
				// Each worker also writes its own item, so writers for
				// different items interleave with the contended one.
				_, _, changed, _, err := s.UpdateRosterItem(c, owner, contact, storage.RosterQuota{}, inc)
				if err == nil && !changed {
					err = errors.New("an increment reported no change")
				}
				if err == nil {
					_, _, _, _, err = s.UpdateRosterItem(c, owner, fmt.Sprintf("w%d@x", w), storage.RosterQuota{}, setItem(storage.RosterItem{Name: strconv.Itoa(i), InRoster: true}))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	it, err := b.GetRosterItem(c, owner, contact)
	must(t, err)
	if it.Name != strconv.Itoa(workers*perWorker) {
		t.Fatalf("counter = %s after %d increments: updates were lost", it.Name, workers*perWorker)
	}
	ver, err := a.RosterVersion(c, owner)
	must(t, err)
	if ver != 2*workers*perWorker {
		t.Fatalf("version = %d, want %d (one bump per change)", ver, 2*workers*perWorker)
	}
}

func concurrentOffline(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	const owner = "alice@example.com"
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range perWorker {
				if err := s.StoreOffline(c, owner, []byte(fmt.Sprintf("%d/%d", w, i)), storage.OfflineQuota{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// A reader taking messages while they arrive, all of them or a few
	// bytes at a time, must not lose any either.
	var taken []storage.OfflineMessage
	var takeErr error
	stop := make(chan struct{})
	tookDone := make(chan struct{})
	go func() {
		defer close(tookDone)
		for i := 0; ; i++ {
			var msgs []storage.OfflineMessage
			var err error
			if i%2 == 0 {
				msgs, err = b.TakeOffline(c, owner)
			} else {
				msgs, _, err = b.TakeOfflineUpTo(c, owner, 16)
			}
			if err != nil {
				takeErr = err
				return
			}
			taken = append(taken, msgs...)
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-tookDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	must(t, takeErr)
	rest, err := a.TakeOffline(c, owner)
	must(t, err)
	taken = append(taken, rest...)
	seen := map[string]bool{}
	last := map[int]int{}
	for _, m := range taken {
		if seen[string(m.Stanza)] {
			t.Fatalf("message %s delivered twice", m.Stanza)
		}
		seen[string(m.Stanza)] = true
		var w, i int
		fmt.Sscanf(string(m.Stanza), "%d/%d", &w, &i)
		if prev, ok := last[w]; ok && i <= prev {
			t.Fatalf("worker %d: message %d taken after %d", w, i, prev)
		}
		last[w] = i
	}
	if len(seen) != workers*perWorker {
		t.Fatalf("took %d distinct messages, stored %d", len(seen), workers*perWorker)
	}
}

func concurrentQuota(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	const owner, limit = "alice@example.com", 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stored, refused int
	var other error
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range 5 {
				err := s.StoreOffline(c, owner, []byte("m"), storage.OfflineQuota{Messages: limit})
				mu.Lock()
				switch {
				case err == nil:
					stored++
				case errors.Is(err, storage.ErrQuotaExceeded):
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
	n, err := a.CountOffline(c, owner)
	must(t, err)
	if stored != limit || n != limit || refused != workers*5-limit {
		t.Fatalf("stored %d, refused %d, queue %d; want exactly %d stored", stored, refused, n, limit)
	}
}

// seeEachOther checks a write through one store is read through the other.
func seeEachOther(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	must(t, a.CreateUser(c, storage.User{Username: "alice", Credentials: creds(1)}))
	u, err := b.GetUser(c, "alice")
	must(t, err)
	if !sameCreds(u.Credentials, creds(1)) {
		t.Fatal("credentials differ between stores")
	}
	wantErr(t, b.CreateUser(c, storage.User{Username: "alice"}), storage.ErrExists)
	must(t, b.SetProperty(c, "cluster.enabled", "true"))
	v, err := a.GetProperty(c, "cluster.enabled")
	must(t, err)
	if v != "true" {
		t.Fatalf("property through the other store = %q", v)
	}
}
