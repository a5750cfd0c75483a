package hazelcast

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/hazelcast/hazelcast-go-client/predicate"
	"github.com/hazelcast/hazelcast-go-client/types"

	"github.com/aviary-im/aviary/cluster"
)

var stripeSeed = maphash.MakeSeed()

func (c *Cluster) stripe(full string) *sync.Mutex {
	return &c.stripes[maphash.String(stripeSeed, full)%uint64(len(c.stripes))]
}

func (c *Cluster) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cc.OperationTimeout)
}

// PutRoute publishes or updates a route owned by this node. The local
// index always takes it; Hazelcast does when clustered. A failed Hazelcast
// write is retried at the next heartbeat, so the session keeps working.
func (c *Cluster) PutRoute(ctx context.Context, r cluster.Route) error {
	if r.JID == "" {
		return fmt.Errorf("cluster/hazelcast: route without JID")
	}
	r.Node = c.name
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	s := c.stripe(r.JID)
	s.Lock()
	defer s.Unlock()
	bare := cluster.BareJID(r.JID)
	c.ownMu.Lock()
	m := c.own[bare]
	if m == nil {
		m = map[string]cluster.Route{}
		c.own[bare] = m
	}
	m[r.JID] = r
	c.ownMu.Unlock()
	if c.writeThrough.Load() {
		c.writeRouteLocked(ctx, r.JID)
	} else if c.detached.Load() {
		c.announce(ctx, r.JID, c.incarnation(), c.seq.Add(1), &r)
	}
	return nil
}

// DeleteRoute removes a route owned by this node.
func (c *Cluster) DeleteRoute(ctx context.Context, fullJID string) error {
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	s := c.stripe(fullJID)
	s.Lock()
	defer s.Unlock()
	bare := cluster.BareJID(fullJID)
	c.ownMu.Lock()
	if m := c.own[bare]; m != nil {
		delete(m, fullJID)
		if len(m) == 0 {
			delete(c.own, bare)
		}
	}
	c.ownMu.Unlock()
	if c.writeThrough.Load() {
		c.writeRouteLocked(ctx, fullJID)
	} else if c.detached.Load() {
		c.announce(ctx, fullJID, c.incarnation(), c.seq.Add(1), nil)
	}
	return nil
}

func (c *Cluster) ownRoute(full string) (cluster.Route, bool) {
	c.ownMu.RLock()
	defer c.ownMu.RUnlock()
	r, ok := c.own[cluster.BareJID(full)][full]
	return r, ok
}

func (c *Cluster) ownRoutes(bare string) []cluster.Route {
	c.ownMu.RLock()
	defer c.ownMu.RUnlock()
	m := c.own[bare]
	if len(m) == 0 {
		return nil
	}
	out := make([]cluster.Route, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	return out
}

func (c *Cluster) allOwn() []cluster.Route {
	c.ownMu.RLock()
	defer c.ownMu.RUnlock()
	var out []cluster.Route
	for _, m := range c.own {
		for _, r := range m {
			out = append(out, r)
		}
	}
	return out
}

// writeRouteLocked writes the local index's state of full to Hazelcast
// (a put, or a delete when it is gone). Its stripe must be held. A failure
// marks it pending.
func (c *Cluster) writeRouteLocked(ctx context.Context, full string) {
	o := c.objs()
	err := errNoClient
	if o != nil {
		octx, cancel := c.opCtx(ctx)
		defer cancel()
		inc, seq := c.incarnation(), c.seq.Add(1)
		r, ok := c.ownRoute(full)
		if ok {
			var v any
			if v, err = toJSON(routeRecord{Route: r, Bare: cluster.BareJID(full), Inc: inc, Seq: seq}); err == nil {
				err = o.routes.Set(octx, full, v)
			}
		} else {
			err = o.routes.Delete(octx, full)
		}
		if err == nil {
			if ok {
				c.announce(ctx, full, inc, seq, &r)
			} else {
				c.announce(ctx, full, inc, seq, nil)
			}
		}
	}
	c.pendingMu.Lock()
	if err != nil {
		c.pending[full] = struct{}{}
	} else {
		delete(c.pending, full)
	}
	c.pendingMu.Unlock()
	if err != nil {
		c.log.Warn("cluster route write failed; will retry", "jid", full, "err", err)
		c.wake()
	}
}

// flushPending retries failed route writes.
func (c *Cluster) flushPending(ctx context.Context) {
	c.pendingMu.Lock()
	if len(c.pending) == 0 {
		c.pendingMu.Unlock()
		return
	}
	fulls := make([]string, 0, len(c.pending))
	for f := range c.pending {
		fulls = append(fulls, f)
	}
	c.pendingMu.Unlock()
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	if !c.writeThrough.Load() {
		return
	}
	for _, f := range fulls {
		s := c.stripe(f)
		s.Lock()
		c.writeRouteLocked(ctx, f)
		s.Unlock()
	}
}

// Routes returns every route of bareJID on visible nodes. Unclustered, it
// returns this node's own routes only. This node's routes always come
// from the local index; the others from the route replica (no round
// trip), or, before the replica is loaded or with Options.NoRouteCache,
// from one indexed query on the "bare" field of the routes map. Detached,
// it never asks Hazelcast: the replica as last seen (kept up to date by
// the other nodes' announcements) and the members as last seen decide.
func (c *Cluster) Routes(ctx context.Context, bareJID string) ([]cluster.Route, error) {
	return c.routes(ctx, bareJID, false)
}

// RoutesFromSource is Routes asking Hazelcast itself, never the replica
// (unless detached, when Hazelcast cannot be asked): it sees every route
// write that completed before it began. The router uses it after storing
// a message offline, so that the commit and a session's route write,
// each followed by the other's read (the session takes the offline queue
// after its route is written), cannot both miss each other, as they could
// with a replica that learns of the route a moment later.
func (c *Cluster) RoutesFromSource(ctx context.Context, bareJID string) ([]cluster.Route, error) {
	return c.routes(ctx, bareJID, true)
}

func (c *Cluster) routes(ctx context.Context, bareJID string, fromSource bool) ([]cluster.Route, error) {
	out := c.ownRoutes(bareJID)
	if !c.clustered.Load() {
		sortRoutes(out)
		return out, nil
	}
	detached := c.detached.Load()
	var recs []routeRecord
	if rc := c.cache.Load(); rc != nil && (detached || (!fromSource && !c.isDirty(bareJID))) {
		recs = rc.get(bareJID, nil)
	} else if detached {
		sortRoutes(out)
		return out, nil
	} else {
		o := c.objs()
		if o == nil {
			sortRoutes(out)
			return out, nil
		}
		octx, cancel := c.opCtx(ctx)
		defer cancel()
		vals, err := o.routes.GetValuesWithPredicate(octx, predicate.Equal("bare", bareJID))
		if err != nil {
			sortRoutes(out)
			return out, fmt.Errorf("cluster/hazelcast: routes of %s: %w", bareJID, err)
		}
		for _, v := range vals {
			var rr routeRecord
			if err := fromValue(v, &rr); err != nil {
				c.log.Warn("cluster bad route value", "err", err)
				continue
			}
			recs = append(recs, rr)
		}
	}
	refreshed := false
	for _, rr := range recs {
		if rr.Node == c.name {
			continue // the local index is authoritative
		}
		if !c.visibleInc(rr.Node, rr.Inc) {
			if detached || refreshed || !c.refreshMember(ctx, rr.Node) {
				continue
			}
			refreshed = true
			if !c.visibleInc(rr.Node, rr.Inc) {
				continue
			}
		}
		out = append(out, rr.Route)
	}
	sortRoutes(out)
	return out, nil
}

func (c *Cluster) visibleInc(node, inc string) bool {
	c.viewMu.RLock()
	defer c.viewMu.RUnlock()
	m, ok := c.view[node]
	return ok && m.Inc == inc
}

// refreshMember reads one member entry, for a route of a node that joined
// since the last poll. It adds, never removes; the poll does the rest.
func (c *Cluster) refreshMember(ctx context.Context, node string) bool {
	o := c.objs()
	if o == nil {
		return false
	}
	// Routes of a node that is not visible (disabled, or dead and not yet
	// cleaned up) would cost a round trip each time: remember the answer
	// for one heartbeat.
	c.negMu.Lock()
	if t, ok := c.neg[node]; ok && time.Since(t) < c.cc.HeartbeatInterval {
		c.negMu.Unlock()
		return false
	}
	c.negMu.Unlock()
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	v, err := o.members.Get(octx, node)
	var mr memberRecord
	if err != nil || v == nil || fromValue(v, &mr) != nil || !mr.Clustered || mr.Name != node {
		c.negMu.Lock()
		if len(c.neg) > 1000 {
			clear(c.neg)
		}
		c.neg[node] = time.Now()
		c.negMu.Unlock()
		return false
	}
	c.viewMu.Lock()
	if cur, ok := c.view[node]; !ok || cur.Inc != mr.Inc {
		c.view[node] = mr
	}
	c.viewMu.Unlock()
	return true
}

// reconcile makes Hazelcast hold exactly this node's local index under the
// current incarnation, then turns write-through on. Route writers wait
// meanwhile (syncMu), so nothing slips between the copy and write-through.
func (c *Cluster) reconcile(ctx context.Context, o *hzObjs) error {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	inc := c.incarnation()
	octx, cancel := context.WithTimeout(ctx, 4*c.cc.OperationTimeout)
	defer cancel()
	// Stale routes of this node: changed while not writing through, or
	// left by an earlier incarnation of this process. Sessions still in
	// the index are overwritten below under the current incarnation.
	keys, err := o.routes.GetKeySetWithPredicate(octx, predicate.Equal("node", c.name))
	if err != nil {
		return fmt.Errorf("cluster/hazelcast: reconcile: %w", err)
	}
	for _, k := range keys {
		full, _ := k.(string)
		if _, ok := c.ownRoute(full); !ok {
			if err := o.routes.Delete(octx, k); err != nil {
				return fmt.Errorf("cluster/hazelcast: reconcile: %w", err)
			}
		}
	}
	own := c.allOwn()
	const batch = 500
	for i := 0; i < len(own); i += batch {
		entries := make([]types.Entry, 0, batch)
		for _, r := range own[i:min(i+batch, len(own))] {
			v, err := toJSON(routeRecord{Route: r, Bare: cluster.BareJID(r.JID), Inc: inc, Seq: c.seq.Add(1)})
			if err != nil {
				return err
			}
			entries = append(entries, types.Entry{Key: r.JID, Value: v})
		}
		if err := o.routes.PutAll(octx, entries...); err != nil {
			return fmt.Errorf("cluster/hazelcast: republish: %w", err)
		}
	}
	c.pendingMu.Lock()
	clear(c.pending)
	c.pendingMu.Unlock()
	c.writeThrough.Store(true)
	c.log.Info("cluster routes published", "routes", len(own), "inc", inc)
	return nil
}

// stopWriteThrough stops route writes to Hazelcast; waits for in-flight ones.
func (c *Cluster) stopWriteThrough() {
	c.syncMu.Lock()
	c.writeThrough.Store(false)
	c.pendingMu.Lock()
	clear(c.pending)
	c.pendingMu.Unlock()
	c.syncMu.Unlock()
}

// routesOfInc returns every route published by incarnation inc.
func (c *Cluster) routesOfInc(ctx context.Context, o *hzObjs, inc string) ([]cluster.Route, error) {
	vals, err := o.routes.GetValuesWithPredicate(ctx, predicate.Equal("inc", inc))
	if err != nil {
		return nil, err
	}
	out := make([]cluster.Route, 0, len(vals))
	for _, v := range vals {
		var rr routeRecord
		if fromValue(v, &rr) == nil {
			out = append(out, rr.Route)
		}
	}
	sortRoutes(out)
	return out, nil
}
