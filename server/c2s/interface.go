package c2s

import (
	"context"

	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
	"mellium.im/xmpp/jid"
)

// Router is what the session core needs from server/router; *router.Router
// implements it.
type Router interface {
	// Bind registers a session and returns its full JID, or a
	// *wire.StanzaError (wire.ErrConflict under the reject policy).
	Bind(ctx context.Context, s router.Session, username, resource string) (jid.JID, error)
	// Unbind removes a session that ended, re-routing what it never delivered.
	Unbind(ctx context.Context, s router.Session, unsent []*wire.Element)
	// FromClient routes a stanza the session sent, 'from' already stamped.
	FromClient(ctx context.Context, s router.Session, el *wire.Element)
}

var _ Router = (*router.Router)(nil)
