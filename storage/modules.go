package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// Modules opens the general stores XEP modules keep their state in, the
// way Prosody's modules call module:open_store(name, kind): a module asks
// for a store by name and kind and never gets a table of its own, so a new
// module changes neither this interface, nor the backends, nor their
// migrations. Opening is free (no database call) and a store needs no
// creating: a name that was never written is simply empty.
//
// Every store is keyed first by an owner: the account's bare JID for
// per-user state (Users.DeleteUser clears every store's entries of the
// account, owner = username or "username@…"), or another name the module
// picks for state that belongs to no account. Such a name must not look
// like an account's bare JID ("room@conference.example.com" does): put the
// service first ("conference.example.com/room") so deleting the account
// "room" leaves it alone.
//
// Store names are short ASCII words ("vcard", "private", "pep"); a name
// belongs to one kind (a key/value store and a map of the same name would
// share entries).
type Modules interface {
	// KeyValue opens a key/value store: one value per (owner, key).
	KeyValue(name string) KeyValue
	// Map opens a map store: keyed items in collections under an owner,
	// ordered by when each was last written.
	Map(name string) Map
	// Archive opens an archive store: append-only entries per owner,
	// ordered by a server-assigned, time-ordered ID.
	Archive(name string) Archive
}

// Limits bound what one owner keeps in a key/value or map store; the store
// checks them inside the write, under the owner's lock, so concurrent
// writers on different nodes never pass them together. Zero fields mean no
// limit.
type Limits struct {
	// Items bounds the owner's entries in the store, every collection
	// together. A write that would pass it fails with a *QuotaError.
	Items int
	// Bytes bounds the total size of the owner's values in the store.
	Bytes int64
	// Max, for maps, keeps at most Max items in the written collection by
	// deleting the oldest (least recently written) ones in the same
	// transaction (pubsub max_items). What it deletes does not count
	// against Items and Bytes.
	Max int
}

// KVEntry is a value with its version, which changes on every write and is
// never reused for the same store, so CompareAndSet cannot be fooled by a
// delete and a re-create in between.
type KVEntry struct {
	Value   []byte
	Version int64
}

// KeyValue is a key/value store (Prosody's keyval): vCards, private XML
// fragments, last activity.
type KeyValue interface {
	// Get returns the owner's value under key; ErrNotFound when none.
	Get(ctx context.Context, owner, key string) (KVEntry, error)
	// Set writes the value and returns its new version. A write that would
	// pass lim fails with a *QuotaError (errors.Is ErrQuotaExceeded) and
	// changes nothing.
	Set(ctx context.Context, owner, key string, value []byte, lim Limits) (int64, error)
	// CompareAndSet writes only when the stored version is still version
	// (0: only when the key is absent), else ErrConflict. For
	// read-modify-write, see UpdateKV.
	CompareAndSet(ctx context.Context, owner, key string, version int64, value []byte, lim Limits) (int64, error)
	// Delete removes the key; ErrNotFound when it was absent.
	Delete(ctx context.Context, owner, key string) error
	// Keys returns the owner's keys, sorted bytewise.
	Keys(ctx context.Context, owner string) ([]string, error)
}

// MapItem is one item of a map store.
type MapItem struct {
	Collection string
	Key        string
	Value      []byte
	// Version changes on every write and orders the items of a
	// collection by when they were last written.
	Version int64
}

// MapQuery selects items of one collection, in write order.
type MapQuery struct {
	// Limit bounds how many items come back; 0 returns all.
	Limit int
	// Newest returns the most recently written items first ("last N
	// items"); otherwise the oldest come first.
	Newest bool
}

// Map is a map store (Prosody's map, with collections and ordering):
// pubsub nodes and items, room affiliations, upload slots. An owner's items
// are grouped in collections ("" is a collection like any other); limits
// count the owner's items across all of them, Limits.Max one collection.
type Map interface {
	// Get returns one item; ErrNotFound when absent.
	Get(ctx context.Context, owner, collection, key string) (MapItem, error)
	// Set writes an item (moving it to the newest position) and returns
	// its version. Past lim it fails with a *QuotaError and changes
	// nothing; with lim.Max it evicts the oldest items of the collection.
	Set(ctx context.Context, owner, collection, key string, value []byte, lim Limits) (int64, error)
	// Delete removes one item; ErrNotFound when it was absent.
	Delete(ctx context.Context, owner, collection, key string) error
	// DeleteCollection removes a collection's items and returns how many.
	DeleteCollection(ctx context.Context, owner, collection string) (int, error)
	// List returns a collection's items in write order.
	List(ctx context.Context, owner, collection string, q MapQuery) ([]MapItem, error)
	// Count returns how many items a collection holds.
	Count(ctx context.Context, owner, collection string) (int, error)
	// Collections returns the owner's non-empty collections, sorted.
	Collections(ctx context.Context, owner string) ([]string, error)
}

// ArchiveEntry is one entry of an archive store: a message of the message
// archive, a room's history line, a queued stanza.
type ArchiveEntry struct {
	// ID is assigned by the store on append: unique in the owner's
	// archive, ordered by When (see NewArchiveID), shown to clients as
	// FormatArchiveID(ID). A caller that must show the ID before the
	// entry is written (the message archive stamps it on the live
	// message as its XEP-0359 stanza-id, then writes in a batch) makes it
	// with NewArchiveID and passes it: the store keeps it unless that ID
	// is taken (another node made the same one for the same owner in the
	// same microsecond), and returns the ID it used.
	ID    int64
	Owner string
	// With is what queries filter on (the contact's bare JID for MAM).
	With string
	// When is the entry's time; zero on append means now. The store keeps
	// it in the ID, at microsecond precision.
	When  time.Time
	Value []byte
}

// ArchiveQuery selects entries of one owner. Every bound is optional;
// time bounds are inclusive, ID bounds exclusive (RSM after and before).
type ArchiveQuery struct {
	With       string
	Start, End time.Time
	AfterID    int64
	BeforeID   int64
	// Limit bounds the page; 0 returns every match.
	Limit int
	// Last takes the page from the newest end of the matches (RSM
	// <before/>, "the last 50"); the page still comes oldest first.
	Last bool
	// Count asks for Total: how many entries match With, Start and End,
	// whatever the ID bounds and Limit (RSM <count/>). It costs an index
	// scan over the matches, so ask only when the client needs it.
	Count bool
}

// ArchivePage is a query's answer.
type ArchivePage struct {
	// Entries are oldest first.
	Entries []ArchiveEntry
	// Total is the count asked for with Count, or -1.
	Total int
	// Complete is true when no further match lies beyond the page in the
	// query's direction (after the page, or before it with Last): MAM's
	// complete='true'.
	Complete bool
}

// Archive is an archive store (Prosody's archive): the message archive,
// room history, queues. Entries are never changed in place except through
// Update (a tombstone for a retracted message).
type Archive interface {
	// Append adds an entry (a zero ID is assigned, see ArchiveEntry.ID)
	// and returns its ID. The entry is committed when Append returns.
	Append(ctx context.Context, e ArchiveEntry) (int64, error)
	// AppendBatch adds several entries, of any owners, in one transaction
	// (group commit: one round trip and one fsync for all of them), and
	// returns their IDs in order. Entries of one owner with the same When
	// get IDs in the order given.
	AppendBatch(ctx context.Context, es []ArchiveEntry) ([]int64, error)
	// Get returns one entry; ErrNotFound.
	Get(ctx context.Context, owner string, id int64) (ArchiveEntry, error)
	// Query returns a page of the owner's entries.
	Query(ctx context.Context, owner string, q ArchiveQuery) (ArchivePage, error)
	// Update replaces one entry's value; ErrNotFound.
	Update(ctx context.Context, owner string, id int64, value []byte) error
	// Delete removes one entry; ErrNotFound.
	Delete(ctx context.Context, owner string, id int64) error
	// DeleteOwner removes every entry of the owner and returns how many.
	DeleteOwner(ctx context.Context, owner string) (int, error)
	// DeleteBefore removes entries older than before, of one owner or of
	// every owner when owner is "", and returns how many (expiry).
	DeleteBefore(ctx context.Context, owner string, before time.Time) (int, error)
}

// Archive IDs: the microseconds since the Unix epoch, shifted left by
// ArchiveIDShift bits, plus a number in those low bits that keeps IDs made
// in the same microsecond apart (a per-process counter and a random start,
// so two nodes rarely pick the same; a store retries a collision with
// another ID). An ID therefore sorts by time, a time range is an ID range
// (no index on time is needed), and the positive int64 range lasts until
// the year 2255.
const ArchiveIDShift = 10

// lastArchiveID is the last ID NewArchiveID made in this process.
var lastArchiveID atomic.Int64

// NewArchiveID makes the ID of an archive entry at t (see ArchiveIDShift):
// t's microseconds, and in the low bits a random number, or one more than
// the last ID made in the same microsecond, so the IDs one process makes
// keep their order and two nodes rarely collide (a store moves a colliding
// entry to NextArchiveID).
func NewArchiveID(t time.Time) int64 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	id := ArchiveIDAt(t) | int64(b[0]&0x01)<<8 | int64(b[1])
	for {
		last := lastArchiveID.Load()
		if id>>ArchiveIDShift == last>>ArchiveIDShift && id <= last {
			id = last + 1
		}
		if id <= last || lastArchiveID.CompareAndSwap(last, id) {
			return id
		}
	}
}

// NextArchiveID is the ID a store tries after id collided: the next one,
// which sorts right after it.
func NextArchiveID(id int64) int64 {
	for {
		last := lastArchiveID.Load()
		next := max(id, last) + 1
		if next>>ArchiveIDShift != id>>ArchiveIDShift {
			next = id + 1 // do not drift into a later microsecond for an old time
		}
		if next <= last || lastArchiveID.CompareAndSwap(last, next) {
			return next
		}
	}
}

// ArchiveIDAt returns the smallest ID an entry at t can have; entries at t
// or later have IDs >= ArchiveIDAt(t).
func ArchiveIDAt(t time.Time) int64 { return t.UnixMicro() << ArchiveIDShift }

// ArchiveIDTime returns the time an ID was made for.
func ArchiveIDTime(id int64) time.Time { return time.UnixMicro(id >> ArchiveIDShift).UTC() }

// FormatArchiveID renders an ID for clients (the MAM/RSM id): 16 lowercase
// hex digits, so the strings sort like the IDs.
func FormatArchiveID(id int64) string {
	s := strconv.FormatUint(uint64(id), 16)
	if len(s) < 16 {
		s = "0000000000000000"[len(s):] + s
	}
	return s
}

// ParseArchiveID reads an ID rendered by FormatArchiveID.
func ParseArchiveID(s string) (int64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("storage: archive id %q: want 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 63)
	if err != nil {
		return 0, fmt.Errorf("storage: archive id %q: %w", s, err)
	}
	return int64(v), nil
}

// UpdateKV reads a key, lets fn compute the new value from the old one
// (exists false: none), and writes it with CompareAndSet, trying again
// while another writer got in between. fn may run more than once; it
// returns remove=true to delete the key instead.
func UpdateKV(ctx context.Context, kv KeyValue, owner, key string, lim Limits,
	fn func(old []byte, exists bool) (value []byte, remove bool, err error)) error {
	for {
		cur, err := kv.Get(ctx, owner, key)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		value, remove, err := fn(cur.Value, exists)
		if err != nil {
			return err
		}
		if remove {
			if !exists {
				return nil
			}
			// Delete has no version check; a concurrent write between
			// Get and Delete is overwritten, as a later delete would.
			if err := kv.Delete(ctx, owner, key); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			return nil
		}
		_, err = kv.CompareAndSet(ctx, owner, key, cur.Version, value, lim)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
