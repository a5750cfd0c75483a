package hazelcast

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

// Route announcements keep cause before effect across nodes.
//
// The replica learns other nodes' route changes from Hazelcast events,
// which can arrive after a stanza the owner sent over its link once the
// change was made: node A raises a resource's priority and broadcasts the
// presence; node B shows the presence to a contact, who at once writes to
// the bare JID, and B's replica still has the old priority.
//
// So after each route write reaches Hazelcast, the owner also sends a
// small announcement (full JID, incarnation, sequence number) over the
// link to every visible node. Links are FIFO, so the announcement is
// handled before any stanza the owner sends afterwards. The receiver
// marks the JID dirty until the replica holds that write (the Hazelcast
// event with that sequence number, or a later one, arrives); Routes for a
// bare JID with a dirty resource asks Hazelcast directly (one query),
// which already has the write. Marks that no event clears expire after
// dirtyTTL or with the next full reload.

// kindRoute is the link message kind of route announcements.
const kindRoute = "aviary.route"

const dirtyTTL = 5 * time.Second

type dirtyMark struct {
	inc string
	seq uint64
	del bool
	at  time.Time
}

// announce tells the visible nodes about a route write (rt, or nil for a
// deletion) that has reached Hazelcast, or, while detached, that only the
// local index has. It is called with the JID's stripe held, so
// announcements of one JID leave in write order.
//
// Payload: full JID, incarnation, sequence number, then "d" for a
// deletion or "s" and the route's JSON, one per line. Nodes of earlier
// versions read the first three lines and "d".
func (c *Cluster) announce(ctx context.Context, full, inc string, seq uint64, rt *cluster.Route) {
	if !c.clustered.Load() {
		return // joining: the others load a fresh snapshot or query
	}
	c.viewMu.RLock()
	peers := make([]memberRecord, 0, len(c.view))
	for _, m := range c.view {
		peers = append(peers, m)
	}
	c.viewMu.RUnlock()
	if len(peers) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString(full)
	b.WriteByte('\n')
	b.WriteString(inc)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatUint(seq, 10))
	if rt == nil {
		b.WriteString("\nd")
	} else if j, err := json.Marshal(rt); err == nil {
		b.WriteString("\ns\n")
		b.Write(j)
	}
	payload := []byte(b.String())
	actx, cancel := context.WithTimeout(ctx, c.cc.OperationTimeout)
	defer cancel()
	for _, m := range peers {
		if err := c.links.Send(actx, m.Name, m.LinkAddr, kindRoute, payload); err != nil && !errors.Is(err, cluster.ErrNodeGone) {
			c.log.Debug("cluster route announcement failed", "node", m.Name, "err", err)
		}
	}
}

// handleAnnounce marks an announced route write dirty until the replica
// has it. Detached, no replica event will come: the announced route is
// applied to the replica directly.
func (c *Cluster) handleAnnounce(ctx context.Context, from string, payload []byte) ([]byte, error) {
	f := strings.SplitN(string(payload), "\n", 5)
	if len(f) < 3 {
		return nil, errBadAnnouncement
	}
	seq, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return nil, errBadAnnouncement
	}
	full, inc := f[0], f[1]
	mark := dirtyMark{inc: inc, seq: seq, del: len(f) > 3 && f[3] == "d", at: time.Now()}
	if c.detached.Load() {
		return nil, c.applyAnnounced(from, full, inc, seq, mark.del, f)
	}
	if rc := c.cache.Load(); rc != nil && rc.has(full, inc, seq, mark.del) {
		return nil, nil // the event won the race
	}
	bare := cluster.BareJID(full)
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	old, ok := c.dirty[full]
	if ok && old.inc == inc && old.seq >= seq {
		return nil, nil
	}
	if !ok {
		c.dirtyN[bare]++
	}
	c.dirty[full] = mark
	return nil, nil
}

var errBadAnnouncement = errors.New("cluster/hazelcast: bad route announcement")

// applyAnnounced applies a detached node's route write to the replica,
// for a sender whose incarnation this node knows (the replica would
// ignore another one anyway).
func (c *Cluster) applyAnnounced(from, full, inc string, seq uint64, del bool, f []string) error {
	rc := c.cache.Load()
	if rc == nil || !c.visibleInc(from, inc) {
		return nil
	}
	if del {
		rc.add(routeEvent{full: full})
		return nil
	}
	if len(f) < 5 || f[3] != "s" {
		return nil // a node of an earlier version: no route to apply
	}
	var rt cluster.Route
	if err := json.Unmarshal([]byte(f[4]), &rt); err != nil || rt.JID != full || rt.Node != from {
		return errBadAnnouncement
	}
	rc.add(routeEvent{full: full, rec: &routeRecord{Route: rt, Bare: cluster.BareJID(full), Inc: inc, Seq: seq}})
	return nil
}

// eventSeen clears the mark an event satisfies.
func (c *Cluster) eventSeen(ev routeEvent) {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	d, ok := c.dirty[ev.full]
	if !ok {
		return
	}
	if ev.rec == nil && !d.del {
		return
	}
	if ev.rec != nil && (ev.rec.Inc != d.inc || ev.rec.Seq < d.seq) {
		return
	}
	c.clearDirtyLocked(ev.full)
}

func (c *Cluster) clearDirtyLocked(full string) {
	delete(c.dirty, full)
	bare := cluster.BareJID(full)
	if c.dirtyN[bare]--; c.dirtyN[bare] <= 0 {
		delete(c.dirtyN, bare)
	}
}

// isDirty reports whether some resource of bare has an announced write
// the replica does not have yet. Expired marks are dropped.
func (c *Cluster) isDirty(bare string) bool {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	if c.dirtyN[bare] == 0 {
		return false
	}
	now := time.Now()
	for full, d := range c.dirty {
		if cluster.BareJID(full) == bare && now.Sub(d.at) > dirtyTTL {
			c.clearDirtyLocked(full)
		}
	}
	return c.dirtyN[bare] > 0
}

// expireDirty drops marks made before a snapshot taken at start: the
// snapshot has their writes.
func (c *Cluster) expireDirty(start time.Time) {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	for full, d := range c.dirty {
		if d.at.Before(start) {
			c.clearDirtyLocked(full)
		}
	}
}

// has reports whether the replica already reflects the announced write.
func (rc *routeCache) has(full, inc string, seq uint64, del bool) bool {
	rc.mu.RLock()
	defer rc.mu.RUnlock()
	r, ok := rc.byBare[cluster.BareJID(full)][full]
	if del {
		return !ok
	}
	return ok && r.Inc == inc && r.Seq >= seq
}
