package c2s

import (
	"context"

	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// Router is what the session core needs from server/router; *router.Router
// implements it.
type Router interface {
	// Bind registers a session and returns its full JID, or a
	// *wire.StanzaError. The core always passes a non-empty resource (it
	// generates one when the client asked for none) and uses the returned
	// JID. For c2s.resource_conflict the router must: kick_old — close the
	// old session with Close("conflict", ...) and bind the new one;
	// reject — return wire.ErrConflict; new_resource — bind another
	// resource and return it (if it returns wire.ErrConflict instead, the
	// core retries with a suffixed resource). A bad resource is
	// wire.ErrBadRequest. Bind must not call back into the session
	// synchronously except Close, which never blocks.
	Bind(ctx context.Context, s router.Session, username, resource string) (wire.JID, error)
	// Unbind removes a session that ended, re-routing what it never
	// delivered: stanzas queued but not written, stanzas lost by a failed
	// write, and with stream management everything the client did not
	// acknowledge, each with the receipt it was queued with. It is called
	// once per bound session, after its transport is closed (for a
	// resumable session: when it expires).
	Unbind(ctx context.Context, s router.Session, unsent []router.Unsent)
	// Release lets go the copies crash safety keeps of stanzas the client
	// now has (their receipts, router.Receipted).
	Release(rcs []*router.Receipt)
	// FromClient routes a stanza the session sent, 'from' already stamped.
	FromClient(ctx context.Context, s router.Session, el *wire.Element)
}

var _ Router = (*router.Router)(nil)
