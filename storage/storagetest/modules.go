package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// The general module stores: key/value, map and archive.

func testKeyValue(t *testing.T, s storage.Store) {
	c := ctx(t)
	kv := s.KeyValue("vcard")
	_, err := kv.Get(c, "alice@x", "")
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, kv.Delete(c, "alice@x", ""), storage.ErrNotFound)

	v1, err := kv.Set(c, "alice@x", "", []byte("<vCard>A</vCard>"), storage.Limits{})
	must(t, err)
	v2, err := kv.Set(c, "alice@x", "", []byte("<vCard>Alice</vCard>"), storage.Limits{})
	must(t, err)
	if v1 <= 0 || v2 <= v1 {
		t.Fatalf("versions %d then %d, want positive and increasing", v1, v2)
	}
	e, err := kv.Get(c, "alice@x", "")
	must(t, err)
	if string(e.Value) != "<vCard>Alice</vCard>" || e.Version != v2 {
		t.Fatalf("Get = %q version %d, want the second value, version %d", e.Value, e.Version, v2)
	}
	// Binary values, an empty value, and keys that need no escaping.
	bin := []byte{0, 1, 2, 0xff, '\'', '"'}
	_, err = kv.Set(c, "alice@x", "k'1 ns", bin, storage.Limits{})
	must(t, err)
	_, err = kv.Set(c, "alice@x", "empty", nil, storage.Limits{})
	must(t, err)
	if e, err := kv.Get(c, "alice@x", "k'1 ns"); err != nil || !bytes.Equal(e.Value, bin) {
		t.Fatalf("binary value = %v, %v", e.Value, err)
	}
	if e, err := kv.Get(c, "alice@x", "empty"); err != nil || e.Value == nil || len(e.Value) != 0 {
		t.Fatalf("empty value = %#v, %v; want a non-nil empty slice", e.Value, err)
	}
	keys, err := kv.Keys(c, "alice@x")
	must(t, err)
	if !slices.Equal(keys, []string{"", "empty", "k'1 ns"}) {
		t.Fatalf("Keys = %q", keys)
	}
	// Stores and owners are apart.
	for _, other := range []struct{ store, owner string }{{"private", "alice@x"}, {"vcard", "bob@x"}, {"vcard", "alice@y"}} {
		_, err := s.KeyValue(other.store).Get(c, other.owner, "")
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("store %s owner %s sees %v", other.store, other.owner, err)
		}
	}
	must(t, kv.Delete(c, "alice@x", "empty"))
	_, err = kv.Get(c, "alice@x", "empty")
	wantErr(t, err, storage.ErrNotFound)
	keys, err = kv.Keys(c, "bob@x")
	must(t, err)
	if len(keys) != 0 {
		t.Fatalf("Keys of an owner with nothing = %q", keys)
	}
}

func testKeyValueCAS(t *testing.T, s storage.Store) {
	c := ctx(t)
	kv := s.KeyValue("counter")
	v1, err := kv.CompareAndSet(c, "alice@x", "k", 0, []byte("1"), storage.Limits{})
	must(t, err)
	_, err = kv.CompareAndSet(c, "alice@x", "k", 0, []byte("x"), storage.Limits{})
	wantErr(t, err, storage.ErrConflict)
	_, err = kv.CompareAndSet(c, "alice@x", "k", v1+1000, []byte("x"), storage.Limits{})
	wantErr(t, err, storage.ErrConflict)
	_, err = kv.CompareAndSet(c, "alice@x", "absent", v1, []byte("x"), storage.Limits{})
	wantErr(t, err, storage.ErrConflict)
	v2, err := kv.CompareAndSet(c, "alice@x", "k", v1, []byte("2"), storage.Limits{})
	must(t, err)
	if v2 <= v1 {
		t.Fatalf("version after CompareAndSet %d, want more than %d", v2, v1)
	}
	_, err = kv.CompareAndSet(c, "alice@x", "k", v1, []byte("x"), storage.Limits{})
	wantErr(t, err, storage.ErrConflict)
	// Delete and re-create: the old version must not match again.
	must(t, kv.Delete(c, "alice@x", "k"))
	v3, err := kv.CompareAndSet(c, "alice@x", "k", 0, []byte("3"), storage.Limits{})
	must(t, err)
	if v3 == v2 || v3 == v1 {
		t.Fatalf("re-created key got a used version %d", v3)
	}
	_, err = kv.CompareAndSet(c, "alice@x", "k", v2, []byte("x"), storage.Limits{})
	wantErr(t, err, storage.ErrConflict)
	if e, err := kv.Get(c, "alice@x", "k"); err != nil || string(e.Value) != "3" {
		t.Fatalf("value after failed swaps = %q, %v; want 3", e.Value, err)
	}
	// UpdateKV: read-modify-write, and remove.
	incr := func(old []byte, exists bool) ([]byte, bool, error) {
		n, _ := strconv.Atoi(string(old))
		return []byte(strconv.Itoa(n + 1)), false, nil
	}
	must(t, storage.UpdateKV(c, kv, "alice@x", "k", storage.Limits{}, incr))
	must(t, storage.UpdateKV(c, kv, "alice@x", "fresh", storage.Limits{}, incr))
	if e, _ := kv.Get(c, "alice@x", "k"); string(e.Value) != "4" {
		t.Fatalf("UpdateKV on 3 gave %q", e.Value)
	}
	if e, _ := kv.Get(c, "alice@x", "fresh"); string(e.Value) != "1" {
		t.Fatalf("UpdateKV on nothing gave %q", e.Value)
	}
	must(t, storage.UpdateKV(c, kv, "alice@x", "k", storage.Limits{}, func([]byte, bool) ([]byte, bool, error) { return nil, true, nil }))
	_, err = kv.Get(c, "alice@x", "k")
	wantErr(t, err, storage.ErrNotFound)
	boom := errors.New("boom")
	err = storage.UpdateKV(c, kv, "alice@x", "fresh", storage.Limits{}, func([]byte, bool) ([]byte, bool, error) { return nil, false, boom })
	wantErr(t, err, boom)
}

// wantQuota checks err is a *storage.QuotaError on the named limit.
func wantQuota(t *testing.T, err error, limit string, max int64) {
	t.Helper()
	var qe *storage.QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, storage.ErrQuotaExceeded) || qe.Limit != limit || qe.Max != max {
		t.Fatalf("got %v, want a quota error on %d %s", err, max, limit)
	}
}

func testKeyValueQuota(t *testing.T, s storage.Store) {
	c := ctx(t)
	kv := s.KeyValue("private")
	items := storage.Limits{Items: 3}
	for i := range 3 {
		_, err := kv.Set(c, "alice@x", fmt.Sprint("k", i), []byte("0123456789"), items)
		must(t, err)
	}
	_, err := kv.Set(c, "alice@x", "k3", []byte("x"), items)
	wantQuota(t, err, "items", 3)
	_, err = kv.CompareAndSet(c, "alice@x", "k3", 0, []byte("x"), items)
	wantQuota(t, err, "items", 3)
	// Replacing a key does not add an item; other owners and stores have
	// their own counts.
	_, err = kv.Set(c, "alice@x", "k1", []byte("new"), items)
	must(t, err)
	_, err = kv.Set(c, "bob@x", "k3", []byte("x"), items)
	must(t, err)
	_, err = s.KeyValue("other").Set(c, "alice@x", "k3", []byte("x"), items)
	must(t, err)

	// Bytes: 10 + 3 + 10 stored; the replaced value's size is not counted.
	bytesLim := storage.Limits{Bytes: 30}
	_, err = kv.Set(c, "alice@x", "k1", []byte("0123456789"), bytesLim) // 30
	must(t, err)
	_, err = kv.Set(c, "alice@x", "k1", []byte("0123456789x"), bytesLim) // 31
	wantQuota(t, err, "bytes", 30)
	_, err = kv.Set(c, "alice@x", "k9", []byte("x"), bytesLim)
	wantQuota(t, err, "bytes", 30)
	if e, err := kv.Get(c, "alice@x", "k1"); err != nil || string(e.Value) != "0123456789" {
		t.Fatalf("a refused write changed the value: %q, %v", e.Value, err)
	}
	if _, err := kv.Get(c, "alice@x", "k9"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused write stored a key: %v", err)
	}
	// Shrinking always fits.
	_, err = kv.Set(c, "alice@x", "k1", []byte("0"), storage.Limits{Items: 3, Bytes: 30})
	must(t, err)
}

// pluck returns one field of each element.
func pluck[T, F any](s []T, f func(T) F) []F {
	var out []F
	for _, v := range s {
		out = append(out, f(v))
	}
	return out
}

func mapKeys(items []storage.MapItem) []string {
	return pluck(items, func(it storage.MapItem) string { return it.Key })
}

func testMap(t *testing.T, s storage.Store) {
	c := ctx(t)
	m := s.Map("pep")
	const owner = "alice@x"
	_, err := m.Get(c, owner, "n1", "a")
	wantErr(t, err, storage.ErrNotFound)
	for _, k := range []string{"a", "b", "c", "d"} {
		_, err := m.Set(c, owner, "n1", k, []byte("<"+k+"/>"), storage.Limits{})
		must(t, err)
	}
	_, err = m.Set(c, owner, "n2", "a", []byte("<other/>"), storage.Limits{})
	must(t, err)
	_, err = m.Set(c, owner, "", "z", []byte("<z/>"), storage.Limits{})
	must(t, err)
	// Writing b again moves it to the newest position.
	vb, err := m.Set(c, owner, "n1", "b", []byte("<b2/>"), storage.Limits{})
	must(t, err)
	it, err := m.Get(c, owner, "n1", "b")
	must(t, err)
	if it.Collection != "n1" || it.Key != "b" || string(it.Value) != "<b2/>" || it.Version != vb {
		t.Fatalf("Get = %+v", it)
	}
	tests := []struct {
		q    storage.MapQuery
		want []string
	}{
		{storage.MapQuery{}, []string{"a", "c", "d", "b"}},
		{storage.MapQuery{Limit: 2}, []string{"a", "c"}},
		{storage.MapQuery{Newest: true}, []string{"b", "d", "c", "a"}},
		{storage.MapQuery{Newest: true, Limit: 1}, []string{"b"}},
		{storage.MapQuery{Limit: 10}, []string{"a", "c", "d", "b"}},
	}
	for _, tc := range tests {
		got, err := m.List(c, owner, "n1", tc.q)
		must(t, err)
		if !slices.Equal(mapKeys(got), tc.want) {
			t.Errorf("List(%+v) = %v, want %v", tc.q, mapKeys(got), tc.want)
		}
	}
	all, err := m.List(c, owner, "n1", storage.MapQuery{})
	must(t, err)
	for i := 1; i < len(all); i++ {
		if all[i].Version <= all[i-1].Version || all[i].Collection != "n1" {
			t.Fatalf("List items out of version order: %+v", all)
		}
	}
	if n, err := m.Count(c, owner, "n1"); err != nil || n != 4 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	colls, err := m.Collections(c, owner)
	must(t, err)
	if !slices.Equal(colls, []string{"", "n1", "n2"}) {
		t.Fatalf("Collections = %q", colls)
	}
	must(t, m.Delete(c, owner, "n1", "c"))
	wantErr(t, m.Delete(c, owner, "n1", "c"), storage.ErrNotFound)
	n, err := m.DeleteCollection(c, owner, "n1")
	must(t, err)
	if n != 3 {
		t.Fatalf("DeleteCollection removed %d, want 3", n)
	}
	if got, err := m.List(c, owner, "n1", storage.MapQuery{}); err != nil || len(got) != 0 {
		t.Fatalf("List after DeleteCollection = %v, %v", mapKeys(got), err)
	}
	if it, err := m.Get(c, owner, "n2", "a"); err != nil || string(it.Value) != "<other/>" {
		t.Fatalf("another collection was touched: %+v, %v", it, err)
	}
	if got, err := s.Map("pep").List(c, "bob@x", "n2", storage.MapQuery{}); err != nil || len(got) != 0 {
		t.Fatalf("another owner sees %v, %v", mapKeys(got), err)
	}
}

func testMapMax(t *testing.T, s storage.Store) {
	c := ctx(t)
	m := s.Map("pubsub")
	const owner = "alice@x"
	for i := range 5 {
		_, err := m.Set(c, owner, "node", fmt.Sprint("i", i), []byte("x"), storage.Limits{Max: 3})
		must(t, err)
	}
	got, err := m.List(c, owner, "node", storage.MapQuery{})
	must(t, err)
	if !slices.Equal(mapKeys(got), []string{"i2", "i3", "i4"}) {
		t.Fatalf("after 5 sets with Max 3: %v", mapKeys(got))
	}
	// Re-writing a kept item evicts nothing; Max 1 keeps only the newest.
	_, err = m.Set(c, owner, "node", "i2", []byte("y"), storage.Limits{Max: 3})
	must(t, err)
	got, _ = m.List(c, owner, "node", storage.MapQuery{})
	if !slices.Equal(mapKeys(got), []string{"i3", "i4", "i2"}) {
		t.Fatalf("after re-writing i2: %v", mapKeys(got))
	}
	_, err = m.Set(c, owner, "node", "last", []byte("z"), storage.Limits{Max: 1})
	must(t, err)
	got, _ = m.List(c, owner, "node", storage.MapQuery{})
	if !slices.Equal(mapKeys(got), []string{"last"}) {
		t.Fatalf("after Max 1: %v", mapKeys(got))
	}
	// Max counts one collection only.
	_, err = m.Set(c, owner, "other", "o", []byte("x"), storage.Limits{Max: 1})
	must(t, err)
	if n, _ := m.Count(c, owner, "node"); n != 1 {
		t.Fatalf("Max in another collection evicted from this one: %d left", n)
	}
}

func testMapQuota(t *testing.T, s storage.Store) {
	c := ctx(t)
	m := s.Map("pep")
	const owner = "alice@x"
	lim := storage.Limits{Items: 3, Bytes: 100}
	for i, coll := range []string{"a", "b", "c"} {
		_, err := m.Set(c, owner, coll, "item", bytes.Repeat([]byte("x"), 10*(i+1)), lim)
		must(t, err)
	}
	// Items counts every collection of the owner.
	_, err := m.Set(c, owner, "d", "item", []byte("x"), lim)
	wantQuota(t, err, "items", 3)
	// A full collection with Max evicts its oldest first, so the write fits.
	_, err = m.Set(c, owner, "a", "item2", []byte("y"), storage.Limits{Items: 3, Bytes: 100, Max: 1})
	must(t, err)
	got, _ := m.List(c, owner, "a", storage.MapQuery{})
	if !slices.Equal(mapKeys(got), []string{"item2"}) {
		t.Fatalf("collection a = %v", mapKeys(got))
	}
	// Bytes: 1 + 20 + 30 stored.
	_, err = m.Set(c, owner, "b", "item", bytes.Repeat([]byte("x"), 70), lim) // 1 + 70 + 30 = 101
	wantQuota(t, err, "bytes", 100)
	if it, _ := m.Get(c, owner, "b", "item"); len(it.Value) != 20 {
		t.Fatalf("refused write changed the item to %d bytes", len(it.Value))
	}
	_, err = m.Set(c, owner, "b", "item", bytes.Repeat([]byte("x"), 69), lim) // 100
	must(t, err)
}

func archiveIDs(es []storage.ArchiveEntry) []int64 {
	return pluck(es, func(e storage.ArchiveEntry) int64 { return e.ID })
}

func testArchive(t *testing.T, s storage.Store) {
	c := ctx(t)
	a := s.Archive("mam")
	const owner = "alice@example.com"
	withs := []string{"bob@x", "carol@x", "bob@x", "carol@x", "bob@x", "dave@x"}
	var ids []int64
	for i, w := range withs {
		id, err := a.Append(c, storage.ArchiveEntry{Owner: owner, With: w, When: when.Add(time.Duration(i) * time.Second),
			Value: []byte(fmt.Sprintf("<message id='%d'/>", i))})
		must(t, err)
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("IDs not increasing with time: %v", ids)
		}
	}
	page, err := a.Query(c, owner, storage.ArchiveQuery{Count: true})
	must(t, err)
	if !slices.Equal(archiveIDs(page.Entries), ids) || page.Total != 6 || !page.Complete {
		t.Fatalf("Query all = %v total %d complete %v, want %v 6 true", archiveIDs(page.Entries), page.Total, page.Complete, ids)
	}
	for i, e := range page.Entries {
		if e.Owner != owner || e.With != withs[i] || string(e.Value) != fmt.Sprintf("<message id='%d'/>", i) ||
			!e.When.Equal(when.Add(time.Duration(i)*time.Second)) {
			t.Errorf("entry %d = %+v", i, e)
		}
	}
	e, err := a.Get(c, owner, ids[2])
	must(t, err)
	if e.ID != ids[2] || e.With != "bob@x" || string(e.Value) != "<message id='2'/>" || !e.When.Equal(when.Add(2*time.Second)) {
		t.Fatalf("Get = %+v", e)
	}
	_, err = a.Get(c, "bob@x", ids[2])
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.Archive("muc").Get(c, owner, ids[2])
	wantErr(t, err, storage.ErrNotFound)
	// The ID string clients see sorts like the IDs and reads back.
	for i, id := range ids {
		str := storage.FormatArchiveID(id)
		back, err := storage.ParseArchiveID(str)
		if err != nil || back != id || (i > 0 && str <= storage.FormatArchiveID(ids[i-1])) {
			t.Fatalf("FormatArchiveID(%d) = %q, back %d, %v", id, str, back, err)
		}
	}
	for _, bad := range []string{"", "xyz", "0123456789abcdeg", "ffffffffffffffff", "123"} {
		if _, err := storage.ParseArchiveID(bad); err == nil {
			t.Errorf("ParseArchiveID(%q) accepted", bad)
		}
	}
	// A zero When is now.
	before := time.Now().Add(-time.Minute)
	id, err := a.Append(c, storage.ArchiveEntry{Owner: "gen@x", Value: []byte("<a/>")})
	must(t, err)
	if at := storage.ArchiveIDTime(id); at.Before(before) || at.After(time.Now().Add(time.Minute)) {
		t.Fatalf("an entry appended without a time is at %v", at)
	}
	_, err = a.Append(c, storage.ArchiveEntry{Value: []byte("<a/>")})
	if err == nil {
		t.Fatal("an entry without an owner was appended")
	}
	// Update (a tombstone) and the owners and stores apart.
	must(t, a.Update(c, owner, ids[1], []byte("<retracted/>")))
	wantErr(t, a.Update(c, owner, 12345, []byte("x")), storage.ErrNotFound)
	if e, _ := a.Get(c, owner, ids[1]); string(e.Value) != "<retracted/>" || e.With != "carol@x" {
		t.Fatalf("after Update: %+v", e)
	}
	if p, err := s.Archive("muc").Query(c, owner, storage.ArchiveQuery{Count: true}); err != nil || len(p.Entries) != 0 || p.Total != 0 {
		t.Fatalf("another store sees %v total %d, %v", archiveIDs(p.Entries), p.Total, err)
	}
}

func testArchivePaging(t *testing.T, s storage.Store) {
	c := ctx(t)
	a := s.Archive("mam")
	const owner = "alice@example.com"
	var ids []int64
	withs := map[int64]string{}
	for i := range 10 {
		w := "bob@x"
		if i%3 == 0 {
			w = "carol@x"
		}
		id, err := a.Append(c, storage.ArchiveEntry{Owner: owner, With: w, When: when.Add(time.Duration(i) * time.Minute), Value: []byte{byte(i)}})
		must(t, err)
		ids = append(ids, id)
		withs[id] = w
	}
	// A neighbour's entries must never show.
	_, err := a.Append(c, storage.ArchiveEntry{Owner: "alice@example.co", With: "bob@x", When: when.Add(3 * time.Minute)})
	must(t, err)
	carol := []int64{ids[0], ids[3], ids[6], ids[9]}
	at := func(i int) time.Time { return when.Add(time.Duration(i) * time.Minute) }
	tests := []struct {
		name     string
		q        storage.ArchiveQuery
		want     []int64
		total    int
		complete bool
	}{
		{"first page", storage.ArchiveQuery{Limit: 3, Count: true}, ids[:3], 10, false},
		{"next page", storage.ArchiveQuery{AfterID: ids[2], Limit: 3, Count: true}, ids[3:6], 10, false},
		{"last forward page", storage.ArchiveQuery{AfterID: ids[6], Limit: 3}, ids[7:], -1, true},
		{"past the end", storage.ArchiveQuery{AfterID: ids[9], Limit: 3}, nil, -1, true},
		{"last 3", storage.ArchiveQuery{Last: true, Limit: 3, Count: true}, ids[7:], 10, false},
		{"3 before", storage.ArchiveQuery{Last: true, BeforeID: ids[7], Limit: 3}, ids[4:7], -1, false},
		{"first backward page", storage.ArchiveQuery{Last: true, BeforeID: ids[2], Limit: 3}, ids[:2], -1, true},
		{"between", storage.ArchiveQuery{AfterID: ids[1], BeforeID: ids[5]}, ids[2:5], -1, true},
		{"time range", storage.ArchiveQuery{Start: at(2), End: at(4), Count: true}, ids[2:5], 3, true},
		{"time range page", storage.ArchiveQuery{Start: at(2), End: at(8), Limit: 2, Last: true, Count: true}, ids[7:9], 7, false},
		{"start only", storage.ArchiveQuery{Start: at(8)}, ids[8:], -1, true},
		{"end only", storage.ArchiveQuery{End: at(1).Add(time.Second)}, ids[:2], -1, true},
		{"with", storage.ArchiveQuery{With: "carol@x", Count: true}, carol, 4, true},
		{"with page", storage.ArchiveQuery{With: "carol@x", AfterID: ids[0], Limit: 2, Count: true}, carol[1:3], 4, false},
		{"with last", storage.ArchiveQuery{With: "carol@x", Last: true, Limit: 1}, carol[3:], -1, false},
		{"with and time", storage.ArchiveQuery{With: "carol@x", Start: at(1), End: at(6), Count: true}, carol[1:3], 2, true},
		{"nobody", storage.ArchiveQuery{With: "nobody@x", Count: true}, nil, 0, true},
		{"empty range", storage.ArchiveQuery{Start: at(5), End: at(4)}, nil, -1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Query(c, owner, tc.q)
			must(t, err)
			if !slices.Equal(archiveIDs(p.Entries), tc.want) || p.Total != tc.total || p.Complete != tc.complete {
				t.Fatalf("Query = %v total %d complete %v; want %v total %d complete %v",
					archiveIDs(p.Entries), p.Total, p.Complete, tc.want, tc.total, tc.complete)
			}
			for _, e := range p.Entries {
				if e.With != withs[e.ID] || e.Owner != owner {
					t.Fatalf("entry %+v", e)
				}
			}
		})
	}
	// Walking backwards page by page visits everything once.
	var walked []int64
	q := storage.ArchiveQuery{Last: true, Limit: 4}
	for {
		p, err := a.Query(c, owner, q)
		must(t, err)
		walked = append(archiveIDs(p.Entries), walked...)
		if p.Complete {
			break
		}
		q.BeforeID = p.Entries[0].ID
	}
	if !slices.Equal(walked, ids) {
		t.Fatalf("backward walk = %v, want %v", walked, ids)
	}
}

func testArchiveBatch(t *testing.T, s storage.Store) {
	c := ctx(t)
	a := s.Archive("mam")
	// One message archived for both parties, many at the same instant.
	var batch []storage.ArchiveEntry
	for i := range 50 {
		batch = append(batch,
			storage.ArchiveEntry{Owner: "alice@x", With: "bob@x", When: when, Value: []byte(fmt.Sprint("out", i))},
			storage.ArchiveEntry{Owner: "bob@x", With: "alice@x", When: when, Value: []byte(fmt.Sprint("in", i))})
	}
	ids, err := a.AppendBatch(c, batch)
	must(t, err)
	if len(ids) != len(batch) {
		t.Fatalf("AppendBatch returned %d IDs for %d entries", len(ids), len(batch))
	}
	for _, owner := range []string{"alice@x", "bob@x"} {
		p, err := a.Query(c, owner, storage.ArchiveQuery{Count: true})
		must(t, err)
		if p.Total != 50 || len(p.Entries) != 50 {
			t.Fatalf("%s has %d entries (total %d), want 50", owner, len(p.Entries), p.Total)
		}
		prefix := "out"
		if owner == "bob@x" {
			prefix = "in"
		}
		for i, e := range p.Entries {
			if string(e.Value) != fmt.Sprint(prefix, i) || !e.When.Equal(when) {
				t.Fatalf("%s entry %d = %q at %v: the batch's order or time was lost", owner, i, e.Value, e.When)
			}
		}
	}
	for i, e := range batch {
		got, err := a.Get(c, e.Owner, ids[i])
		must(t, err)
		if !bytes.Equal(got.Value, e.Value) {
			t.Fatalf("ID %d of entry %d reads %q, want %q", ids[i], i, got.Value, e.Value)
		}
	}
	if ids, err := a.AppendBatch(c, nil); err != nil || len(ids) != 0 {
		t.Fatalf("empty batch = %v, %v", ids, err)
	}
	// A batch with an invalid entry stores nothing.
	_, err = a.AppendBatch(c, []storage.ArchiveEntry{{Owner: "carol@x"}, {Value: []byte("no owner")}})
	if err == nil {
		t.Fatal("a batch with an entry without owner was accepted")
	}
	if p, _ := a.Query(c, "carol@x", storage.ArchiveQuery{}); len(p.Entries) != 0 {
		t.Fatalf("a refused batch stored %d entries", len(p.Entries))
	}
}

// testArchiveGivenIDs: the message archive makes IDs before it writes
// (the live message carries one as its stanza-id) and writes them in
// batches whose order need not follow the IDs; the store keeps them, and
// moves only an entry whose ID the owner already has.
func testArchiveGivenIDs(t *testing.T, s storage.Store) {
	c := ctx(t)
	a := s.Archive("mam")
	first := storage.NewArchiveID(when)
	second := storage.NewArchiveID(when.Add(time.Millisecond))
	third := storage.NewArchiveID(when.Add(time.Second))
	forBob := storage.NewArchiveID(when.Add(2 * time.Millisecond))
	ids, err := a.AppendBatch(c, []storage.ArchiveEntry{
		{ID: third, Owner: "dora@x", With: "erin@x", Value: []byte("3")},
		{ID: second, Owner: "dora@x", With: "erin@x", Value: []byte("2")},
		{ID: first, Owner: "dora@x", With: "erin@x", Value: []byte("1")},
		{ID: forBob, Owner: "erin@x", With: "dora@x", Value: []byte("1 for bob")},
		{Owner: "erin@x", With: "dora@x", When: when, Value: []byte("assigned")},
	})
	must(t, err)
	if ids[0] != third || ids[1] != second || ids[2] != first || ids[3] != forBob {
		t.Fatalf("given IDs %v came back as %v", []int64{third, second, first, forBob}, ids[:4])
	}
	p, err := a.Query(c, "dora@x", storage.ArchiveQuery{})
	must(t, err)
	if got := string(p.Entries[0].Value) + string(p.Entries[1].Value) + string(p.Entries[2].Value); got != "123" ||
		!p.Entries[0].When.Equal(storage.ArchiveIDTime(first)) {
		t.Fatalf("dora's archive reads %q (first at %v), want 123 in ID order", got, p.Entries[0].When)
	}
	// An ID already taken: the entry moves, nothing is
	// overwritten, and the returned ID says where it went.
	id, err := a.Append(c, storage.ArchiveEntry{ID: first, Owner: "dora@x", With: "carol@x", Value: []byte("dup")})
	must(t, err)
	if id == first {
		t.Fatal("a colliding given ID was reported as kept")
	}
	if e, err := a.Get(c, "dora@x", first); err != nil || string(e.Value) != "1" {
		t.Fatalf("the entry under the colliding ID = %q, %v; want the first one", e.Value, err)
	}
	if e, err := a.Get(c, "dora@x", id); err != nil || string(e.Value) != "dup" {
		t.Fatalf("the moved entry = %q, %v", e.Value, err)
	}
}

// testArchiveOneInstant: many entries for one owner at one instant that
// is not the process's latest (slot expiry times of an upload service
// under a stopped clock, delayed messages' stamps), interleaved with
// entries at a later instant, so each starts at a random ID of its
// microsecond and most collide: every one is stored, at its time. A
// store that stepped one ID at a time ran out of tries in a long run of
// taken IDs (upload TestRecountDuringTraffic, CI).
func testArchiveOneInstant(t *testing.T, s storage.Store) {
	c := ctx(t)
	a := s.Archive("index")
	const n = 300
	ids := map[int64]bool{}
	for i := range n {
		id, err := a.Append(c, storage.ArchiveEntry{Owner: "slots@x", When: when, Value: []byte(fmt.Sprint(i))})
		must(t, err)
		if ids[id] {
			t.Fatalf("entry %d got ID %d twice", i, id)
		}
		ids[id] = true
		_, err = a.Append(c, storage.ArchiveEntry{Owner: "slots@x", When: when.Add(time.Hour), Value: []byte("later")})
		must(t, err)
	}
	p, err := a.Query(c, "slots@x", storage.ArchiveQuery{End: when, Count: true})
	must(t, err)
	if p.Total != n {
		t.Fatalf("%d entries at the instant, want %d", p.Total, n)
	}
	for _, e := range p.Entries {
		if !e.When.Equal(when) {
			t.Fatalf("entry %q stored at %v, want %v", e.Value, e.When, when)
		}
	}
}

func testArchiveDelete(t *testing.T, s storage.Store) {
	c := ctx(t)
	a := s.Archive("mam")
	var ids []int64
	for i := range 6 {
		for _, owner := range []string{"alice@x", "bob@x"} {
			id, err := a.Append(c, storage.ArchiveEntry{Owner: owner, With: "w@x", When: when.Add(time.Duration(i) * time.Hour)})
			must(t, err)
			if owner == "alice@x" {
				ids = append(ids, id)
			}
		}
	}
	_, err := s.Archive("muc").Append(c, storage.ArchiveEntry{Owner: "alice@x", When: when})
	must(t, err)
	count := func(store, owner string) int {
		p, err := s.Archive(store).Query(c, owner, storage.ArchiveQuery{Count: true})
		must(t, err)
		return p.Total
	}
	must(t, a.Delete(c, "alice@x", ids[5]))
	wantErr(t, a.Delete(c, "alice@x", ids[5]), storage.ErrNotFound)
	wantErr(t, a.Delete(c, "bob@x", ids[4]), storage.ErrNotFound) // alice's ID
	n, err := a.DeleteBefore(c, "alice@x", when.Add(2*time.Hour))
	must(t, err)
	if n != 2 || count("mam", "alice@x") != 3 || count("mam", "bob@x") != 6 {
		t.Fatalf("DeleteBefore(alice, +2h) = %d; alice has %d, bob %d", n, count("mam", "alice@x"), count("mam", "bob@x"))
	}
	n, err = a.DeleteBefore(c, "", when.Add(3*time.Hour))
	must(t, err)
	if n != 4 || count("mam", "alice@x") != 2 || count("mam", "bob@x") != 3 || count("muc", "alice@x") != 1 {
		t.Fatalf("DeleteBefore(all, +3h) = %d; alice %d, bob %d, muc %d", n, count("mam", "alice@x"), count("mam", "bob@x"), count("muc", "alice@x"))
	}
	n, err = a.DeleteOwner(c, "bob@x")
	must(t, err)
	if n != 3 || count("mam", "bob@x") != 0 || count("mam", "alice@x") != 2 {
		t.Fatalf("DeleteOwner(bob) = %d", n)
	}
}

// concurrentUpdateKV increments one counter from many goroutines through
// two stores: compare-and-set must lose no increment.
func concurrentUpdateKV(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		st := a
		if w%2 == 1 {
			st = b
		}
		kv := st.KeyValue("counter")
		wg.Go(func() {
			for range each {
				err := storage.UpdateKV(c, kv, "alice@x", "n", storage.Limits{}, func(old []byte, _ bool) ([]byte, bool, error) {
					n, _ := strconv.Atoi(string(old))
					return []byte(strconv.Itoa(n + 1)), false, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	e, err := a.KeyValue("counter").Get(c, "alice@x", "n")
	must(t, err)
	if string(e.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d increments", e.Value, workers*each)
	}
}

// concurrentMapQuota writes distinct items from many goroutines through
// two stores under an item quota: exactly the quota's worth must land.
func concurrentMapQuota(t *testing.T, a, b storage.Store) {
	c := ctx(t)
	const limit, workers, each = 10, 6, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for w := range workers {
		st := a
		if w%2 == 1 {
			st = b
		}
		m := st.Map("upload")
		wg.Go(func() {
			for i := range each {
				_, err := m.Set(c, "alice@x", fmt.Sprint("c", w%3), fmt.Sprint(w, "-", i), []byte("slot"), storage.Limits{Items: limit})
				switch {
				case err == nil:
					mu.Lock()
					stored++
					mu.Unlock()
				case !errors.Is(err, storage.ErrQuotaExceeded):
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := 0
	m := a.Map("upload")
	colls, err := m.Collections(c, "alice@x")
	must(t, err)
	for _, coll := range colls {
		n, err := m.Count(c, "alice@x", coll)
		must(t, err)
		total += n
	}
	if stored != limit || total != limit {
		t.Fatalf("%d writes succeeded and %d items stored under a quota of %d", stored, total, limit)
	}
}
