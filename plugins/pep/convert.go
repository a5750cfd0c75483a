package pep

import (
	"context"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/pubsub"
	"github.com/aviary-im/aviary/plugins/private"
	"github.com/aviary-im/aviary/plugins/vcard"
	"github.com/aviary-im/aviary/wire"
)

// Conversions: the same data kept in several places that different
// clients read (bookmarks.go, avatar.go, vcard4.go). A client's change to
// one (a PEP publish, retract, purge or delete reported by the engine; a
// private XML fragment or a vCard reported on the hook bus) is written to
// the others on the server's behalf, through the engine's methods and
// the other plugins' Save functions, which report nothing: a conversion
// never converts back. Each runs in the client's request, before it is
// answered, so the client that made the change and every other client
// reading the other form see it once the answer arrives. A conversion
// that fails is logged; the change the client made stands.

// changed is the engine's report of a client's change.
func (p *Plugin) changed(ctx context.Context, ch pubsub.Change) {
	var err error
	switch ch.Node {
	case NSBookmarks:
		err = p.bookmarksFromNative(ctx, ch.Service)
	case NSBookmarksLegacy:
		err = p.bookmarksFromLegacyPEP(ctx, ch.Service, ch)
	case NSAvatarMetadata:
		err = p.avatarToVCard(ctx, ch.Service, ch)
	case NSVCard4:
		err = p.vcard4ToVCard(ctx, ch.Service, ch)
	default:
		return
	}
	if err != nil {
		p.host.Logger().Warn("pep: converting a change", "owner", ch.Service, "node", ch.Node, "err", err)
	}
}

// stored is a private XML fragment or a vCard a client stored.
func (p *Plugin) stored(ctx context.Context, ev *plugins.XMLStoredEvent) {
	var err error
	switch {
	case ev.Plugin == private.ID && ev.El.Name == "storage" && ev.El.NS() == NSBookmarksLegacy:
		err = p.bookmarksFromPrivate(ctx, ev.Owner, ev.El)
	case ev.Plugin == vcard.ID && ev.El.Name == "vCard":
		err = p.vcardToPEP(ctx, ev.Owner, ev.El)
	default:
		return
	}
	if err != nil {
		p.host.Logger().Warn("pep: converting a stored document", "owner", ev.Owner, "from", ev.Plugin, "err", err)
	}
}

// payloadOf returns the payload of the item a change published (nil for
// any other change).
func payloadOf(ch pubsub.Change) *wire.Element {
	if ch.Kind != pubsub.Published || ch.Item == nil {
		return nil
	}
	return ch.Item.Payload
}

// sameXML reports whether two elements serialize the same: a conversion
// that would write what is already there is skipped, so clients are not
// notified of non-changes.
func sameXML(a, b *wire.Element) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}

// publishIfChanged publishes payload as item id of a node on the
// server's behalf (creating the node with create), unless the item
// already holds it.
func (p *Plugin) publishIfChanged(ctx context.Context, owner, node, id string, payload *wire.Element, create pubsub.Config) error {
	cur, err := p.engine.Item(ctx, owner, node, id)
	if err != nil {
		return err
	}
	if cur != nil && sameXML(cur.Payload, payload) {
		return nil
	}
	_, err = p.engine.Publish(ctx, owner, node, owner, id, payload, create)
	return err
}

// config returns Defaults changed by fn: the configuration the server
// gives a node it creates for a conversion.
func config(fn func(c *pubsub.Config)) pubsub.Config {
	c := Defaults
	fn(&c)
	return c
}
