package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// session is the router's record of one local session. Every field after
// the first three is guarded by Router.mu; every change that other nodes
// need is republished as the session's cluster.Route.
type session struct {
	s    Session
	full string
	bare string

	presence   *wire.Element // last available presence broadcast (nil before initial presence)
	priority   int
	available  bool
	interested bool // requested the roster: gets pushes (RFC 6121 §2.1.6)
	carbons    bool
	directed   map[string]struct{} // JIDs that got directed presence (RFC 6121 §4.6)
	status     string              // <status/> of the last unavailable presence, for last activity

	// The backlog hand-over (backlog.go): pumping while a pump runs or
	// waits for room, again when something may have been stored since it
	// last looked, subs the subscription requests it has still to replay.
	pumping bool
	again   bool
	subs    []*wire.Element
	// backlogFailures counts the offline reads that failed in a row,
	// backlogRetry is set while a retry waits (backlog.go retryBacklog);
	// guarded by Router.mu.
	backlogFailures int
	backlogRetry    bool
}

// routeLocked returns the route this session publishes.
func (s *session) routeLocked(node string) cluster.Route {
	rt := cluster.Route{JID: s.full, Node: node, Priority: s.priority, Available: s.available}
	if s.interested {
		rt.Flags |= cluster.FlagRoster
	}
	if s.carbons {
		rt.Flags |= cluster.FlagCarbons
	}
	return rt
}

// Bind registers a session for username with the requested resource ("" to
// have one generated) and returns the bound full JID. It applies the
// configured resource conflict policy (c2s.resource_conflict) against
// sessions on every node:
//   - kick_old: the old session is logged out (unavailable presence sent on
//     its behalf) and closed with the "conflict" stream error, locally or by
//     a "kick" call to the node that owns it;
//   - reject: Bind returns wire.ErrConflict;
//   - new_resource: Bind itself picks another resource (the requested one
//     with a random suffix) and returns the JID it bound, so the caller
//     must always use the returned JID.
func (r *Router) Bind(ctx context.Context, s Session, username, resource string) (wire.JID, error) {
	if resource == "" {
		resource = randomResource()
	}
	full, err := wire.NewJID(username, r.domain, resource)
	if err != nil {
		return wire.JID{}, wire.ErrBadRequest
	}
	for attempt := 0; ; attempt++ {
		key := full.String()
		old, remote := r.findBound(ctx, key)
		if old == nil && remote == nil {
			break
		}
		switch r.cfg.C2S.ResourceConflict {
		case "reject":
			return wire.JID{}, wire.ErrConflict
		case "new_resource":
			if attempt > 8 {
				return wire.JID{}, wire.ErrConflict
			}
			full, err = wire.NewJID(username, r.domain, resource+"-"+randomSuffix())
			if err != nil {
				return wire.JID{}, wire.ErrBadRequest
			}
			continue
		default: // kick_old
			if old != nil {
				if r.logout(ctx, old, nil) {
					old.s.Close("conflict", "replaced by a new session")
				}
			} else {
				r.kickRemote(ctx, *remote, "conflict", "replaced by a new session")
			}
		}
		break
	}

	rec := &session{s: s, full: full.String(), bare: full.Bare()}
	r.mu.Lock()
	prev := r.sessions[rec.full]
	if prev != nil {
		r.removeLocked(prev)
	}
	rt := r.addLocked(rec)
	r.mu.Unlock()
	if prev != nil {
		// Lost a race with another Bind of the same resource on this node.
		prev.s.Close("conflict", "replaced by a new session")
	}
	if err := r.putRoute(ctx, rt); err != nil {
		r.log.Warn("router: publishing route failed", "jid", rec.full, "err", err)
	}
	return full, nil
}

// findBound looks for a session bound to full: a local record first, then
// a route owned by another node.
func (r *Router) findBound(ctx context.Context, full string) (*session, *cluster.Route) {
	r.mu.RLock()
	old := r.sessions[full]
	r.mu.RUnlock()
	if old != nil || !r.clustered() {
		return old, nil
	}
	cctx, cancel := r.clusterCtx(ctx)
	defer cancel()
	routes, err := r.cluster.Routes(cctx, cluster.BareJID(full))
	if err != nil {
		return nil, nil
	}
	for i := range routes {
		if routes[i].JID == full && routes[i].Node != r.node {
			return nil, &routes[i]
		}
	}
	return nil, nil
}

// Unbind removes a session after it ended. If the session was available,
// unavailable presence goes to its subscribers and to everyone that got
// directed presence (RFC 6121 §4.5.2); its route is deleted; when it was
// the user's last resource, last activity is recorded. unsent holds stanzas
// the session had queued but not delivered; they are routed again
// (messages end with another resource or in offline storage), so nothing
// accepted is lost. A stanza's receipt is released once the new route
// has made it safe.
func (r *Router) Unbind(ctx context.Context, s Session, unsent []Unsent) {
	ctx = context.WithoutCancel(ctx)
	full := s.JID().String()
	r.mu.RLock()
	rec := r.sessions[full]
	if rec != nil && rec.s != s {
		rec = nil // already replaced (kick_old) or logged out by Kick
	}
	r.mu.RUnlock()
	if rec != nil {
		r.logout(ctx, rec, nil)
	}
	bare := cluster.BareJID(full)
	for _, u := range unsent {
		if u.Receipt == nil {
			r.reroute(ctx, u.El, bare)
			continue
		}
		rc := u.Receipt
		h := newHold(func() { r.custody.release(rc) })
		r.reroute(withHold(ctx, h), u.El, bare)
		h.release()
	}
}

// Release lets the copies go that the receipts name: their sessions'
// clients have the messages (Receipted).
func (r *Router) Release(rcs []*Receipt) {
	for _, rc := range rcs {
		r.custody.release(rc)
	}
}

// reroute routes a stanza a gone session had not delivered.
func (r *Router) reroute(ctx context.Context, el *wire.Element, bare string) {
	switch el.Name {
	case "presence":
		return // presence is transient: nobody to show it to
	case "message":
		if isCarbonCopy(el) {
			return // the original is already somewhere else
		}
	case "iq":
		if el.From() == bare || el.From() == "" {
			return // roster pushes and server requests for the gone session
		}
	}
	r.route(ctx, el)
}

// logout removes a session record and does what its going away means:
// the route is deleted, unavailable presence is broadcast if it was
// available (unavailable, when given, is the presence to send), and last
// activity is recorded when no resource of the user is left. It reports
// false when the record was not registered any more (someone else logged
// it out first).
func (r *Router) logout(ctx context.Context, s *session, unavailable *wire.Element) bool {
	r.mu.Lock()
	if r.sessions[s.full] != s {
		r.mu.Unlock()
		return false
	}
	r.removeLocked(s)
	wasAvailable, directed, status := s.available, s.directed, s.status
	s.available, s.directed, s.presence = false, nil, nil
	remaining := len(r.byBare[s.bare])
	r.mu.Unlock()

	if err := r.deleteRoute(ctx, s.full); err != nil {
		r.log.Warn("router: deleting route failed", "jid", s.full, "err", err)
	}
	if wasAvailable {
		if unavailable == nil {
			unavailable = wire.New("presence", "type", "unavailable")
		}
		unavailable.SetAttr("from", s.full)
		unavailable.RemoveAttr("to")
		if st := unavailable.ChildText("status", ""); st != "" {
			status = st
		}
		r.broadcast(ctx, s.bare, unavailable, directed)
	} else if len(directed) > 0 {
		// Directed presence sent while not available still ends (§4.6.3).
		un := wire.New("presence", "type", "unavailable", "from", s.full)
		for to := range directed {
			r.presenceOut(ctx, withTo(un, to))
		}
	}
	if remaining == 0 {
		if routes, err := r.routes(ctx, s.bare); err == nil && len(routes) == 0 {
			r.setLast(ctx, s.bare, status)
		}
	}
	return true
}

// removeLocked drops a record from both indexes.
// addLocked registers a session record and returns the route it publishes.
func (r *Router) addLocked(s *session) cluster.Route {
	r.sessions[s.full] = s
	r.byBare[s.bare] = append(r.byBare[s.bare], s)
	return s.routeLocked(r.node)
}

func (r *Router) removeLocked(s *session) {
	if r.sessions[s.full] == s {
		delete(r.sessions, s.full)
	}
	list := r.byBare[s.bare]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byBare, s.bare)
	} else {
		r.byBare[s.bare] = list
	}
}

// clustered reports whether routes are shared with other nodes right now.
func (r *Router) clustered() bool { return r.cluster != nil && r.cluster.Clustered() }

// routes returns every route of a bare JID: from the cluster's table when
// clustered, else from the local index (no other node is reachable).
//
// Unlike the writes, the read gets no deadline of its own here: it runs
// for every routed stanza and is nearly always answered from the
// cluster's local replica, while the implementation bounds any network
// call it makes with cluster.operation_timeout itself.
// sourceRouter is a cluster whose routes can be read from their source,
// not from a replica that may lag behind it (cluster/hazelcast).
type sourceRouter interface {
	RoutesFromSource(ctx context.Context, bareJID string) ([]cluster.Route, error)
}

// routesFromSource is routes read from the source when the cluster keeps
// a replica: for a read that must see every route write completed before
// it (after an offline commit: flushOffline).
func (r *Router) routesFromSource(ctx context.Context, bare string) ([]cluster.Route, error) {
	if sr, ok := r.cluster.(sourceRouter); ok && r.clustered() {
		routes, err := sr.RoutesFromSource(ctx, bare)
		if err != nil {
			return nil, errors.Join(ErrRoutes, err)
		}
		return routes, nil
	}
	return r.routes(ctx, bare)
}

func (r *Router) routes(ctx context.Context, bare string) ([]cluster.Route, error) {
	if r.clustered() {
		routes, err := r.cluster.Routes(ctx, bare)
		if err != nil {
			return nil, errors.Join(ErrRoutes, err)
		}
		return routes, nil
	}
	r.mu.RLock()
	list := r.byBare[bare]
	if len(list) == 0 {
		r.mu.RUnlock()
		return nil, nil
	}
	out := make([]cluster.Route, len(list))
	for i, s := range list {
		out[i] = s.routeLocked(r.node)
	}
	r.mu.RUnlock()
	return out, nil
}

func (r *Router) putRoute(ctx context.Context, rt cluster.Route) error {
	if r.cluster == nil {
		return nil
	}
	cctx, cancel := r.clusterCtx(ctx)
	defer cancel()
	return r.cluster.PutRoute(cctx, rt)
}

func (r *Router) deleteRoute(ctx context.Context, full string) error {
	if r.cluster == nil {
		return nil
	}
	cctx, cancel := r.clusterCtx(ctx)
	defer cancel()
	return r.cluster.DeleteRoute(cctx, full)
}

// publish republishes a local session's route after its record changed.
func (r *Router) publish(ctx context.Context, full string) {
	r.mu.RLock()
	s := r.sessions[full]
	if s == nil {
		r.mu.RUnlock()
		return
	}
	rt := s.routeLocked(r.node)
	r.mu.RUnlock()
	if err := r.putRoute(ctx, rt); err != nil {
		r.log.Warn("router: publishing route failed", "jid", full, "err", err)
	}
}

// isLocal reports whether a route is served by this node.
func (r *Router) isLocal(rt *cluster.Route) bool {
	return rt.Node == r.node || rt.Node == "" || !r.clustered()
}

// deliver hands a stanza to one resource wherever it is connected. It
// reports whether the resource (or its node) took it; on false the caller
// falls back (offline storage, bounce, drop).
func (r *Router) deliver(ctx context.Context, rt *cluster.Route, el *wire.Element) bool {
	if r.isLocal(rt) {
		return r.deliverLocal(ctx, rt.JID, el)
	}
	if r.custody.protects(el) && r.custody.capable(rt.Node) {
		if !r.custody.forward(ctx, rt.Node, rt.JID, el) {
			return false
		}
		r.m.sentNode.Inc()
		return true
	}
	if err := r.sendStanza(ctx, rt.Node, rt.JID, el); err != nil {
		r.log.Debug("router: delivery to node failed", "node", rt.Node, "to", rt.JID, "err", err)
		return false
	}
	r.m.sentNode.Inc()
	return true
}

// deliverLocal queues a stanza on a local session after the PointDeliver
// interceptors. A presence probe is not queued: the router answers it for
// the resource. It reports false when no such session is bound or it
// refused the stanza.
func (r *Router) deliverLocal(ctx context.Context, full string, el *wire.Element) bool {
	return r.deliverTo(ctx, full, el, nil)
}

// deliverTo is deliverLocal for a stanza that may come with a receipt (a
// protected message another node keeps a copy of). Without one, a
// protected message gets a local copy deposited with a buddy node. The
// session keeps the receipt until its client has the stanza; when the
// session cannot report that, the receipt is released once it is queued.
// On false the caller falls back and releases rc.
func (r *Router) deliverTo(ctx context.Context, full string, el *wire.Element, rc *Receipt) bool {
	r.mu.RLock()
	s := r.sessions[full]
	r.mu.RUnlock()
	if s == nil {
		return false
	}
	if el.Name == "presence" && el.Type() == "probe" {
		r.answerProbeLocal(ctx, s, el)
		return true
	}
	if el.Name == "iq" && (el.Type() == "result" || el.Type() == "error") {
		r.iqs.answered(el)
	}
	if r.plugins != nil {
		// The same element may be on its way to other sessions: give the
		// interceptors (which may change or replace it) a private top level.
		el = privateCopy(el)
		if !r.intercept(ctx, plugins.PointDeliver, el, full, false) {
			r.custody.release(rc)
			return true // a plugin dropped or took it
		}
	}
	if rs, ok := s.s.(Receipted); ok && (rc != nil || r.custody.protects(el)) {
		var k *kept
		if rc == nil {
			rc, k = r.custody.keepLocal(ctx, full, el)
		}
		if rc != nil {
			if !rs.SendReceipted(el, rc) {
				r.custody.unkeep(k)
				return false
			}
			r.m.deliveredLocal.Inc()
			return true
		}
	}
	if !s.s.Send(el) {
		return false
	}
	r.custody.release(rc)
	r.m.deliveredLocal.Inc()
	return true
}

// privateCopy copies an element's top level (attributes and the list of
// children, not the children themselves), so changing or replacing it
// leaves the original alone.
func privateCopy(el *wire.Element) *wire.Element {
	c := &wire.Element{Name: el.Name, Text: el.Text, Tail: el.Tail}
	c.Attrs = append([]wire.Attr(nil), el.Attrs...)
	c.Children = append([]*wire.Element(nil), el.Children...)
	return c
}

func randomResource() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "av-" + hex.EncodeToString(b[:])
}

func randomSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// randomID makes stanza ids for pushes the server originates.
func randomID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
