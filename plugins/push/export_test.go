package push

import "time"

// SetClosedGrace sets how long a closed session's covered messages are
// kept, and returns the function that restores it.
func SetClosedGrace(d time.Duration) func() {
	old := closedGrace
	closedGrace = d
	return func() { closedGrace = old }
}

// SetDeferBackoff sets the retry backoff of deferred notifications, and
// returns the function that restores it.
func SetDeferBackoff(lo, hi time.Duration) func() {
	oldLo, oldHi := deferBackoffMin, deferBackoffMax
	deferBackoffMin, deferBackoffMax = lo, hi
	return func() { deferBackoffMin, deferBackoffMax = oldLo, oldHi }
}

// Deferred returns how many notifications wait for the store.
func (p *Plugin) Deferred() int { return p.deferredNow() }
