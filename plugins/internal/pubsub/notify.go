package pubsub

import (
	"context"

	"github.com/aviary-im/aviary/wire"
)

// Notifications. Each event goes out once per recipient from the node of
// the cluster that made the change, through the host's Route, which is
// cluster-wide: a subscriber's bare JID reaches its available resources
// wherever they are connected, a full JID the one session, on whatever
// node. Recipients are the node's subscriptions (from the store, so every
// node sees the same) and, for PEP, the implicit recipients the caller
// knows of (Options.Implicit), less those a subscription already covers.

// eventElement wraps an event's child in <event xmlns=pubsub#event/>.
func eventElement(child *wire.Element) *wire.Element {
	return wire.NewNS("event", NSEvent).Append(child)
}

// itemsEvent is the notification of a published item.
func itemsEvent(n *nodeRef, it *Item) *wire.Element {
	return eventElement(wire.New("items", "node", n.node).Append(it.Element(n.cfg.DeliverPayloads)))
}

// message builds one notification message.
func (e *Engine) message(n *nodeRef, to string, event *wire.Element) *wire.Element {
	var m *wire.Element
	if n.cfg.NotificationType == "normal" {
		m = wire.New("message", "from", n.service, "to", to, "id", "pubsub-"+RandomID())
	} else {
		m = wire.New("message", "type", "headline", "from", n.service, "to", to, "id", "pubsub-"+RandomID())
	}
	return m.Append(event.Copy())
}

// recipients returns who gets one of the node's events: subscribers
// with delivery on, then implicit recipients no subscription covers,
// each passed through the access model. it is the published item of a
// publish, nil for other events.
func (e *Engine) recipients(ctx context.Context, n *nodeRef, subs []*Subscription, it *Item) []string {
	var out []string
	bare := map[string]bool{} // subscribed bare JIDs: all their resources get it
	full := map[string]bool{}
	aud := &audience{e: e, n: n}
	for _, s := range subs {
		if !s.Options.Deliver || !aud.allows(ctx, wire.BareJID(s.JID), false) {
			continue
		}
		if wire.BareJID(s.JID) == s.JID {
			bare[s.JID] = true
		} else {
			full[s.JID] = true
		}
		out = append(out, s.JID)
	}
	if e.opts.Implicit != nil {
		for _, j := range e.opts.Implicit(ctx, n.service, n.node, it) {
			if full[j] || bare[wire.BareJID(j)] || !aud.allows(ctx, wire.BareJID(j), true) {
				continue
			}
			full[j] = true
			out = append(out, j)
		}
	}
	return out
}

// notify sends an event to the node's recipients. subs are the node's
// subscriptions when the caller has read them (a deleted node's), nil to
// read them here; it is the published item of a publish, nil for other
// events.
func (e *Engine) notify(ctx context.Context, n *nodeRef, event *wire.Element, subs []*Subscription, it *Item) {
	if !n.cfg.DeliverNotifications {
		return
	}
	if subs == nil {
		var err error
		subs, err = e.st.subscriptions(ctx, n.service, n.node)
		if err != nil {
			e.log.Warn("pubsub: reading subscriptions for a notification", "service", n.service, "node", n.node, "err", err)
		}
	}
	for _, to := range e.recipients(ctx, n, subs, it) {
		e.opts.Route(ctx, e.message(n, to, event))
	}
}

// SendLast sends the newest item of a node to one recipient when the
// node sends last items on presence (PEP: a contact whose caps ask for
// the node came online or changed its filter) and the access model lets
// the recipient see it as an implicit recipient. claim, when not nil,
// is asked last, with the item read: false keeps it (the recipient has
// it already, from a publish's notification).
func (e *Engine) SendLast(ctx context.Context, service, node, to string, claim func(*Item) bool) {
	n, err := e.node(ctx, service, node)
	if err != nil {
		return
	}
	if n.cfg.SendLastPublishedItem != SendLastOnSubPresence || !n.cfg.DeliverNotifications {
		return
	}
	aud := &audience{e: e, n: n}
	if !aud.allows(ctx, wire.BareJID(to), true) {
		return
	}
	e.sendLast(ctx, n, to, claim)
}

// sendLast routes the node's newest item to one JID, if it has one and
// claim (when not nil) lets it.
func (e *Engine) sendLast(ctx context.Context, n *nodeRef, to string, claim func(*Item) bool) {
	if !n.cfg.PersistItems {
		return
	}
	it, err := e.st.lastItem(ctx, n.service, n.node)
	if err != nil {
		e.log.Warn("pubsub: reading the last item", "service", n.service, "node", n.node, "err", err)
		return
	}
	if it == nil || (claim != nil && !claim(it)) {
		return
	}
	e.opts.Route(ctx, e.message(n, to, itemsEvent(n, it)))
}
