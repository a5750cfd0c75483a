package storage

import "errors"

var (
	// ErrNotFound means the record does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists means a record with that key already exists.
	ErrExists = errors.New("storage: already exists")
	// ErrQuotaExceeded means a per-user limit (offline queue) is reached.
	ErrQuotaExceeded = errors.New("storage: quota exceeded")
	// ErrUnavailable means the database could not be reached or did not
	// answer in time. Callers answer with internal-server-error or
	// resource-constraint and keep the session.
	ErrUnavailable = errors.New("storage: database unavailable")
)
