package router

import (
	"context"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// clientMessage handles a message a local session sent: a message with no
// 'to' is for the sender's own account (RFC 6120 §10.3.1); chat messages
// are copied to the sender's other carbons-enabled resources (XEP-0280).
func (r *Router) clientMessage(ctx context.Context, from string, el *wire.Element) {
	if el.To() == "" {
		el.SetAttr("to", wire.BareJID(from))
	}
	if carbonsEligible(el) {
		r.sentCarbons(ctx, from, el)
	}
	r.route(ctx, el)
}

// routeMessage applies RFC 6121 §8.5.2 (bare JID) and §8.5.3 (full JID)
// to a message for a local user.
//
// Ties: a chat or normal message to the bare JID goes to every available
// resource that shares the highest non-negative priority (§8.5.2.1.1
// allows either one or all of them; all is what users with two equal
// clients expect). Nothing is copied per recipient: every session gets the
// same element.
func (r *Router) routeMessage(ctx context.Context, el *wire.Element, a wire.JID) {
	if !r.intercept(ctx, plugins.PointUserMessage, el, "", false) {
		return
	}
	typ := el.Type()
	if a.Resource() != "" {
		if rt, ok := r.routeFor(ctx, a); ok && r.deliver(ctx, &rt, el) {
			if carbonsEligible(el) {
				r.receivedCarbons(ctx, a.Bare(), el, nil, rt.JID)
			}
			return
		}
		// §8.5.3.2: the resource is not online.
		switch typ {
		case "error", "headline":
			r.m.dropped.Inc()
			return
		case "groupchat":
			r.bounce(ctx, el, wire.ErrServiceUnavailable)
			return
		}
		// normal, chat: as if sent to the bare JID.
	}
	switch typ {
	case "groupchat":
		r.bounce(ctx, el, wire.ErrServiceUnavailable)
		return
	case "error":
		r.m.dropped.Inc()
		return
	}

	var buf [8]cluster.Route
	routes, err := r.routesInto(ctx, a.Bare(), buf[:0])
	if err != nil {
		r.log.Warn("router: routing table unavailable, storing offline", "to", a.Bare(), "err", err)
		routes = nil
	}
	best := -1
	for i := range routes {
		rt := &routes[i]
		if !rt.Available || rt.Priority < 0 {
			continue
		}
		if rt.Priority > best {
			best = rt.Priority
		}
	}
	delivered := 0
	if best >= 0 {
		for i := range routes {
			rt := &routes[i]
			if !rt.Available || rt.Priority < 0 {
				continue
			}
			if typ != "headline" && rt.Priority != best {
				continue
			}
			if r.deliver(ctx, rt, el) {
				delivered++
			}
			// A target got the original (or is gone): no carbon for it.
			rt.Flags &^= cluster.FlagCarbons
		}
	}
	if delivered > 0 {
		if carbonsEligible(el) {
			r.receivedCarbons(ctx, a.Bare(), el, routes, "")
		}
		return
	}
	if typ == "headline" {
		r.m.dropped.Inc()
		return // §8.5.2.1.1: headlines are not stored
	}
	r.storeOffline(ctx, el, a)
}

// routesInto is routes appending into buf, so the common local case
// allocates nothing. The result is the caller's to change.
func (r *Router) routesInto(ctx context.Context, bare string, buf []cluster.Route) ([]cluster.Route, error) {
	if r.clustered() {
		routes, err := r.routes(ctx, bare)
		// Copied: a cluster may hand out a slice it keeps.
		return append(buf, routes...), err
	}
	r.mu.RLock()
	for _, s := range r.byBare[bare] {
		buf = append(buf, s.routeLocked(r.node))
	}
	r.mu.RUnlock()
	return buf, nil
}

// routeIQ applies RFC 6121 §8.5.2.1.3 and §8.5.3 to an IQ for a local
// user: to a full JID it goes to that resource or is answered
// service-unavailable; to the bare JID the server answers on the user's
// behalf (the roster for the user itself, plugins for the rest).
func (r *Router) routeIQ(ctx context.Context, el *wire.Element, a wire.JID) {
	typ := el.Type()
	if a.Resource() != "" {
		if rt, ok := r.routeFor(ctx, a); ok {
			request := (typ == "get" || typ == "set") && !r.isLocal(&rt)
			var k iqKey
			if request {
				k, request = r.iqs.forwarding(rt.Node, el, a)
			}
			if r.deliver(ctx, &rt, el) {
				return
			}
			if request {
				r.iqs.forgot(rt.Node, k)
			}
		}
		if typ == "get" || typ == "set" {
			r.bounce(ctx, el, wire.ErrServiceUnavailable)
		} else {
			r.m.dropped.Inc()
		}
		return
	}
	if typ != "get" && typ != "set" {
		r.m.dropped.Inc()
		return // results and errors to a bare JID: nobody is waiting
	}
	if q := el.FirstChild(); q != nil && q.NS() == wire.NSRoster {
		if wire.JIDOf(el.From()).Bare() == a.Bare() {
			r.handleRoster(ctx, el)
			return
		}
		r.bounce(ctx, el, wire.ErrServiceUnavailable)
		return
	}
	if wire.BareJID(el.From()) != a.Bare() && !r.userExists(ctx, a.Local()) {
		r.bounce(ctx, el, wire.ErrServiceUnavailable) // §8.5.1: no such account
		return
	}
	if r.handleIQ(ctx, el, plugins.ToAccount, a.Bare()) {
		return
	}
	r.bounce(ctx, el, wire.ErrServiceUnavailable)
}

// clientIQ handles an IQ a local session sent. One with no 'to' is
// processed on behalf of the account (RFC 6120 §10.3.3): the roster, then
// plugins for the account, then plugins for the server.
func (r *Router) clientIQ(ctx context.Context, from string, el *wire.Element) {
	if el.To() != "" {
		r.route(ctx, el)
		return
	}
	typ := el.Type()
	if typ != "get" && typ != "set" {
		return
	}
	if q := el.FirstChild(); q != nil && q.NS() == wire.NSRoster {
		r.handleRoster(ctx, el)
		return
	}
	if r.handleIQ(ctx, el, plugins.ToAccount, wire.BareJID(from)) {
		return
	}
	if r.handleIQ(ctx, el, plugins.ToServer, r.domain) {
		return
	}
	reply := wire.ErrorReply(el, wire.ErrServiceUnavailable)
	reply.RemoveAttr("from")
	r.route(ctx, reply)
}
