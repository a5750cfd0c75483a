package c2s

import "time"

// SetReleaseWait shortens how long a node that handed a session over
// waits for the release, and returns the restore.
func SetReleaseWait(d time.Duration) (restore func()) {
	old := releaseWait
	releaseWait = d
	return func() { releaseWait = old }
}
