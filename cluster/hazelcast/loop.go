package hazelcast

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"time"

	"github.com/hazelcast/hazelcast-go-client/aggregate"
	"github.com/hazelcast/hazelcast-go-client/predicate"

	"github.com/aviary-im/aviary/cluster"
)

// downTTL is how long the record of a dead incarnation's routes is kept
// for survivors that notice it late.
const downTTL = 10 * time.Minute

// linkFlushTimeout bounds how long Stop waits for the links to deliver.
const linkFlushTimeout = 5 * time.Second

// Start listens for links, reads the switch, connects to Hazelcast
// (cluster.startup_retries attempts of cluster.startup_retry_interval
// each; after that the node runs alone and keeps trying in the
// background) and, when the switch is on, registers and publishes routes
// before returning. Register handlers before Start.
func (c *Cluster) Start(ctx context.Context) error {
	addr := c.links.Addr()
	if addr == nil {
		var err error
		if addr, err = c.links.Listen(c.cc.Listen); err != nil {
			return fmt.Errorf("cluster/hazelcast: %w", err)
		}
	}
	c.linkAddr = advertise(c.cc.Advertise, addr)
	c.selfMu.Lock()
	c.self.LinkAddr = c.linkAddr
	c.selfMu.Unlock()
	c.newIncarnation()
	c.sw.Start(ctx)
	var err error
	for i := 1; i <= c.cc.StartupRetries; i++ {
		if err = c.connect(ctx, c.cc.StartupRetryInterval); err == nil {
			break
		}
		c.log.Warn("cluster hazelcast unreachable", "attempt", i, "of", c.cc.StartupRetries, "err", err)
		if ctx.Err() != nil {
			c.sw.Stop()
			c.closeLinks()
			return ctx.Err()
		}
	}
	if err != nil {
		c.log.Error("cluster running alone; will keep trying Hazelcast", "err", err)
	} else if o := c.objs(); o != nil {
		if err := c.checkNameFree(ctx, o); err != nil {
			_ = o.client.Shutdown(context.Background())
			c.hzMu.Lock()
			c.hzObjs = nil
			c.hzMu.Unlock()
			c.sw.Stop()
			c.closeLinks()
			return err
		}
	}
	c.lastTry = time.Now()
	// Heartbeats start before the first join: the join (indexes, publish,
	// replica) can outlast node_ttl on a loaded machine, and the entry
	// the first tick registers would expire under it (the node then took
	// a new incarnation and joined a second time).
	c.goFunc(c.heartbeatLoop)
	c.tick(ctx)
	c.goFunc(c.eventLoop)
	c.goFunc(c.loop)
	return nil
}

// closeLinks closes the links when this cluster made them; the node
// closes its own.
func (c *Cluster) closeLinks() {
	if c.ownLinks {
		c.links.Close()
	}
}

// Stop leaves the cluster: it lets the links deliver what is queued on
// them (up to linkFlushTimeout), deletes this node's routes and
// membership, closes the Hazelcast client and the links.
func (c *Cluster) Stop(ctx context.Context) error {
	// The node's sessions are gone by now, and what they had not delivered
	// was routed again, much of it onto the links: let it arrive rather
	// than come back undelivered to a node that is going away.
	fctx, cancel := context.WithTimeout(ctx, linkFlushTimeout)
	if err := c.links.Flush(fctx); err != nil {
		c.log.Warn("cluster links not flushed before stopping", "err", err)
	}
	cancel()
	c.sw.Stop()
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
	c.stopWriteThrough()
	c.clustered.Store(false)
	var errs []error
	if o := c.objs(); o != nil {
		if c.hzUp.Load() {
			octx, cancel := c.opCtx(ctx)
			if err := o.routes.RemoveAll(octx, predicate.Equal("inc", c.incarnation())); err != nil {
				errs = append(errs, err)
			}
			if err := o.members.Delete(octx, c.name); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		if err := o.client.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		c.hzMu.Lock()
		c.hzObjs = nil
		c.hzMu.Unlock()
	}
	// Links made by the node stay up until the node closes them, but
	// nobody is a member any more: forget every peer.
	peers := map[string]memberRecord{}
	c.viewMu.Lock()
	maps.Copy(peers, c.reach)
	maps.Copy(peers, c.view)
	c.reach, c.view = nil, map[string]memberRecord{}
	c.viewMu.Unlock()
	for name := range peers {
		c.links.Forget(name)
	}
	c.closeLinks()
	return errors.Join(errs...)
}

// ErrNameInUse is returned by Start when another live node already uses
// this node's cluster.node_name: the two would overwrite each other's
// membership entry and routes.
var ErrNameInUse = errors.New("cluster/hazelcast: node name in use by another live node")

// checkNameFree refuses to join under a name another live node heartbeats
// with. An entry left by this node's previous run (killed within
// cluster.node_ttl) stops changing; a live node rewrites its entry every
// heartbeat, so watching it for two heartbeat intervals tells them apart.
// Only a node that finds such an entry at start waits.
func (c *Cluster) checkNameFree(ctx context.Context, o *hzObjs) error {
	read := func() (memberRecord, bool) {
		octx, cancel := c.opCtx(ctx)
		defer cancel()
		v, err := o.members.Get(octx, c.name)
		var mr memberRecord
		if err != nil || v == nil || fromValue(v, &mr) != nil {
			return mr, false // unreadable: the heartbeat still logs a clash
		}
		return mr, true
	}
	first, ok := read()
	if !ok {
		return nil
	}
	c.log.Info("cluster found an entry under this node's name; checking that it is a previous run's", "inc", first.Inc)
	deadline := time.Now().Add(min(2*c.cc.HeartbeatInterval+c.cc.HeartbeatInterval/2, c.cc.NodeTTL))
	tick := time.NewTicker(max(c.cc.HeartbeatInterval/4, 10*time.Millisecond))
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		cur, ok := read()
		if !ok {
			return nil // expired or deleted: nobody is using it
		}
		if cur.Inc != first.Inc || !cur.Seen.Equal(first.Seen) {
			return fmt.Errorf("%w: %q (cluster.node_name) is heartbeating from %s as %s; give every node its own name",
				ErrNameInUse, c.name, cur.LinkAddr, cur.Inc)
		}
	}
	c.hbMu.Lock()
	c.previousRun = first.Inc
	c.hbMu.Unlock()
	return nil
}

func (c *Cluster) incarnation() string {
	c.selfMu.Lock()
	defer c.selfMu.Unlock()
	return c.inc
}

func (c *Cluster) newIncarnation() {
	c.selfMu.Lock()
	c.inc = c.name + "#" + strconv.FormatInt(time.Now().UnixNano(), 10)
	c.selfMu.Unlock()
}

// untilStop returns a context cancelled when the cluster stops (or cancel
// is called), for the calls the node's loops make to Hazelcast.
func (c *Cluster) untilStop() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-c.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

func (c *Cluster) loop() {
	t := time.NewTicker(c.cc.HeartbeatInterval)
	defer t.Stop()
	ctx, cancel := c.untilStop()
	defer cancel()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		c.tick(ctx)
	}
}

// tick is one step of the state machine; only the loop (and Start, before
// the loop exists) runs it.
func (c *Cluster) tick(ctx context.Context) {
	o := c.objs()
	if o != nil && !o.client.Running() {
		// The client gave up for good (it normally reconnects for ever,
		// but a custom config file may set a timeout): start a new one.
		c.hzMu.Lock()
		c.hzObjs = nil
		c.hzMu.Unlock()
		c.hzUp.Store(false)
		o = nil
	}
	connected := o != nil && c.hzUp.Load()
	want := c.sw.Enabled()
	if !connected {
		switch {
		case c.clustered.Load() && !want:
			c.leave(ctx, nil) // switched off meanwhile: alone, as ordered
		case c.clustered.Load():
			if !c.detached.Load() {
				c.detach("hazelcast unreachable")
			}
		default:
			c.senior.Store(true)
		}
		if o == nil && time.Since(c.lastTry) >= c.cc.StartupRetryInterval {
			c.lastTry = time.Now()
			if err := c.connect(ctx, c.cc.StartupRetryInterval); err != nil {
				c.log.Debug("cluster hazelcast still unreachable", "err", err)
			} else {
				c.wake()
			}
		}
		return
	}
	if !c.isRegistered() {
		// The first registration precedes everything else; later
		// heartbeats run on their own goroutine (heartbeatLoop) so that a
		// long join or cleanup here never lets the entry expire.
		if _, err := c.heartbeat(ctx, o); err != nil {
			c.log.Warn("cluster registration failed", "err", err)
			return
		}
	}
	if c.entryLost.Swap(false) && c.clustered.Load() && !c.detached.Load() {
		// Our entry was gone: Hazelcast lost its data or the others took
		// us for dead and removed our routes. Join again, routing on what
		// we know meanwhile.
		c.detach("membership entry was gone; re-registering")
	}
	if !want {
		if c.clustered.Load() {
			c.leave(ctx, o)
		}
		c.pollMembers(ctx, o, false)
		return
	}
	if !c.clustered.Load() || c.detached.Load() {
		// Register before publishing, on every join: the entry must say
		// clustered before this node reads the others (buildCache,
		// pollMembers) and the router resyncs presence. Two nodes that
		// join together (the switch turned on) then cannot both miss each
		// other: whichever reads second sees the first's entry and routes.
		// Left to the next heartbeat (up to heartbeat_interval later),
		// each saw the other's entry still unclustered, dropped its
		// routes, and neither resent presence to the other's users.
		// After a detach this also sends the routes out under the
		// incarnation the entry names (a lost entry means a new one) and
		// keeps the heartbeat from finding the entry gone right after the
		// rejoin.
		if _, err := c.heartbeat(ctx, o); err != nil {
			c.log.Warn("cluster registration before joining failed; will retry", "err", err)
			return
		}
		c.entryLost.Store(false)
		octx, cancel := c.opCtx(ctx)
		err := c.ensureIndexes(octx, o)
		cancel()
		if err == nil {
			err = c.reconcile(ctx, o)
		}
		if err == nil && !c.o.NoRouteCache {
			lctx, cancel := c.opCtx(ctx)
			err = c.listenRoutes(lctx, o)
			cancel()
			if err == nil {
				err = c.buildCache(ctx, o)
			}
		}
		if err != nil {
			c.log.Warn("cluster join failed; will retry", "err", err)
			return
		}
		c.pollMembers(ctx, o, false)
		c.clustered.Store(true)
		if c.detached.Swap(false) {
			c.log.Info("cluster rejoined hazelcast", "inc", c.incarnation())
		}
		c.fireChange(true)
		c.noteMembers()
		c.ticks = 0
	} else {
		c.pollMembers(ctx, o, true)
		c.flushPending(ctx)
		if !c.o.NoRouteCache && (c.resyncNow.Swap(false) || time.Since(c.lastResync) >= c.o.ResyncEvery) {
			if err := c.buildCache(ctx, o); err != nil {
				c.log.Warn("cluster route replica reload failed", "err", err)
				c.resyncNow.Store(true)
			}
		}
	}
	if c.senior.Load() && c.ticks%c.o.SweepEvery == 0 {
		c.sweep(ctx, o)
	}
	c.ticks++
}

func (c *Cluster) isRegistered() bool {
	c.hbMu.Lock()
	defer c.hbMu.Unlock()
	return c.registered
}

// heartbeatLoop refreshes this node's entry every heartbeat interval,
// independently of the state machine, once the loop has registered it.
func (c *Cluster) heartbeatLoop() {
	t := time.NewTicker(c.cc.HeartbeatInterval)
	defer t.Stop()
	ctx, cancel := c.untilStop()
	defer cancel()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		o := c.objs()
		if o == nil || !c.hzUp.Load() || !c.isRegistered() {
			continue
		}
		if _, err := c.heartbeat(ctx, o); err != nil && ctx.Err() == nil {
			c.log.Warn("cluster heartbeat failed", "err", err)
		}
	}
}

// heartbeat writes this node's entry with the TTL. fresh reports that the
// entry was absent: first registration, or the entry was lost, in which
// case the node takes a new incarnation and tells the loop (entryLost).
func (c *Cluster) heartbeat(ctx context.Context, o *hzObjs) (fresh bool, err error) {
	c.hbMu.Lock()
	defer c.hbMu.Unlock()
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	put := func() (any, error) {
		m := c.selfMember()
		m.Seen = time.Now().UTC()
		v, err := toJSON(memberRecord{Member: m, Inc: c.incarnation(), Clustered: c.sw.Enabled()})
		if err != nil {
			return nil, err
		}
		return o.members.PutWithTTL(octx, c.name, v, c.cc.NodeTTL)
	}
	old, err := put()
	if err != nil {
		return false, err
	}
	if old != nil {
		var mr memberRecord
		if fromValue(old, &mr) == nil && mr.Inc != c.incarnation() {
			if mr.Inc == c.previousRun {
				// The entry of this node's previous run, killed less
				// than node_ttl ago: replaced, as checkNameFree decided.
				c.log.Info("cluster replaced the membership entry of this node's previous run", "previous", mr.Inc)
			} else {
				c.log.Error("cluster another node uses this node's name", "inc", mr.Inc)
			}
		}
		return false, nil
	}
	if c.registered {
		// Gone while this process kept running: Hazelcast was too slow
		// for our heartbeats, or lost its data. Keep the incarnation if
		// no survivor buried it meanwhile (liveness.go); otherwise take
		// a new one and rejoin.
		kept, err := c.reviveIncarnation(octx, o)
		if err != nil {
			return false, err
		}
		if kept {
			c.log.Warn("cluster membership entry had lapsed; registered again under the same incarnation", "inc", c.incarnation())
			return false, nil
		}
		c.newIncarnation()
		c.entryLost.Store(true)
		c.wake()
		if _, err := put(); err != nil {
			return true, err
		}
	}
	c.registered = true
	return true, nil
}

// leave stops sharing routes. With o, it first reads the other nodes'
// routes so OnNodeDown can carry them (the switch was turned off); without
// (Hazelcast lost) the callbacks get no routes.
func (c *Cluster) leave(ctx context.Context, o *hzObjs) {
	byNode := map[string][]cluster.Route{}
	prev := c.prevView
	if o != nil && len(prev) > 0 {
		octx, cancel := c.opCtx(ctx)
		vals, err := o.routes.GetValuesWithPredicate(octx, predicate.NotEqual("node", c.name))
		cancel()
		if err != nil {
			c.log.Warn("cluster could not read other nodes' routes", "err", err)
		}
		for _, v := range vals {
			var rr routeRecord
			if fromValue(v, &rr) == nil {
				if m, ok := prev[rr.Node]; ok && m.Inc == rr.Inc {
					byNode[rr.Node] = append(byNode[rr.Node], rr.Route)
				}
			}
		}
	}
	c.stopWriteThrough()
	c.clustered.Store(false)
	c.detached.Store(false)
	c.cache.Store(nil)
	c.prevView = map[string]memberRecord{}
	c.setView(map[string]memberRecord{})
	if o == nil {
		c.setReach(nil) // Hazelcast lost: nobody is known to be alive
	}
	c.senior.Store(true)
	for name := range prev {
		// The switch went off: links to nodes still alive stay up.
		if !c.reachable(name) {
			c.links.Forget(name)
		}
	}
	c.fireChange(false)
	for name := range prev {
		rs := byNode[name]
		sortRoutes(rs)
		c.fireDown(name, rs)
	}
	c.noteMembers()
}

// detach keeps the node clustered on what it last knew while Hazelcast
// is away (or while it re-registers after its entry was lost): the
// members and their link addresses, the route replica, the links. Route
// writes stop going to Hazelcast (the rejoin's reconcile publishes the
// index); instead each write is announced with its route over the links,
// and the others apply it to their replica while they are detached too.
// Nothing is announced to the router: its sessions keep their contacts.
// The next successful join (tick) ends it and runs OnClusteredChange(true).
func (c *Cluster) detach(why string) {
	c.stopWriteThrough()
	c.detached.Store(true)
	routes := 0
	if rc := c.cache.Load(); rc != nil {
		routes = rc.size()
	}
	c.log.Warn("cluster detached from hazelcast; routing over the node links on the members and routes last known",
		"why", why, "members", len(c.prevView), "replica_routes", routes)
}

func (c *Cluster) setView(v map[string]memberRecord) {
	c.viewMu.Lock()
	c.view = v
	c.viewMu.Unlock()
}

func (c *Cluster) setReach(v map[string]memberRecord) {
	c.viewMu.Lock()
	c.reach = v
	c.viewMu.Unlock()
}

// reachable reports whether node is alive (whatever its switch).
func (c *Cluster) reachable(node string) bool {
	c.viewMu.RLock()
	defer c.viewMu.RUnlock()
	_, ok := c.reach[node]
	return ok
}

// pollMembers reads the member map, recomputes seniority and the visible
// set, and with events handles nodes that left it.
func (c *Cluster) pollMembers(ctx context.Context, o *hzObjs, events bool) {
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	entries, err := o.members.GetEntrySet(octx)
	if err != nil {
		c.log.Warn("cluster member poll failed", "err", err)
		return
	}
	now := time.Now()
	self := c.selfMember()
	alive := map[string]memberRecord{}
	for _, e := range entries {
		name, _ := e.Key.(string)
		if name == "" || name == c.name {
			continue
		}
		var mr memberRecord
		if err := fromValue(e.Value, &mr); err != nil || mr.Name != name {
			continue
		}
		// Our own clock decides staleness: a Seen value that stopped
		// changing for NodeTTL is dead even if the entry lingers.
		sm, ok := c.seen[name]
		if !ok || !sm.seen.Equal(mr.Seen) {
			c.seen[name] = seenMark{seen: mr.Seen, local: now}
		} else if now.Sub(sm.local) > c.cc.NodeTTL {
			continue
		}
		alive[name] = mr
	}
	for name := range c.seen {
		if _, ok := alive[name]; !ok {
			delete(c.seen, name)
		}
	}
	senior := true
	for _, mr := range alive {
		if older(mr.Member, self) {
			senior = false
		}
	}
	c.senior.Store(senior)
	c.setReach(maps.Clone(alive))
	visible := map[string]memberRecord{}
	if c.sw.Enabled() {
		for name, mr := range alive {
			if mr.Clustered {
				visible[name] = mr
			}
		}
	}
	if events {
		for name, old := range c.prevView {
			if cur, ok := visible[name]; ok && cur.Inc == old.Inc {
				continue
			}
			if cur, ok := alive[name]; ok && cur.Inc == old.Inc {
				// Alive with its switch off: gone from our view, routes
				// left in place for it to reconcile; its link stays.
				rs, err := c.routesOfInc(octx, o, old.Inc)
				if err != nil {
					c.log.Warn("cluster could not read routes", "node", name, "err", err)
				}
				c.fireDown(name, rs)
				continue
			}
			if _, ok := alive[name]; !ok && c.answersLink(ctx, old) {
				// Its entry lapsed but it answers under the same
				// incarnation: Hazelcast is behind, the node is not
				// dead (liveness.go). Keep routing to it.
				c.log.Warn("cluster member entry lapsed but the node answers on its link; not treating it as dead", "member", name, "inc", old.Inc)
				c.lapsedAlive.Add(1)
				visible[name] = old
				continue
			}
			c.links.Forget(name)
			c.handleDead(ctx, o, old.Inc)
		}
	}
	c.prevView = visible
	c.setView(maps.Clone(visible)) // refreshMember adds to the view
	c.noteMembers()
	for inc := range c.retryDead {
		if m, ok := visible[incName(inc)]; ok && m.Inc == inc {
			// Revived (its entry is back) or answering on its link.
			delete(c.retryDead, inc)
			continue
		}
		c.handleDead(ctx, o, inc)
	}
	for inc, at := range c.handled {
		if now.Sub(at) > downTTL {
			delete(c.handled, inc)
		}
	}
}

// handleDead removes a dead incarnation's routes and runs OnNodeDown with
// them, once per survivor. The first survivor to get there records the
// routes under Prefix+"down"[inc] (PutIfAbsent), so survivors that look
// after the removal still learn them; removal is idempotent.
func (c *Cluster) handleDead(ctx context.Context, o *hzObjs, inc string) {
	if _, done := c.handled[inc]; done {
		delete(c.retryDead, inc)
		return
	}
	octx, cancel := context.WithTimeout(ctx, 2*c.cc.OperationTimeout)
	defer cancel()
	routes, err := c.claimDead(octx, o, inc)
	if err == nil {
		err = o.routes.RemoveAll(octx, predicate.Equal("inc", inc))
	}
	if errors.Is(err, errRevived) {
		// The node claimed its incarnation back (liveness.go): leave its
		// routes. Retried until it shows up alive again, or until the
		// marker expires if it died after all.
		if _, retrying := c.retryDead[inc]; !retrying {
			c.log.Info("cluster member revived itself; not cleaning up its routes", "inc", inc)
		}
		c.retryDead[inc] = struct{}{}
		return
	}
	if err != nil {
		c.log.Warn("cluster dead node cleanup failed; will retry", "inc", inc, "err", err)
		c.retryDead[inc] = struct{}{}
		return
	}
	delete(c.retryDead, inc)
	c.handled[inc] = time.Now()
	if incName(inc) == c.name {
		// An earlier incarnation of this very node (found by the sweep):
		// its sessions that still exist were republished, the rest are
		// gone. Nothing to announce.
		return
	}
	c.fireDown(incName(inc), routes)
}

func (c *Cluster) claimDead(ctx context.Context, o *hzObjs, inc string) ([]cluster.Route, error) {
	var routes []cluster.Route
	v, err := o.down.Get(ctx, inc)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if isRevival(v) {
			return nil, errRevived
		}
		return routes, fromValue(v, &routes)
	}
	if routes, err = c.routesOfInc(ctx, o, inc); err != nil {
		return nil, err
	}
	j, err := toJSON(routes)
	if err != nil {
		return nil, err
	}
	old, err := o.down.PutIfAbsentWithTTL(ctx, inc, j, downTTL)
	if err != nil {
		return nil, err
	}
	if old != nil {
		if isRevival(old) {
			return nil, errRevived
		}
		routes = nil
		return routes, fromValue(old, &routes)
	}
	return routes, nil
}

// sweep (senior only) finds routes of incarnations that are not members
// on two sweeps in a row, such as a node that died while every other node
// was away, and cleans them up as dead.
func (c *Cluster) sweep(ctx context.Context, o *hzObjs) {
	octx, cancel := c.opCtx(ctx)
	res, err := o.routes.Aggregate(octx, aggregate.DistinctValues("inc"))
	if err != nil {
		cancel()
		c.log.Warn("cluster orphan sweep failed", "err", err)
		return
	}
	entries, err := o.members.GetEntrySet(octx)
	cancel()
	if err != nil {
		return
	}
	live := map[string]bool{c.incarnation(): true}
	for _, e := range entries {
		var mr memberRecord
		if fromValue(e.Value, &mr) == nil {
			live[mr.Inc] = true
		}
	}
	seen := map[string]bool{}
	for _, v := range distinct(res) {
		inc, ok := v.(string)
		if !ok || live[inc] {
			continue
		}
		seen[inc] = true
		c.orphans[inc]++
		if c.orphans[inc] >= 2 {
			c.log.Info("cluster orphaned routes", "inc", inc)
			delete(c.handled, inc) // a later death of the same incarnation
			c.handleDead(ctx, o, inc)
		}
	}
	for inc := range c.orphans {
		if !seen[inc] {
			delete(c.orphans, inc)
		}
	}
}

// distinct flattens a DistinctValues result: the client returns a slice
// type of its internal package (AggCanonicalizingSet), so use reflection.
func distinct(res any) []any {
	if res == nil {
		return nil
	}
	v := reflect.ValueOf(res)
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = v.Index(i).Interface()
		}
		return out
	case reflect.Map:
		out := make([]any, 0, v.Len())
		for _, k := range v.MapKeys() {
			out = append(out, k.Interface())
		}
		return out
	}
	return []any{res}
}
