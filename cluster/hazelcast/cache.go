package hazelcast

import (
	"context"
	"fmt"
	"sync"
	"time"

	hz "github.com/hazelcast/hazelcast-go-client"
	"github.com/hazelcast/hazelcast-go-client/types"

	"github.com/aviary-im/aviary/cluster"
)

// routeCache is this node's replica of the routes map, kept by an entry
// listener, so Routes costs no round trip. See the package doc for why it
// converges: it starts from a snapshot taken after the listener was
// registered and replays, in order, every event seen since registration.
type routeCache struct {
	mu        sync.RWMutex
	buffering bool
	buf       []routeEvent
	byBare    map[string]map[string]routeRecord // bare → full → record
}

type routeEvent struct {
	full string
	rec  *routeRecord // nil: removed
}

func newRouteCache() *routeCache {
	return &routeCache{buffering: true, byBare: map[string]map[string]routeRecord{}}
}

// add records an event: buffered while the snapshot loads, applied after.
func (rc *routeCache) add(ev routeEvent) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.buffering {
		rc.buf = append(rc.buf, ev)
		return
	}
	rc.applyLocked(ev)
}

func (rc *routeCache) applyLocked(ev routeEvent) {
	bare := cluster.BareJID(ev.full)
	m := rc.byBare[bare]
	if ev.rec == nil {
		if m != nil {
			delete(m, ev.full)
			if len(m) == 0 {
				delete(rc.byBare, bare)
			}
		}
		return
	}
	if m == nil {
		m = map[string]routeRecord{}
		rc.byBare[bare] = m
	}
	m[ev.full] = *ev.rec
}

// finish applies the snapshot, then the buffered events, and goes live.
func (rc *routeCache) finish(snapshot []routeEvent) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, ev := range snapshot {
		rc.applyLocked(ev)
	}
	for _, ev := range rc.buf {
		rc.applyLocked(ev)
	}
	rc.buf = nil
	rc.buffering = false
}

func (rc *routeCache) get(bare string, out []routeRecord) []routeRecord {
	rc.mu.RLock()
	defer rc.mu.RUnlock()
	for _, r := range rc.byBare[bare] {
		out = append(out, r)
	}
	return out
}

func (rc *routeCache) size() int {
	rc.mu.RLock()
	defer rc.mu.RUnlock()
	n := 0
	for _, m := range rc.byBare {
		n += len(m)
	}
	return n
}

// onRouteEvent feeds a routes-map event to the live cache and to the one
// being built.
func (c *Cluster) onRouteEvent(e *hz.EntryNotified) {
	full, ok := e.Key.(string)
	if !ok {
		return
	}
	ev := routeEvent{full: full}
	switch e.EventType {
	case hz.EntryAdded, hz.EntryUpdated, hz.EntryMerged, hz.EntryLoaded:
		var rr routeRecord
		if err := fromValue(e.Value, &rr); err != nil {
			c.log.Warn("cluster bad route event", "jid", full, "err", err)
			return
		}
		ev.rec = &rr
	case hz.EntryRemoved, hz.EntryEvicted, hz.EntryExpired:
	default:
		return
	}
	b := c.building.Load()
	if b != nil {
		b.add(ev)
	}
	if l := c.cache.Load(); l != nil && l != b {
		l.add(ev)
	}
	c.eventSeen(ev) // after the replica has it
}

func (c *Cluster) onRoutesCleared(*hz.EntryNotified) {
	c.resyncNow.Store(true)
	c.wake()
}

// listenRoutes (re)registers the routes listener. A fresh registration on
// every join, rather than the client's automatic re-registration after a
// reconnect, guarantees it is in place before the snapshot is read.
func (c *Cluster) listenRoutes(ctx context.Context, o *hzObjs) error {
	if c.routesSub != (types.UUID{}) {
		_ = o.routes.RemoveListener(ctx, c.routesSub)
		c.routesSub = types.UUID{}
	}
	id, err := o.routes.AddListener(ctx, hz.MapListener{
		EntryAdded:   c.onRouteEvent,
		EntryUpdated: c.onRouteEvent,
		EntryRemoved: c.onRouteEvent,
		EntryEvicted: c.onRouteEvent,
		EntryExpired: c.onRouteEvent,
		EntryMerged:  c.onRouteEvent,
		MapCleared:   c.onRoutesCleared,
		MapEvicted:   c.onRoutesCleared,
	}, true)
	if err != nil {
		return fmt.Errorf("cluster/hazelcast: routes listener: %w", err)
	}
	c.routesSub = id
	return nil
}

// buildCache loads a new replica while events keep flowing, then swaps it
// in. The old replica (if any) serves reads meanwhile.
func (c *Cluster) buildCache(ctx context.Context, o *hzObjs) error {
	nb := newRouteCache()
	c.building.Store(nb)
	defer c.building.Store(nil)
	octx, cancel := context.WithTimeout(ctx, 4*c.cc.OperationTimeout)
	defer cancel()
	start := time.Now()
	entries, err := o.routes.GetEntrySet(octx)
	if err != nil {
		return fmt.Errorf("cluster/hazelcast: routes snapshot: %w", err)
	}
	snap := make([]routeEvent, 0, len(entries))
	for _, e := range entries {
		full, ok := e.Key.(string)
		if !ok {
			continue
		}
		var rr routeRecord
		if fromValue(e.Value, &rr) != nil {
			continue
		}
		snap = append(snap, routeEvent{full: full, rec: &rr})
	}
	nb.finish(snap)
	c.cache.Store(nb)
	c.expireDirty(start)
	c.lastResync = time.Now()
	c.log.Debug("cluster route replica loaded", "routes", nb.size(), "took", time.Since(start))
	return nil
}
