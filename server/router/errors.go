package router

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

var (
	// ErrNoSession means the full JID is not bound on this node.
	ErrNoSession = errors.New("router: no such local session")
	// ErrRoutes means the cluster routing table could not be read.
	ErrRoutes = errors.New("router: routing table unavailable")
	// errUnchanged aborts a roster update that would change nothing.
	errUnchanged = errors.New("router: roster item unchanged")
)

// stanzaErrorFor maps an internal error to the stanza error sent back to
// the sender. It is the one place that does so:
//   - a *wire.StanzaError is sent as is;
//   - storage.ErrQuotaExceeded → service-unavailable (RFC 6121 §8.5.2.1.1
//     offline storage full);
//   - a timeout (the database did not answer in time, or its pool had no
//     free connection) → resource-constraint, which tells the client to
//     retry later;
//   - storage.ErrUnavailable or anything else → internal-server-error.
func stanzaErrorFor(err error) *wire.StanzaError {
	var se *wire.StanzaError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, storage.ErrQuotaExceeded):
		return wire.ErrServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return wire.ErrResourceConstraint
	default:
		return wire.ErrInternalServerError
	}
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
