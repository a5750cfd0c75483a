package pep

import (
	"errors"

	"github.com/aviary-im/aviary/wire"
)

// errNoNode is load's "the node does not exist".
var errNoNode = errors.New("pep: no such node")

// Stanza errors. XEP-0060 adds application conditions in the pubsub#errors
// namespace (nodeid-required, item-required, ...); wire.StanzaError carries
// the defined condition and a text naming the application condition.
var (
	errNodeIDRequired               = wire.ErrBadRequest.WithText("nodeid-required")
	errItemRequired                 = wire.ErrBadRequest.WithText("item-required")
	errInvalidPayload               = wire.ErrBadRequest.WithText("invalid-payload")
	errPreconditionNotMet           = wire.ErrConflict.WithText("precondition-not-met")
	errPresenceSubscriptionRequired = wire.ErrNotAuthorized.WithText("presence-subscription-required")
	errNotInWhitelist               = wire.ErrNotAllowed.WithText("closed-node")
)
