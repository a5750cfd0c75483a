package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// handleRoster answers a jabber:iq:roster get or set from a local user
// about their own roster (RFC 6121 §2, XEP-0237 versioning).
func (r *Router) handleRoster(ctx context.Context, el *wire.Element) {
	from := el.From()
	fa, err := wire.ParseJID(from)
	if err != nil || fa.Domain() != r.domain || fa.Local() == "" {
		r.bounce(ctx, el, wire.ErrForbidden)
		return
	}
	q := el.FirstChild()
	if r.store == nil {
		r.rosterError(ctx, el, wire.ErrServiceUnavailable)
		return
	}
	switch el.Type() {
	case "get":
		r.rosterGet(ctx, el, q, fa)
	case "set":
		r.rosterSet(ctx, el, q, fa)
	}
}

// rosterReply answers the IQ; for a request with no 'to' the answer
// carries no 'from' (RFC 6120 §10.3.3).
func (r *Router) rosterReply(ctx context.Context, el, payload *wire.Element) {
	reply := wire.IQResult(el, payload)
	if el.To() == "" {
		reply.RemoveAttr("from")
	}
	r.route(ctx, reply)
}

func (r *Router) rosterError(ctx context.Context, el *wire.Element, se *wire.StanzaError) {
	reply := wire.ErrorReply(el, se)
	if el.To() == "" {
		reply.RemoveAttr("from")
	}
	r.route(ctx, reply)
}

// rosterGet returns the roster and marks the session interested in pushes
// (§2.1.3, §2.1.6). With XEP-0237, a request whose 'ver' equals the
// current version gets an empty result; a request with a 'ver' attribute
// gets the version back.
func (r *Router) rosterGet(ctx context.Context, el, q *wire.Element, fa wire.JID) {
	r.mu.Lock()
	s := r.sessions[fa.String()]
	changed := s != nil && !s.interested
	if changed {
		s.interested = true
	}
	r.mu.Unlock()
	if changed {
		r.publish(ctx, fa.String())
	}
	dctx, cancel := r.dbCtx(ctx)
	items, ver, err := r.store.GetRoster(dctx, fa.Bare())
	cancel()
	if err != nil {
		r.rosterError(ctx, el, stanzaErrorFor(err))
		return
	}
	verStr := strconv.FormatInt(ver, 10)
	versioned := q.HasAttr("ver")
	if versioned && q.Attr("ver") == verStr {
		r.rosterReply(ctx, el, nil)
		return
	}
	query := wire.NewNS("query", wire.NSRoster)
	if versioned {
		query.Attrs = append(query.Attrs, wire.Attr{Name: "ver", Value: verStr})
	}
	for _, it := range items {
		if it.InRoster {
			query.Append(rosterItemElement(it, false))
		}
	}
	r.rosterReply(ctx, el, query)
}

// rosterQuota is one user's roster quota (c2s.roster_max_items,
// c2s.roster_max_pending, c2s.roster_max_item_bytes).
func (r *Router) rosterQuota() storage.RosterQuota {
	return storage.RosterQuota{
		Items:     r.cfg.C2S.RosterMaxItems,
		PendingIn: r.cfg.C2S.RosterMaxPending,
		ItemBytes: r.cfg.C2S.RosterMaxItemBytes,
	}
}

// rosterErrorFor maps an error of a roster write to the stanza error for
// the user who asked (own: a roster set, or the user's own subscription
// stanza) or for a contact whose subscription request would have changed
// the roster. RFC 6121 leaves the limits to the server: a full roster is
// not-allowed for the user (remove contacts first) and resource-constraint
// for a contact (the user may answer requests and make room); an item too
// large is not-acceptable (§2.3.3). Each says which limit, so the user
// knows what to do.
func (r *Router) rosterErrorFor(err error, own bool) *wire.StanzaError {
	q := r.rosterQuota()
	switch {
	case errors.Is(err, storage.ErrRosterItemTooLarge):
		return wire.ErrNotAcceptable.WithText(fmt.Sprintf("a roster item (JID, name and groups) may take at most %d bytes", q.ItemBytes))
	case errors.Is(err, storage.ErrRosterFull) && own:
		return wire.ErrNotAllowed.WithText(fmt.Sprintf("the roster is full: at most %d contacts, counting unanswered subscription requests", q.Items))
	case errors.Is(err, storage.ErrRosterFull):
		return wire.ErrResourceConstraint.WithText("the contact's roster is full")
	case errors.Is(err, storage.ErrTooManyPending):
		return wire.ErrResourceConstraint.WithText(fmt.Sprintf("the contact has %d subscription requests waiting for an answer", q.PendingIn))
	}
	return stanzaErrorFor(err)
}

// rosterItemElement renders an item for a result or a push.
func rosterItemElement(it storage.RosterItem, removed bool) *wire.Element {
	item := wire.New("item", "jid", it.Contact)
	if removed {
		item.SetAttr("subscription", "remove")
		return item
	}
	if it.Name != "" {
		item.SetAttr("name", it.Name)
	}
	sub := it.Subscription
	if sub == "" {
		sub = storage.SubNone
	}
	item.SetAttr("subscription", sub)
	if it.PendingOut {
		item.SetAttr("ask", "subscribe")
	}
	for _, g := range it.Groups {
		item.Append(wire.New("group").SetText(g))
	}
	return item
}

// rosterSet adds, updates or removes one item (§2.3, §2.4, §2.5).
func (r *Router) rosterSet(ctx context.Context, el, q *wire.Element, fa wire.JID) {
	items := q.ChildrenNamed("item", "")
	if len(items) != 1 {
		r.rosterError(ctx, el, wire.ErrBadRequest.WithText("a roster set carries exactly one item"))
		return
	}
	item := items[0]
	raw := item.Attr("jid")
	ca, err := wire.ParseJID(raw)
	if err != nil {
		r.rosterError(ctx, el, wire.ErrJIDMalformed)
		return
	}
	contact := ca.Bare()
	// §2.1.5: any 'subscription' other than "remove" is ignored (clients
	// echo the attribute of the item they got); subscription states change
	// only through presence. 'ask' is ignored the same way (§2.1.2.2).
	if item.Attr("subscription") == "remove" {
		r.rosterRemove(ctx, el, fa, contact)
		return
	}
	if contact == fa.Bare() {
		r.rosterError(ctx, el, wire.ErrNotAllowed.WithText("you cannot add yourself"))
		return
	}
	var groups []string
	for _, g := range item.ChildrenNamed("group", "") {
		name := g.AllText()
		if name == "" {
			r.rosterError(ctx, el, wire.ErrNotAcceptable.WithText("empty group name"))
			return
		}
		if slices.Contains(groups, name) {
			r.rosterError(ctx, el, wire.ErrBadRequest.WithText("duplicate group"))
			return
		}
		groups = append(groups, name)
	}
	name := item.Attr("name")
	var pushed storage.RosterItem
	fn := func(it storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		n := it
		if !exists {
			n.Subscription = storage.SubNone
		}
		n.Name, n.Groups, n.InRoster = name, groups, true
		if exists && it.InRoster && it.Name == n.Name && slices.Equal(it.Groups, n.Groups) {
			return it, false, errUnchanged
		}
		pushed = n
		return n, false, nil
	}
	dctx, cancel := r.dbCtx(ctx)
	stored, _, changed, ver, err := r.store.UpdateRosterItem(dctx, fa.Bare(), contact, r.rosterQuota(), fn)
	cancel()
	if errors.Is(err, errUnchanged) {
		r.rosterReply(ctx, el, nil)
		return
	}
	if err != nil {
		r.rosterError(ctx, el, r.rosterErrorFor(err, true))
		return
	}
	if changed {
		if stored.Contact == "" {
			stored = pushed
		}
		r.pushRoster(ctx, fa.Bare(), stored, false, ver)
	}
	r.rosterReply(ctx, el, nil)
}

// rosterRemove deletes an item and cancels the subscriptions both ways
// (§2.5.2): unsubscribe when the user was subscribed to the contact (or
// asked to be), unsubscribed when the contact was subscribed to the user
// (or asked to be), and unavailable presence to a contact that was
// receiving the user's presence.
func (r *Router) rosterRemove(ctx context.Context, el *wire.Element, fa wire.JID, contact string) {
	var before storage.RosterItem
	fn := func(it storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		if !exists {
			return it, false, wire.ErrItemNotFound
		}
		before = it
		return it, true, nil
	}
	dctx, cancel := r.dbCtx(ctx)
	_, _, _, ver, err := r.store.UpdateRosterItem(dctx, fa.Bare(), contact, r.rosterQuota(), fn)
	cancel()
	if err != nil {
		r.rosterError(ctx, el, stanzaErrorFor(err))
		return
	}
	if before.InRoster {
		r.pushRoster(ctx, fa.Bare(), before, true, ver)
	}
	st := stateOf(before)
	if st.to() || st.PendingOut {
		r.route(ctx, wire.New("presence", "type", "unsubscribe", "from", fa.Bare(), "to", contact))
	}
	if st.from() || st.PendingIn {
		r.route(ctx, wire.New("presence", "type", "unsubscribed", "from", fa.Bare(), "to", contact))
	}
	if st.from() {
		r.unavailableFromResources(ctx, fa.Bare(), contact)
	}
	r.rosterReply(ctx, el, nil)
}

// pushRoster sends a roster push for one item to every interested
// resource of the owner on every node (§2.1.6). Each push is an IQ set
// from the owner's bare JID; the pushes share their query payload.
func (r *Router) pushRoster(ctx context.Context, owner string, it storage.RosterItem, removed bool, ver int64) {
	r.fireHook(ctx, plugins.EventRosterChanged, &plugins.RosterEvent{
		Owner: owner, Contact: it.Contact, Subscription: it.Subscription, Removed: removed,
	})
	routes, err := r.routes(ctx, owner)
	if err != nil {
		r.log.Warn("router: no roster push, routing table unavailable", "jid", owner, "err", err)
		return
	}
	var query *wire.Element
	for i := range routes {
		rt := &routes[i]
		if rt.Flags&cluster.FlagRoster == 0 {
			continue
		}
		if query == nil {
			query = wire.NewNS("query", wire.NSRoster)
			query.Attrs = append(query.Attrs, wire.Attr{Name: "ver", Value: strconv.FormatInt(ver, 10)})
			query.Append(rosterItemElement(it, removed))
		}
		push := wire.New("iq", "type", "set", "id", randomID("push-"), "from", owner, "to", rt.JID).Append(query)
		r.deliver(ctx, rt, push)
	}
}
