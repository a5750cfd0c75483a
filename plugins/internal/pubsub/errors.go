package pubsub

import (
	"errors"

	"github.com/aviary-im/aviary/wire"
)

// ErrNoNode is what the store returns for a node that does not exist.
var ErrNoNode = errors.New("pubsub: no such node")

// XEP-0060 stanza errors: a defined condition with the application
// condition of the pubsub#errors namespace that clients act on (a
// precondition-not-met makes Conversations reconfigure the node and
// publish again). Each call returns a new error.

// pubsubError is a stanza error with an application condition in
// pubsub#errors.
func pubsubError(base *wire.StanzaError, app string) *wire.StanzaError {
	return base.WithApp(wire.NewNS(app, NSErrors))
}

// unsupported is feature-not-implemented with <unsupported feature=…/>
// naming the XEP-0060 feature (§6.1.3.x, §8.x "not supported" cases).
func unsupported(feature string) *wire.StanzaError {
	return wire.ErrFeatureNotImplemented.WithApp(wire.NewNS("unsupported", NSErrors).SetAttr("feature", feature))
}

var (
	errNodeIDRequired      = pubsubError(wire.ErrBadRequest, "nodeid-required")
	errItemRequired        = pubsubError(wire.ErrBadRequest, "item-required")
	errItemForbidden       = pubsubError(wire.ErrBadRequest, "item-forbidden")
	errInvalidPayload      = pubsubError(wire.ErrBadRequest, "invalid-payload")
	errPayloadRequired     = pubsubError(wire.ErrBadRequest, "payload-required")
	errPayloadTooBig       = pubsubError(wire.ErrNotAcceptable, "payload-too-big")
	errInvalidJID          = pubsubError(wire.ErrBadRequest, "invalid-jid")
	errNotSubscribed       = pubsubError(wire.ErrUnexpectedRequest, "not-subscribed")
	errSubIDRequired       = pubsubError(wire.ErrBadRequest, "subid-required")
	errInvalidSubID        = pubsubError(wire.ErrNotAcceptable, "invalid-subid")
	errPresenceRequired    = pubsubError(wire.ErrNotAuthorized, "presence-subscription-required")
	errNotInRosterGroup    = pubsubError(wire.ErrNotAuthorized, "not-in-roster-group")
	errClosedNode          = pubsubError(wire.ErrNotAllowed, "closed-node")
	errTooManySubs         = pubsubError(wire.ErrNotAllowed, "too-many-subscriptions")
	errInvalidOptions      = pubsubError(wire.ErrBadRequest, "invalid-options")
	errMaxNodesExceeded    = pubsubError(wire.ErrNotAllowed, "max-nodes-exceeded")
	errNoItemsWithoutStore = unsupported("persistent-items")
)

// errPreconditionNotMet is XEP-0223's answer to publish-options the node's
// configuration does not match; text says which field.
func errPreconditionNotMet(text string) *wire.StanzaError {
	return pubsubError(wire.ErrConflict, "precondition-not-met").WithText(text)
}

// errBadForm is a configuration or options form with a bad value.
func errBadForm(text string) *wire.StanzaError {
	return wire.ErrNotAcceptable.WithText(text)
}
