package router

import (
	"context"
	"github.com/aviary-im/aviary/plugins/last"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// clientPresence handles presence a local session sent (RFC 6121 §3, §4).
func (r *Router) clientPresence(ctx context.Context, from string, el *wire.Element) {
	typ := el.Type()
	if el.To() == "" {
		switch typ {
		case "":
			r.availablePresence(ctx, from, el)
		case "unavailable":
			r.unavailablePresence(ctx, from, el)
		}
		// subscribe, probe, error with no 'to' mean nothing: ignored.
		return
	}
	switch typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		r.outboundSubscription(ctx, from, el)
	case "", "unavailable":
		r.directedPresence(ctx, from, el)
	case "probe", "error":
		r.route(ctx, el)
	default:
		// RFC 6121 §4.7.1 defines no other type; passing it on would make
		// the recipient's server take it for available presence.
		r.bounce(ctx, el, wire.ErrBadRequest.WithText("unknown presence type"))
	}
}

// parsePriority reads <priority/> (RFC 6121 §4.7.2.3): an integer in
// -128..127, default 0.
func parsePriority(el *wire.Element) int {
	p := el.Child("priority", "")
	if p == nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(p.AllText()))
	if err != nil {
		return 0
	}
	return max(-128, min(127, n))
}

// availablePresence handles broadcast presence: initial (RFC 6121 §4.2)
// or an update (§4.4).
//
// The session is marked available (and its route published) before the
// broadcast, probes and the offline hand-over, not after: a message sent
// to the user in between then either reaches the session directly or is
// stored before the hand-over takes the queue; storeOffline re-checks
// availability after committing, so nothing waits for the next login.
func (r *Router) availablePresence(ctx context.Context, from string, el *wire.Element) {
	r.mu.Lock()
	s := r.sessions[from]
	if s == nil {
		r.mu.Unlock()
		return
	}
	initial := !s.available
	oldPriority := s.priority
	s.presence = el
	s.available = true
	s.priority = parsePriority(el)
	rt := s.routeLocked(r.node)
	r.mu.Unlock()
	if err := r.putRoute(ctx, rt); err != nil {
		r.log.Warn("router: publishing route failed", "jid", from, "err", err)
	}
	if !initial {
		r.broadcast(ctx, s.bare, el, nil)
		if oldPriority < 0 && rt.Priority >= 0 {
			// Now eligible for messages to the bare JID (XEP-0160).
			r.kickBacklog(ctx, from)
		}
		return
	}

	// With a non-negative priority the offline queue is handed over below;
	// a store that can reads its first portion (what the session can take
	// now, usually all of it) with the roster read: one round trip.
	var offline []storage.OfflineMessage
	took, more := false, false
	dctx, cancel := r.dbCtx(ctx)
	var items []storage.RosterItem
	var err error
	budget := backlogBudget(s.s, nil)
	if l, ok := r.store.(rosterOfflineLoader); ok && rt.Priority >= 0 && budget != 0 {
		items, _, offline, more, err = l.GetRosterReadOffline(dctx, s.bare, r.handed.skip(s.bare), max(budget, 0))
		took = err == nil
	} else {
		items, _, err = r.store.GetRoster(dctx, s.bare)
	}
	cancel()
	if err != nil {
		r.log.Warn("router: roster unavailable at initial presence", "jid", from, "err", err)
	}
	var subscribers []string
	for _, it := range items {
		if st := stateOf(it); st.from() {
			subscribers = append(subscribers, it.Contact)
		}
	}
	r.broadcastTo(ctx, s.bare, el, subscribers, nil)
	r.ownPresence(ctx, s.bare, from)
	for _, it := range items {
		if stateOf(it).to() {
			probe := wire.New("presence", "type", "probe", "id", randomID("probe-"), "from", from, "to", it.Contact)
			r.presenceOut(ctx, probe)
		}
	}
	// RFC 6121 §3.1.3: a request that waited is delivered when the contact
	// next becomes available; the pump replays them as the client reads.
	var subs []*wire.Element
	for _, it := range items {
		if it.PendingIn {
			subs = append(subs, wire.New("presence", "type", "subscribe", "from", it.Contact, "to", s.bare))
		}
	}
	if len(subs) > 0 {
		r.mu.Lock()
		s.subs = subs
		r.mu.Unlock()
	}
	delivered := !took || r.handOverOffline(ctx, from, s.bare, offline)
	if delivered && (more || len(subs) > 0 || (!took && rt.Priority >= 0)) {
		r.kickBacklog(ctx, from)
	}
	if rt.Priority >= 0 && r.clustered() {
		r.recheckOffline(ctx, s.bare)
	}
	r.fireHook(ctx, plugins.EventPresenceAvailable, &plugins.SessionEvent{JID: from})
}

// offlineRecheck is when recheckOffline looks at offline storage again
// (Router.offlineRecheck).
const offlineRecheck = 2 * time.Second

// recheckOffline looks at the user's offline queue once more a moment
// after a resource became available. In a cluster another node that found
// no available resource stores a message offline and then re-checks the
// routes, from their source (routesFromSource), so it sees this
// resource's route; this second look covers a cluster whose routes have
// no source to read (and a route write that failed and was retried).
func (r *Router) recheckOffline(ctx context.Context, bare string) {
	ctx = context.WithoutCancel(ctx)
	time.AfterFunc(r.offlineRecheck, func() {
		if r.clustered() { // the race needs other nodes; alone, nothing to catch
			r.flushOffline(ctx, bare)
		}
	})
}

// unavailablePresence handles broadcast unavailable presence (§4.5): the
// session stays bound but is no longer available.
func (r *Router) unavailablePresence(ctx context.Context, from string, el *wire.Element) {
	r.mu.Lock()
	s := r.sessions[from]
	if s == nil {
		r.mu.Unlock()
		return
	}
	wasAvailable, directed := s.available, s.directed
	s.available, s.presence, s.directed = false, nil, nil
	s.status = el.ChildText("status", "")
	rt := s.routeLocked(r.node)
	r.mu.Unlock()
	if err := r.putRoute(ctx, rt); err != nil {
		r.log.Warn("router: publishing route failed", "jid", from, "err", err)
	}
	if wasAvailable {
		r.broadcast(ctx, s.bare, el, directed)
		return
	}
	for to := range directed {
		r.presenceOut(ctx, withTo(el, to))
	}
}

// directedPresence routes presence a session sent to one entity and
// remembers who got available presence, so they get unavailable presence
// when the session goes away (RFC 6121 §4.6).
func (r *Router) directedPresence(ctx context.Context, from string, el *wire.Element) {
	to := el.To()
	r.mu.Lock()
	if s := r.sessions[from]; s != nil && wire.BareJID(to) != s.bare {
		if el.Type() == "" {
			if s.directed == nil {
				s.directed = map[string]struct{}{}
			}
			s.directed[to] = struct{}{}
		} else {
			delete(s.directed, to)
		}
	}
	r.mu.Unlock()
	r.route(ctx, el)
}

// subscribers returns who is subscribed to bare's presence; when the store
// cannot say, none (logged with what they were wanted for).
func (r *Router) subscribers(ctx context.Context, bare, purpose string) []string {
	if r.store == nil {
		return nil
	}
	dctx, cancel := r.dbCtx(ctx)
	defer cancel()
	subscribers, err := r.store.Subscribers(dctx, bare)
	if err != nil {
		r.log.Warn("router: subscribers unavailable for "+purpose, "jid", bare, "err", err)
	}
	return subscribers
}

// broadcast sends a user's presence to the user's subscribers, to extra
// recipients of directed presence, and to the user's own available
// resources (RFC 6121 §4.2.2, §4.4.2, §4.5.2).
func (r *Router) broadcast(ctx context.Context, bare string, el *wire.Element, directed map[string]struct{}) {
	r.broadcastTo(ctx, bare, el, r.subscribers(ctx, bare, "presence broadcast"), directed)
}

func (r *Router) broadcastTo(ctx context.Context, bare string, el *wire.Element, subscribers []string, directed map[string]struct{}) {
	for _, c := range subscribers {
		if c == bare {
			continue // the user's own resources get it below
		}
		r.presenceOut(ctx, withTo(el, c))
	}
	for to := range directed {
		if contains(subscribers, to) {
			continue
		}
		r.presenceOut(ctx, withTo(el, to))
	}
	routes, err := r.routes(ctx, bare)
	if err != nil {
		return
	}
	var self *wire.Element
	for i := range routes {
		if !routes[i].Available {
			continue
		}
		if self == nil {
			self = withTo(el, bare)
		}
		r.deliver(ctx, &routes[i], self)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// presenceOut routes presence that a local user's resource sends out
// without having sent it itself (copies of a broadcast to each contact,
// answers to probes, probes at login, unavailable presence on logout), after
// the PointInbound interceptors, as if the resource had sent that stanza to
// that contact: a plugin sees every presence the user's account emits, with
// its 'to', whether it goes to a local contact, another node or another
// domain (XEP-0191 §3.3: nothing to a blocked contact, probes from one
// unanswered). Session is the sending resource (its 'from' when that is a
// full JID). An interceptor's error drops the stanza without a bounce: the
// user did not send it.
func (r *Router) presenceOut(ctx context.Context, el *wire.Element) {
	if r.plugins != nil {
		session := el.From()
		if !strings.Contains(session, "/") {
			session = ""
		}
		if !r.intercept(ctx, plugins.PointInbound, el, session, false) {
			return
		}
	}
	r.route(ctx, el)
}

// withTo returns a shallow copy of el addressed to 'to': its own attribute
// slice, the children shared (they are never changed after routing; the
// slice is capped, so appending to one copy's children never writes into
// another's).
func withTo(el *wire.Element, to string) *wire.Element {
	n := len(el.Children)
	c := &wire.Element{Name: el.Name, Text: el.Text, Children: el.Children[:n:n]}
	c.Attrs = make([]wire.Attr, 0, len(el.Attrs)+1)
	for _, a := range el.Attrs {
		if a.Name != "to" {
			c.Attrs = append(c.Attrs, a)
		}
	}
	c.Attrs = append(c.Attrs, wire.Attr{Name: "to", Value: to})
	return c
}

// routePresence delivers presence addressed to a local user (RFC 6121
// §4.3.2, §4.4.3, §8.5.2.1.2, §8.5.3).
func (r *Router) routePresence(ctx context.Context, el *wire.Element, a wire.JID) {
	switch el.Type() {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		r.inboundSubscription(ctx, el, a)
		return
	case "probe":
		r.inboundProbe(ctx, el, a)
		return
	case "error":
		// An error answering presence the user sent: subscription requests
		// leave from the bare JID (§3.1.2), so their errors come back to it
		// and go to every available resource (a client learns its request
		// failed); to a full JID, to that resource only.
		if a.Resource() != "" {
			if rt, ok := r.routeFor(ctx, a); ok && r.deliver(ctx, &rt, el) {
				return
			}
			r.m.dropped.Inc()
			return
		}
		if r.deliverAvailable(ctx, a.Bare(), el) == 0 {
			r.m.dropped.Inc()
		}
		return
	case "", "unavailable":
	default:
		r.m.dropped.Inc() // no such presence type (§4.7.1): not taken for available
		return
	}
	// Available or unavailable presence.
	if a.Resource() != "" {
		if rt, ok := r.routeFor(ctx, a); ok && r.deliver(ctx, &rt, el) {
			return
		}
		r.m.dropped.Inc()
		return // §8.5.3.2.3: no such resource, silently ignored
	}
	routes, err := r.routes(ctx, a.Bare())
	if err != nil {
		return
	}
	for i := range routes {
		if routes[i].Available {
			r.deliver(ctx, &routes[i], el)
		}
	}
}

// routeFor finds the route of a full JID of a local user.
func (r *Router) routeFor(ctx context.Context, a wire.JID) (cluster.Route, bool) {
	if !r.clustered() {
		r.mu.RLock()
		s := r.sessions[a.String()]
		if s == nil {
			r.mu.RUnlock()
			return cluster.Route{}, false
		}
		rt := s.routeLocked(r.node)
		r.mu.RUnlock()
		return rt, true
	}
	routes, err := r.routes(ctx, a.Bare())
	if err != nil {
		return cluster.Route{}, false
	}
	for _, rt := range routes {
		if rt.JID == a.String() {
			return rt, true
		}
	}
	return cluster.Route{}, false
}

// inboundProbe answers a probe to a local user (RFC 6121 §4.3.2): with
// unsubscribed when the prober has no subscription, with unavailable
// presence (and the last-activity stamp) when no resource is available,
// else with the last presence of each available resource. Resources on
// other nodes answer for themselves: the probe is delivered to them and
// their node replies.
func (r *Router) inboundProbe(ctx context.Context, el *wire.Element, a wire.JID) {
	prober := wire.JIDOf(el.From()).Bare()
	if prober == "" {
		return
	}
	if prober != a.Bare() {
		dctx, cancel := r.dbCtx(ctx)
		it, err := r.store.GetRosterItem(dctx, a.Bare(), prober)
		cancel()
		if err != nil && !isNotFound(err) {
			r.log.Warn("router: roster unavailable for probe", "jid", a.Bare(), "err", err)
			return
		}
		if err != nil || !stateOf(it).from() {
			r.presenceOut(ctx, wire.New("presence", "type", "unsubscribed", "from", a.Bare(), "to", prober))
			return
		}
	}
	routes, err := r.routes(ctx, a.Bare())
	if err != nil {
		return
	}
	answered := false
	for i := range routes {
		if routes[i].Available && r.deliver(ctx, &routes[i], el) {
			answered = true
		}
	}
	if answered {
		return
	}
	un := wire.New("presence", "type", "unavailable", "from", a.Bare(), "to", el.From())
	dctx, cancel := r.dbCtx(ctx)
	at, status, err := last.Load(dctx, r.store, a.Bare())
	cancel()
	if err == nil {
		if status != "" {
			un.Append(wire.New("status").SetText(status))
		}
		un.Append(delayElement(r.domain, at))
	}
	r.presenceOut(ctx, un)
}

// answerProbeLocal answers a probe delivered to a local resource with that
// resource's last presence, if it is available.
func (r *Router) answerProbeLocal(ctx context.Context, s *session, probe *wire.Element) {
	r.mu.RLock()
	p, avail := s.presence, s.available
	r.mu.RUnlock()
	if !avail || p == nil || probe.From() == "" {
		return
	}
	reply := withTo(p, probe.From())
	reply.SetAttr("from", s.full)
	r.presenceOut(ctx, reply)
}

// ownPresence sends the presence of the user's other available resources
// to a resource that just became available, as servers commonly do, so a
// client sees the user's other devices. Each resource's node answers a
// probe delivered to it.
func (r *Router) ownPresence(ctx context.Context, bare, full string) {
	routes, err := r.routes(ctx, bare)
	if err != nil {
		return
	}
	var probe *wire.Element
	for i := range routes {
		if !routes[i].Available || routes[i].JID == full {
			continue
		}
		if probe == nil {
			probe = wire.New("presence", "type", "probe", "from", full, "to", bare)
		}
		r.deliver(ctx, &routes[i], probe)
	}
}

// presenceFromResources makes each available resource of a user send its
// current presence to 'to' (after approving a subscription, §3.1.5). A
// probe delivered to a resource makes its node answer with the resource's
// last presence.
func (r *Router) presenceFromResources(ctx context.Context, bare, to string) {
	routes, err := r.routes(ctx, bare)
	if err != nil {
		return
	}
	var probe *wire.Element
	for i := range routes {
		if !routes[i].Available {
			continue
		}
		if probe == nil {
			probe = wire.New("presence", "type", "probe", "from", to, "to", bare)
		}
		r.deliver(ctx, &routes[i], probe)
	}
}

// unavailableFromResources sends unavailable presence from each available
// resource of a user to 'to' (after a subscription from 'to' ended, §3.2.2).
func (r *Router) unavailableFromResources(ctx context.Context, bare, to string) {
	routes, err := r.routes(ctx, bare)
	if err != nil {
		return
	}
	for i := range routes {
		if routes[i].Available {
			r.presenceOut(ctx, wire.New("presence", "type", "unavailable", "from", routes[i].JID, "to", to))
		}
	}
}

// outboundSubscription handles a subscription stanza a local user sent
// (RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2, Appendix A.2): update the
// user's roster item, push it, and route the stanza from the user's bare
// JID.
func (r *Router) outboundSubscription(ctx context.Context, from string, el *wire.Element) {
	user := wire.BareJID(from)
	ca, err := wire.ParseJID(el.To())
	if err != nil {
		r.bounce(ctx, el, wire.ErrJIDMalformed)
		return
	}
	contact := ca.Bare()
	if contact == user {
		return // subscribing to oneself changes nothing
	}
	typ := el.Type()
	res, err := r.updateSubscription(ctx, user, contact, outbound, typ)
	if err != nil {
		r.bounce(ctx, el, r.rosterErrorFor(err, true))
		return
	}
	if res.push {
		r.pushRoster(ctx, user, res.item, res.removed, res.ver)
	}
	el.SetAttr("from", user)
	el.SetAttr("to", contact)
	switch typ {
	case "subscribed":
		if !res.changed {
			return // no pending request: pre-approval is not supported, ignore (§3.4)
		}
		r.route(ctx, el)
		r.presenceFromResources(ctx, user, contact)
	case "unsubscribed":
		r.route(ctx, el)
		if res.before.from() {
			r.unavailableFromResources(ctx, user, contact)
		}
	default: // subscribe, unsubscribe
		r.route(ctx, el)
	}
}

// inboundSubscription handles a subscription stanza addressed to a local
// user (RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3, Appendix A.3).
func (r *Router) inboundSubscription(ctx context.Context, el *wire.Element, a wire.JID) {
	sender := wire.JIDOf(el.From()).Bare()
	if sender == "" || sender == a.Bare() {
		return
	}
	typ := el.Type()
	if typ == "subscribe" && !r.userExists(ctx, a.Local()) {
		// §3.1.3: no such contact → unsubscribed on its behalf.
		r.route(ctx, wire.New("presence", "type", "unsubscribed", "from", a.Bare(), "to", sender))
		return
	}
	res, err := r.updateSubscription(ctx, a.Bare(), sender, inbound, typ)
	if err != nil {
		r.log.Warn("router: inbound subscription failed", "to", a.Bare(), "from", sender, "type", typ, "err", err)
		if typ == "subscribe" {
			r.bounce(ctx, el, r.rosterErrorFor(err, false))
		}
		return
	}
	if res.push {
		r.pushRoster(ctx, a.Bare(), res.item, res.removed, res.ver)
	}
	// Deliver from the sender's bare JID (§3.1.3: the 'from' of a
	// subscription stanza is a bare JID).
	el.SetAttr("from", sender)
	switch typ {
	case "subscribe":
		if res.before.from() {
			// Already subscribed: answer for the user (§3.1.3).
			r.presenceOut(ctx, wire.New("presence", "type", "subscribed", "from", a.Bare(), "to", sender))
			return
		}
		// Deliver to every available resource; with none, the request
		// stays pending in the roster and is delivered at the next
		// initial presence.
		r.deliverAvailable(ctx, a.Bare(), el)
	case "unsubscribe":
		if !res.changed {
			return
		}
		r.deliverAvailable(ctx, a.Bare(), el)
		if res.before.from() {
			r.unavailableFromResources(ctx, a.Bare(), sender)
		}
	default: // subscribed, unsubscribed
		if res.changed {
			r.deliverAvailable(ctx, a.Bare(), el)
		}
	}
}

// deliverAvailable delivers a stanza to every available resource of a
// local user, whatever its priority. It reports how many took it.
func (r *Router) deliverAvailable(ctx context.Context, bare string, el *wire.Element) int {
	routes, err := r.routes(ctx, bare)
	if err != nil {
		return 0
	}
	n := 0
	for i := range routes {
		if routes[i].Available && r.deliver(ctx, &routes[i], el) {
			n++
		}
	}
	return n
}

// setLast records when a user's last resource went away (XEP-0012).
func (r *Router) setLast(ctx context.Context, bare, status string) {
	if r.store == nil {
		return
	}
	dctx, cancel := r.dbCtx(ctx)
	defer cancel()
	if err := last.Save(dctx, r.store, bare, r.now(), status); err != nil {
		r.log.Warn("router: recording last activity failed", "jid", bare, "err", err)
	}
}
