package push

import "time"

// SetClosedGrace sets how long a closed session's covered messages are
// kept, and returns the function that restores it.
func SetClosedGrace(d time.Duration) func() {
	old := closedGrace
	closedGrace = d
	return func() { closedGrace = old }
}
