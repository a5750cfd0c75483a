// Package shared holds the rules both stores apply the same way, so the
// embedded store and PostgreSQL cannot drift apart on them.
package shared

import (
	"crypto/rand"
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

// ArchiveID makes a message archive ID when the caller gives none: time
// ordered, with 64 random bits so two nodes never collide.
func ArchiveID(t time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x%x", t.UnixMicro(), b)
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
