// Package shared holds the rules both stores apply the same way, so the
// embedded store and PostgreSQL cannot drift apart on them.
package shared

import (
	"fmt"
	"slices"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// NormalizeRosterItem checks and canonicalises an item fn returned: the
// owner and contact are the ones the update was for, an empty subscription
// is "none", and an empty group list is nil.
func NormalizeRosterItem(it storage.RosterItem, owner, contact string) (storage.RosterItem, error) {
	it.Owner, it.Contact = owner, contact
	switch it.Subscription {
	case "":
		it.Subscription = storage.SubNone
	case storage.SubNone, storage.SubTo, storage.SubFrom, storage.SubBoth:
	default:
		return it, fmt.Errorf("storage: invalid subscription %q", it.Subscription)
	}
	if len(it.Groups) == 0 {
		it.Groups = nil
	} else {
		it.Groups = slices.Clone(it.Groups)
	}
	return it, nil
}

// EqualRosterItem reports whether two items store the same state.
func EqualRosterItem(a, b storage.RosterItem) bool {
	return a.Owner == b.Owner && a.Contact == b.Contact && a.Name == b.Name &&
		a.Subscription == b.Subscription && a.PendingOut == b.PendingOut &&
		a.PendingIn == b.PendingIn && a.InRoster == b.InRoster &&
		slices.Equal(a.Groups, b.Groups)
}

// OwnerRange returns the half-open key range [lo, hi) holding every owner
// key of the form "username@domain". Stores key per-user rows by the
// username or by the bare JID (the roster's Owner is a bare JID); a
// nodeprepped username never contains '@', and '@'+1 is 'A', so DeleteUser
// removes both forms with one index range scan.
func OwnerRange(username string) (lo, hi string) {
	return username + "@", username + "A"
}

// Now is the time stores stamp records with: UTC at microsecond precision,
// the precision both databases keep.
func Now() time.Time { return Stamp(time.Now()) }

// Stamp rounds a time to what the stores keep.
func Stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// NewArchiveID is storage.NewArchiveID.
func NewArchiveID(t time.Time) int64 { return storage.NewArchiveID(t) }

// NewArchiveIDs makes the IDs of a batch of entries (a zero When is now):
// entries whose times fall in the same microsecond get increasing IDs in
// the order given, whatever time they are for. An entry that comes with
// an ID (made by the caller with storage.NewArchiveID) keeps it; Insert
// moves it only if it collides.
func NewArchiveIDs(es []storage.ArchiveEntry) []int64 {
	now := Now()
	ids := make([]int64, len(es))
	last := map[int64]int64{} // microsecond → last ID given in it
	for i, e := range es {
		t := e.When
		if t.IsZero() {
			t = now
		}
		if e.ID != 0 {
			ids[i] = e.ID // shown to clients already: kept as given
			continue
		}
		id := NewArchiveID(t)
		us := id >> storage.ArchiveIDShift
		if prev, ok := last[us]; ok && id <= prev {
			id = prev + 1
		}
		last[us] = id
		ids[i] = id
	}
	return ids
}

// NextArchiveID is storage.NextArchiveID.
func NextArchiveID(id int64) int64 { return storage.NextArchiveID(id) }

// ArchiveIDRange turns a query's time and ID bounds into one half-open ID
// range [lo, hi); hi 0 means none.
func ArchiveIDRange(q storage.ArchiveQuery) (lo, hi int64) {
	if !q.Start.IsZero() {
		lo = storage.ArchiveIDAt(q.Start)
	}
	if q.AfterID > 0 && q.AfterID+1 > lo {
		lo = q.AfterID + 1
	}
	if !q.End.IsZero() {
		hi = storage.ArchiveIDAt(q.End.Add(time.Microsecond))
	}
	if q.BeforeID > 0 && (hi == 0 || q.BeforeID < hi) {
		hi = q.BeforeID
	}
	return lo, hi
}

// CheckQuota reports whether an owner with items entries of size bytes
// (not counting the one being written, nor what the write evicts) may
// write a value of size n under lim: nil, or a *storage.QuotaError.
func CheckQuota(lim storage.Limits, items int, bytes int64, n int) error {
	if lim.Items > 0 && items+1 > lim.Items {
		return &storage.QuotaError{Limit: "items", Max: int64(lim.Items)}
	}
	if lim.Bytes > 0 && bytes+int64(n) > lim.Bytes {
		return &storage.QuotaError{Limit: "bytes", Max: lim.Bytes}
	}
	return nil
}

// Limited reports whether a write under lim must lock the owner and count.
func Limited(lim storage.Limits) bool { return lim.Items > 0 || lim.Bytes > 0 || lim.Max > 0 }

// Reverse reverses a slice in place (a newest-first scan read back oldest
// first).
func Reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// RosterChecks is what a roster write must check against its quota:
// CheckRosterWrite decides it from the item before and after, and the
// store counts rows only when a check needs them.
type RosterChecks struct {
	Items     bool // a row is created: count the owner's rows
	PendingIn bool // a pending inbound request is added: count them
}

// CheckRosterWrite checks what it can without counting (the size of the
// item) and says which counts the store must make. An item already over
// ItemBytes that does not grow stays writable, so a lowered quota never
// locks an item.
func CheckRosterWrite(q storage.RosterQuota, cur storage.RosterItem, exists bool, upd storage.RosterItem) (RosterChecks, error) {
	if q.ItemBytes > 0 && upd.InRoster {
		size := storage.RosterItemSize(upd)
		if size > q.ItemBytes && (!exists || !cur.InRoster || size > storage.RosterItemSize(cur)) {
			return RosterChecks{}, storage.ErrRosterItemTooLarge
		}
	}
	return RosterChecks{
		Items:     q.Items > 0 && !exists,
		PendingIn: q.PendingIn > 0 && upd.PendingIn && !(exists && cur.PendingIn),
	}, nil
}
