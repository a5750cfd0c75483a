package storage

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound means the record does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists means a record with that key already exists.
	ErrExists = errors.New("storage: already exists")
	// ErrQuotaExceeded means a per-user limit (offline queue, roster) is
	// reached. The roster's own errors below wrap it.
	ErrQuotaExceeded = errors.New("storage: quota exceeded")
	// ErrRosterFull means the roster has RosterQuota.Items rows.
	ErrRosterFull = fmt.Errorf("%w: roster full", ErrQuotaExceeded)
	// ErrTooManyPending means RosterQuota.PendingIn requests wait already.
	ErrTooManyPending = fmt.Errorf("%w: too many pending subscription requests", ErrQuotaExceeded)
	// ErrRosterItemTooLarge means an item is over RosterQuota.ItemBytes.
	ErrRosterItemTooLarge = fmt.Errorf("%w: roster item too large", ErrQuotaExceeded)
	// ErrUnavailable means the database could not be reached or did not
	// answer in time. Callers answer with internal-server-error or
	// resource-constraint and keep the session.
	ErrUnavailable = errors.New("storage: database unavailable")
	// ErrConflict means a compare-and-set found another version than the
	// one it was given: someone wrote in between. Read again and retry.
	ErrConflict = errors.New("storage: version conflict")
)

// QuotaError is what a module store's write returns when it would pass
// one of its Limits; errors.Is(err, ErrQuotaExceeded) holds.
type QuotaError struct {
	// Limit is "items" or "bytes".
	Limit string
	// Max is the limit's value.
	Max int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("storage: quota exceeded: more than %d %s", e.Max, e.Limit)
}

// Is makes errors.Is(err, ErrQuotaExceeded) true.
func (e *QuotaError) Is(target error) bool { return target == ErrQuotaExceeded }
