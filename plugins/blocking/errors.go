package blocking

import "errors"

var (
	// errBadRefresh means the refresh_interval setting is not a
	// non-negative duration.
	errBadRefresh = errors.New("blocking: refresh_interval must be a duration such as \"1m\"")
	// errBadChange means another node sent a change event we cannot read.
	errBadChange = errors.New("blocking: malformed block list change event")
	// errStopped means the plugin is stopping and reads no more lists.
	errStopped = errors.New("blocking: stopped")
)
