package shared

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// Items is what a backend implements for one named store of the table
// both key/value and map stores live in; KeyValue and Map make the public
// stores of it, so both backends present them the same way.
type Items interface {
	Get(ctx context.Context, owner, coll, key string) (value []byte, version int64, err error)
	// Set writes; with cas only over version (0: only when absent), else
	// storage.ErrConflict. Under lim it counts, checks (CheckQuota) and
	// evicts in one transaction with the owner's store locked.
	Set(ctx context.Context, owner, coll, key string, value []byte, lim storage.Limits, cas bool, version int64) (int64, error)
	// Delete removes one item; storage.ErrNotFound when absent.
	Delete(ctx context.Context, owner, coll, key string) error
	// Keys returns a collection's keys, sorted.
	Keys(ctx context.Context, owner, coll string) ([]string, error)
	DeleteCollection(ctx context.Context, owner, coll string) (int, error)
	List(ctx context.Context, owner, coll string, q storage.MapQuery) ([]storage.MapItem, error)
	Count(ctx context.Context, owner, coll string) (int, error)
	Collections(ctx context.Context, owner string) ([]string, error)
}

// KeyValue is the key/value store over a backend's items: the collection
// "" of a map.
func KeyValue(it Items) storage.KeyValue { return kvStore{it} }

// Map is the map store over a backend's items.
func Map(it Items) storage.Map { return mapStore{it} }

type kvStore struct{ it Items }

func (kv kvStore) Get(ctx context.Context, owner, key string) (storage.KVEntry, error) {
	v, ver, err := kv.it.Get(ctx, owner, "", key)
	if err != nil {
		return storage.KVEntry{}, err
	}
	return storage.KVEntry{Value: v, Version: ver}, nil
}

func (kv kvStore) Set(ctx context.Context, owner, key string, value []byte, lim storage.Limits) (int64, error) {
	return kv.it.Set(ctx, owner, "", key, value, lim, false, 0)
}

func (kv kvStore) CompareAndSet(ctx context.Context, owner, key string, version int64, value []byte, lim storage.Limits) (int64, error) {
	return kv.it.Set(ctx, owner, "", key, value, lim, true, version)
}

func (kv kvStore) Delete(ctx context.Context, owner, key string) error {
	return kv.it.Delete(ctx, owner, "", key)
}

func (kv kvStore) Keys(ctx context.Context, owner string) ([]string, error) {
	return kv.it.Keys(ctx, owner, "")
}

type mapStore struct{ Items }

func (m mapStore) Get(ctx context.Context, owner, coll, key string) (storage.MapItem, error) {
	v, ver, err := m.Items.Get(ctx, owner, coll, key)
	if err != nil {
		return storage.MapItem{}, err
	}
	return storage.MapItem{Collection: coll, Key: key, Value: v, Version: ver}, nil
}

func (m mapStore) Set(ctx context.Context, owner, coll, key string, value []byte, lim storage.Limits) (int64, error) {
	return m.Items.Set(ctx, owner, coll, key, value, lim, false, 0)
}

// Archive is what a backend implements for one named archive store;
// ArchiveStore adds what both backends do the same way.
type Archive interface {
	// Insert adds valid entries with the IDs given, in one transaction,
	// moving an entry whose ID collides to NextArchiveID and updating ids.
	Insert(ctx context.Context, es []storage.ArchiveEntry, ids []int64) error
	Get(ctx context.Context, owner string, id int64) (storage.ArchiveEntry, error)
	// Page reads the matches in [lo, hi) of q.With, oldest first or (q.Last)
	// newest first, at most limit (-1: all), and the count of [clo, chi)
	// when q.Count.
	Page(ctx context.Context, owner string, q storage.ArchiveQuery, lo, hi int64, limit int, clo, chi int64) (entries []storage.ArchiveEntry, total int, err error)
	Update(ctx context.Context, owner string, id int64, value []byte) error
	Delete(ctx context.Context, owner string, id int64) error
	DeleteOwner(ctx context.Context, owner string) (int, error)
	DeleteBefore(ctx context.Context, owner string, before time.Time) (int, error)
}

// ArchiveStore is the archive store over a backend's archive.
func ArchiveStore(a Archive) storage.Archive { return archiveStore{a} }

type archiveStore struct{ Archive }

func (a archiveStore) Append(ctx context.Context, e storage.ArchiveEntry) (int64, error) {
	ids, err := a.AppendBatch(ctx, []storage.ArchiveEntry{e})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

func (a archiveStore) AppendBatch(ctx context.Context, es []storage.ArchiveEntry) ([]int64, error) {
	if len(es) == 0 {
		return nil, nil
	}
	for _, e := range es {
		if e.Owner == "" {
			return nil, errors.New("storage: archive entry without owner")
		}
	}
	ids := NewArchiveIDs(es)
	if err := a.Insert(ctx, es, ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// Query turns the query's bounds into ID ranges, reads one entry more than
// the limit to know whether the page is the last in its direction, and
// returns the page oldest first.
func (a archiveStore) Query(ctx context.Context, owner string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	lo, hi := ArchiveIDRange(q)
	clo, chi := ArchiveIDRange(storage.ArchiveQuery{Start: q.Start, End: q.End})
	limit := -1
	if q.Limit > 0 {
		limit = q.Limit + 1
	}
	entries, total, err := a.Page(ctx, owner, q, lo, orMax(hi), limit, clo, orMax(chi))
	if err != nil {
		return storage.ArchivePage{}, err
	}
	page := storage.ArchivePage{Entries: entries, Total: -1, Complete: q.Limit <= 0 || len(entries) <= q.Limit}
	if q.Count {
		page.Total = total
	}
	if !page.Complete {
		page.Entries = page.Entries[:q.Limit]
	}
	if q.Last {
		Reverse(page.Entries)
	}
	for i := range page.Entries {
		e := &page.Entries[i]
		e.Owner, e.When = owner, storage.ArchiveIDTime(e.ID)
		if e.Value == nil {
			e.Value = []byte{}
		}
	}
	return page, nil
}

// PageQuery picks the page query of a backend for q: queries holds the
// forward, backward (Last), with, and with-backward forms.
func PageQuery(q storage.ArchiveQuery, queries [4]string) string {
	i := 0
	if q.Last {
		i = 1
	}
	if q.With != "" {
		i += 2
	}
	return queries[i]
}

// orMax makes an open upper bound (0) the largest ID.
func orMax(hi int64) int64 {
	if hi == 0 {
		return math.MaxInt64
	}
	return hi
}

// MaxIDTries bounds the retries of an append whose ID collided: each retry
// goes past the highest ID the owner has in that microsecond, so it
// collides again only if another node or process inserted in that same
// microsecond meanwhile.
const MaxIDTries = 8

// InsertArchiveEntry inserts one entry with insert (which reports whether
// a row was added). When the ID is taken it moves the entry past the
// owner's highest ID in the same microsecond (highest reports that ID in
// [lo, hi), or ok false for none), so the entry keeps its time and sorts
// after what is already there. Stepping one ID at a time would not do:
// entries made for one time in an earlier microsecond than the process's
// last (an expiry time, a delayed message's stamp) start at a random ID
// that can land in a long run of taken ones.
func InsertArchiveEntry(store string, e storage.ArchiveEntry, id *int64, insert func(id int64) (bool, error), highest func(lo, hi int64) (top int64, ok bool, err error)) error {
	for range MaxIDTries {
		ok, err := insert(*id)
		if err != nil || ok {
			return err
		}
		us := *id >> storage.ArchiveIDShift
		lo, hi := us<<storage.ArchiveIDShift, (us+1)<<storage.ArchiveIDShift
		top, found, err := highest(lo, hi)
		if err != nil {
			return err
		}
		if !found {
			top = *id // deleted meanwhile: the next ID will do
		}
		next := NextArchiveID(max(top, *id))
		if next >= hi {
			return fmt.Errorf("storage: archive %s: every id of %s's microsecond %s is taken", store, e.Owner, storage.ArchiveIDTime(*id).Format(time.RFC3339Nano))
		}
		*id = next
	}
	return fmt.Errorf("storage: archive %s: no free id for %s after %d tries", store, e.Owner, MaxIDTries)
}
