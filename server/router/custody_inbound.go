package router

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The sender's side of "each once" (CRASHSAFETY.md, "Duplicates"). A
// client whose node died resends every stanza it had not seen
// acknowledged, though that node may have made many of them safe (on two
// nodes) and only not answered <r/> yet. XEP-0198 lets <failed/> carry h,
// the number of the client's stanzas the server handled. So:
//
//   - Counts. Each resumable session reports the count of its client's
//     stanzas that are safe, exactly what it may answer in <a h/> (c2s,
//     the acknowledgement hold), whenever it grows (Router.InboundSafe).
//     The router sends the counts that changed to its inbound buddy (the
//     next member after it by name that publishes FeatureInboundCount),
//     gathered with the custody notices (noticeDelay); a new buddy gets
//     them all (and the old one is told to forget them).
//   - The buddy keeps the latest count per session ID, one small entry
//     per resumable session, until the session ends or moves to another
//     node (Router.InboundEnded) or inboundKeep after the reporting node
//     died.
//   - Answers. A node answering <failed/> to a resumption of a session
//     nobody holds asks the other nodes (Router.SafeInbound,
//     KindInboundQuery) and answers <failed h/> with the highest count
//     known: the client sends again only what comes after it.
//
// A count is never more than the session could acknowledge, so it can
// only be low (a duplicate), never high (a loss): every stanza up to it
// was on two nodes, or stored, when it was reported. Only the session's
// own user gets it: a query names the user who authenticated on the
// asking node, and a count for another user's session is not given.

const (
	// KindInbound carries a node's inbound counts to its buddy: a byte
	// (inFull: forget what you had from me, then these; inUpdate), then
	// entries: a byte (inSet, inEnd), the stream-management ID (2 bytes
	// of length, then the ID) and, for inSet, the user's bare JID (the
	// same) and the count (4 bytes).
	KindInbound = "custody.inbound"
	// KindInboundQuery asks for the count of a session: the user's bare
	// JID, '\n', the stream-management ID. The answer is the count (4
	// bytes), or empty for none known.
	KindInboundQuery = "custody.inbound_query"
	// FeatureInboundCount in a cluster.Member's Features says the node
	// keeps inbound counts for others (KindInbound).
	FeatureInboundCount = "custody.inbound"

	// inboundKeep is how long the counts of a dead node's sessions are
	// kept for their clients' resumptions.
	inboundKeep = verdictKeep
	// inboundChunk bounds one KindInbound message (a full set is split).
	inboundChunk = 256 << 10
	// inboundRetry is when counts that did not reach the buddy are sent
	// again (all of them).
	inboundRetry = time.Second
)

const (
	inFull   byte = 'F'
	inUpdate byte = 'U'
	inSet    byte = 's'
	inEnd    byte = 'e'
)

// inCount is one session's safe inbound count. held, for this node's
// own sessions, is told once a buddy has a count at least h (or once none
// can be told): the session's <a h/> waits for it.
type inCount struct {
	bare string
	h    uint32
	held func(h uint32)
}

// inTable is the counts one node reported, by session ID.
type inTable map[string]inCount

// deadTable is what a dead (or restarted) node had reported, kept until
// until.
type deadTable struct {
	t     inTable
	until time.Time
}

// inCounts is the bookkeeping of inbound counts: this node's sessions'
// (mine, guarded by custody.nmu, sent by flushNotices) and those other
// nodes reported here (from, dead; guarded by mu).
type inCounts struct {
	// Under custody.nmu: this node's resumable sessions, the ones changed
	// since the last flush, and the buddy that has them ("": nobody yet,
	// the next flush sends them all).
	mine  map[string]inCount
	dirty map[string]struct{}
	buddy string

	// smu makes one flush of counts at a time, so that they arrive in
	// order; again asks the flush running to look once more.
	smu   sync.Mutex
	again atomic.Bool

	mu   sync.Mutex
	from map[string]inTable
	dead []*deadTable

	held int // entries in from and dead (metrics)
	now  func() time.Time

	counted, answered atomic.Uint64 // metrics
}

func newInbound(now func() time.Time) *inCounts {
	return &inCounts{mine: map[string]inCount{}, dirty: map[string]struct{}{}, from: map[string]inTable{}, now: now}
}

// InboundSafe is called by a resumable session (c2s) when the count of
// its client's stanzas that are safe grows: h is what <a h/> may say once
// another node has it, bare the session's user, sm its stream-management
// ID. When it returns true, held runs later (never under a lock of the
// caller's, never with a count below h) once the buddy has the count, or
// once it could not be told (one failure at a time: the buddy failing is
// the failure); false means nothing will be told and nothing waits (crash
// safety off, no buddy, or held nil).
//
// Why the session waits: a failed resumption after this node's death
// answers <failed h/> with the buddy's count; an <a h/> the client had
// seen above it would make the client count the difference modulo 2^32,
// all of its outstanding stanzas, as handled.
func (r *Router) InboundSafe(sm, bare string, h uint32, held func(h uint32)) bool {
	return r.custody.inboundSafe(sm, bare, h, held)
}

// InboundEnded is called when the resumable session sm ends or moves to
// another node: its count is not needed any more.
func (r *Router) InboundEnded(sm string) { r.custody.inboundEnded(sm) }

// SafeInbound returns the highest count known in the cluster of the
// client's stanzas that were safe in the session sm of the user bare,
// which no node holds any more (its node died), and false when none is
// known. skip names a node not to ask (the one that held the session).
func (r *Router) SafeInbound(ctx context.Context, sm, bare, skip string) (uint32, bool) {
	return r.custody.safeInbound(ctx, sm, bare, skip)
}

func (c *custody) inboundSafe(sm, bare string, h uint32, held func(uint32)) bool {
	if !c.on || sm == "" || bare == "" {
		return false
	}
	if held != nil && c.knownNoInboundBuddy() {
		// Nobody to tell: a failed resumption elsewhere answers no h.
		held = nil
	}
	c.nmu.Lock()
	if e, ok := c.in.mine[sm]; ok && e.bare == bare && covers(e.h, h) {
		if held == nil || e.held != nil {
			c.nmu.Unlock()
			// A report that overtook this one said as much; its
			// confirmation covers h.
			return held != nil
		}
		h = e.h
	}
	c.in.mine[sm] = inCount{bare: bare, h: h, held: held}
	c.in.dirty[sm] = struct{}{}
	start := c.kickLocked()
	c.nmu.Unlock()
	if start {
		time.AfterFunc(noticeDelay, c.flushNotices)
	}
	return held != nil
}

func (c *custody) inboundEnded(sm string) {
	if !c.on || sm == "" {
		return
	}
	c.nmu.Lock()
	if _, ok := c.in.mine[sm]; !ok {
		c.nmu.Unlock()
		return
	}
	delete(c.in.mine, sm)
	c.in.dirty[sm] = struct{}{}
	start := c.kickLocked()
	c.nmu.Unlock()
	if start {
		time.AfterFunc(noticeDelay, c.flushNotices)
	}
}

// kickInbound makes the next flush look at the counts (the buddy may have
// changed).
func (c *custody) kickInbound() {
	c.nmu.Lock()
	start := len(c.in.mine) > 0 && c.kickLocked()
	c.nmu.Unlock()
	if start {
		time.AfterFunc(noticeDelay, c.flushNotices)
	}
}

// inboundBuddy is the member this node reports its counts to: the first
// buddy that publishes FeatureInboundCount ("" for none).
func (c *custody) inboundBuddy() string {
	v := c.view()
	for _, b := range v.buddies {
		if v.inbound[b] {
			return b
		}
	}
	return ""
}

// knownNoInboundBuddy reports whether the members as last seen have no
// buddy for the counts. It never refreshes that view: its caller holds a
// session's lock, and a refresh asks the cluster (up to a second). With
// no view yet the answer is no: the flush refreshes it and tells the
// session at once if nobody is there.
func (c *custody) knownNoInboundBuddy() bool {
	v := c.peers.Load()
	if v == nil {
		return false
	}
	for _, b := range v.buddies {
		if v.inbound[b] {
			return false
		}
	}
	return true
}

// flushInbound sends the counts that changed to the buddy, or all of them
// to a new buddy (telling the old one to forget them). Called by
// flushNotices; while one runs (a slow link), the others leave their work
// to it rather than wait.
func (c *custody) flushInbound() {
	for {
		if !c.in.smu.TryLock() {
			c.in.again.Store(true)
			if !c.in.smu.TryLock() {
				return // the flush running sees again once it unlocks
			}
		}
		c.in.again.Store(false)
		c.flushInboundOnce()
		c.in.smu.Unlock()
		if !c.in.again.Load() {
			return
		}
	}
}

func (c *custody) flushInboundOnce() {
	buddy := c.inboundBuddy()
	c.nmu.Lock()
	if len(c.in.dirty) == 0 && buddy == c.in.buddy {
		c.nmu.Unlock()
		return
	}
	var msgs [][]byte
	var tell heldCounts
	old := c.in.buddy
	if buddy != old {
		msgs = appendInbound(nil, inFull, c.in.mine, nil)
		for _, e := range c.in.mine {
			tell = tell.add(e)
		}
	} else {
		msgs = appendInbound(nil, inUpdate, c.in.mine, c.in.dirty)
		for sm := range c.in.dirty {
			tell = tell.add(c.in.mine[sm])
		}
	}
	c.in.buddy = buddy
	clear(c.in.dirty)
	c.nmu.Unlock()
	if old != "" && old != buddy && c.capable(old) {
		// The old buddy forgets what it had from us.
		ctx, cancel := c.r.clusterCtx(context.Background())
		_ = c.r.cluster.Send(ctx, old, KindInbound, []byte{inFull})
		cancel()
	}
	if buddy == "" || len(msgs) == 0 {
		tell.run() // nobody to tell: nothing to wait for
		return
	}
	// Each message reports back; once all did, the sessions are told.
	var pending atomic.Int64
	var failed atomic.Bool
	pending.Store(int64(len(msgs)))
	finish := func(n int64) {
		if pending.Add(-n) != 0 {
			return
		}
		// On a link goroutine: the sessions' locks are taken elsewhere.
		go tell.run()
		if failed.Load() {
			c.inboundNotDelivered(buddy)
		}
	}
	for i, m := range msgs {
		ctx, cancel := c.r.clusterCtx(context.Background())
		err := c.nf.SendNotify(ctx, buddy, KindInbound, m, func(ok bool) {
			if !ok {
				failed.Store(true)
			}
			finish(1)
		})
		cancel()
		if err != nil {
			// Without the counts a failed resumption answers a lower h,
			// or none: duplicates at worst. The sessions are told
			// anyway: this is the one failure (one at a time).
			c.r.log.Debug("router: inbound counts not delivered", "node", buddy, "err", err)
			failed.Store(true)
			finish(int64(len(msgs) - i))
			return
		}
	}
}

// inboundNotDelivered sends all counts again soon, to whichever buddy
// there is then.
func (c *custody) inboundNotDelivered(buddy string) {
	c.nmu.Lock()
	if c.in.buddy == buddy {
		c.in.buddy = ""
	}
	c.nmu.Unlock()
	c.forgetPeers()
	time.AfterFunc(inboundRetry, c.kickInbound)
}

// heldCounts are the sessions to tell that their counts reached a buddy.
type heldCounts []inCount

func (t heldCounts) add(e inCount) heldCounts {
	if e.held == nil {
		return t
	}
	return append(t, e)
}

func (t heldCounts) run() {
	for _, e := range t {
		e.held(e.h)
	}
}

// appendInbound encodes KindInbound messages: every count in mine (only
// is nil), or those of the sessions in only (an ended one as inEnd).
func appendInbound(msgs [][]byte, head byte, mine map[string]inCount, only map[string]struct{}) [][]byte {
	b := []byte{head}
	add := func(sm string, e inCount, ok bool) {
		if len(sm) > 0xffff || len(e.bare) > 0xffff {
			return
		}
		if len(b) > inboundChunk {
			msgs = append(msgs, b)
			b = []byte{inUpdate}
		}
		if !ok {
			b = append(b, inEnd)
			b = binary.BigEndian.AppendUint16(b, uint16(len(sm)))
			b = append(b, sm...)
			return
		}
		b = append(b, inSet)
		b = binary.BigEndian.AppendUint16(b, uint16(len(sm)))
		b = append(b, sm...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.bare)))
		b = append(b, e.bare...)
		b = binary.BigEndian.AppendUint32(b, e.h)
	}
	if only == nil {
		for sm, e := range mine {
			add(sm, e, true)
		}
	} else {
		for sm := range only {
			e, ok := mine[sm]
			add(sm, e, ok)
		}
	}
	if len(b) > 1 || head == inFull {
		msgs = append(msgs, b)
	}
	return msgs
}

// handleInbound records the counts from reports.
func (c *custody) handleInbound(ctx context.Context, from string, payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return nil, errMalformedLink
	}
	str := func() (string, bool) {
		if len(payload) < 2 {
			return "", false
		}
		l := int(binary.BigEndian.Uint16(payload))
		if len(payload) < 2+l {
			return "", false
		}
		s := string(payload[2 : 2+l])
		payload = payload[2+l:]
		return s, true
	}
	in := c.in
	in.mu.Lock()
	defer in.mu.Unlock()
	t := in.from[from]
	if payload[0] == inFull {
		// A new set: a restarted node's, or ours forgotten. What it had
		// may still be asked for a while (the old incarnation's clients).
		if len(t) > 0 {
			in.retireLocked(t)
		}
		t = nil
		delete(in.from, from)
	}
	payload = payload[1:]
	var counted uint64
	for len(payload) > 0 {
		tag := payload[0]
		payload = payload[1:]
		sm, ok := str()
		if !ok {
			return nil, errMalformedLink
		}
		if tag == inEnd {
			if _, had := t[sm]; had {
				delete(t, sm)
				in.held--
			}
			continue
		}
		bare, ok := str()
		if !ok || len(payload) < 4 || tag != inSet {
			return nil, errMalformedLink
		}
		h := binary.BigEndian.Uint32(payload)
		payload = payload[4:]
		if t == nil {
			t = inTable{}
			in.from[from] = t
		}
		e, had := t[sm]
		switch {
		case !had:
			in.held++
			counted += uint64(h)
		case e.bare != bare:
			counted += uint64(h)
		case covers(e.h, h):
			continue // not newer
		default:
			counted += uint64(h - e.h)
		}
		t[sm] = inCount{bare: bare, h: h}
	}
	in.counted.Add(counted)
	return nil, nil
}

// retireLocked keeps a table that is not updated any more until
// inboundKeep from now, and drops those whose time is over.
func (in *inCounts) retireLocked(t inTable) {
	in.dead = append(in.dead, &deadTable{t: t, until: in.now().Add(inboundKeep)})
	in.pruneLocked()
	time.AfterFunc(inboundKeep+time.Second, func() {
		in.mu.Lock()
		in.pruneLocked()
		in.mu.Unlock()
	})
}

func (in *inCounts) pruneLocked() {
	now := in.now()
	keep := in.dead[:0]
	for _, d := range in.dead {
		if now.Before(d.until) {
			keep = append(keep, d)
		} else {
			in.held -= len(d.t)
		}
	}
	clear(in.dead[len(keep):])
	in.dead = keep
}

// inboundNodeDown keeps what the dead node reported for its clients'
// resumptions, for inboundKeep; reports its counts to another buddy if
// it was ours.
func (c *custody) inboundNodeDown(node string) {
	in := c.in
	in.mu.Lock()
	if t := in.from[node]; len(t) > 0 {
		delete(in.from, node)
		in.retireLocked(t)
	}
	in.mu.Unlock()
	c.nmu.Lock()
	if c.in.buddy == node {
		c.in.buddy = ""
	}
	c.nmu.Unlock()
	c.kickInbound()
}

// known is the highest count this node holds for the session sm of
// user bare.
func (in *inCounts) known(sm, bare string) (uint32, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	var best uint32
	found := false
	note := func(t inTable) {
		if e, ok := t[sm]; ok && e.bare == bare && (!found || covers(e.h, best)) {
			best, found = e.h, true
		}
	}
	for _, t := range in.from {
		note(t)
	}
	for _, d := range in.dead {
		note(d.t)
	}
	return best, found
}

func (c *custody) handleInboundQuery(ctx context.Context, from string, payload []byte) ([]byte, error) {
	bare, sm, ok := cutByte(payload, '\n')
	if !ok || bare == "" || sm == "" {
		return nil, errMalformedLink
	}
	if h, ok := c.in.known(sm, bare); ok {
		return binary.BigEndian.AppendUint32(nil, h), nil
	}
	return []byte{}, nil
}

func (c *custody) safeInbound(ctx context.Context, sm, bare, skip string) (uint32, bool) {
	if !c.on || sm == "" || bare == "" {
		return 0, false
	}
	best, found := c.in.known(sm, bare)
	v := c.view()
	type answer struct {
		h  uint32
		ok bool
	}
	ch := make(chan answer, len(v.inbound))
	asked := 0
	payload := append(append([]byte(bare), '\n'), sm...)
	for node := range v.inbound {
		if node == skip {
			continue
		}
		asked++
		go func() {
			cctx, cancel := c.r.clusterCtx(ctx)
			defer cancel()
			b, err := c.r.cluster.Call(cctx, node, KindInboundQuery, payload)
			if err != nil || len(b) != 4 {
				if err != nil {
					c.r.log.Debug("router: asking for an inbound count failed", "node", node, "err", err)
				}
				ch <- answer{}
				return
			}
			ch <- answer{binary.BigEndian.Uint32(b), true}
		}()
	}
	for range asked {
		if a := <-ch; a.ok && (!found || covers(a.h, best)) {
			best, found = a.h, true
		}
	}
	if found {
		c.in.answered.Add(1)
	}
	return best, found
}

// registerInboundMetrics exports the inbound counts this node holds for
// others and how they were used.
func (c *custody) registerInboundMetrics(reg prometheus.Registerer) {
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricCustodyInboundSessions,
		Help: "Resumable sessions of other nodes (live or dead within 5 minutes) whose count of client stanzas made safe this node keeps, for a failed resumption to answer <failed h/>."},
		func() float64 {
			c.in.mu.Lock()
			defer c.in.mu.Unlock()
			return float64(c.in.held)
		}))
	register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricCustodyInboundCounted,
		Help: "Client stanzas other nodes' resumable sessions reported safe to this node (the growth of their counts)."}, func() float64 { return float64(c.in.counted.Load()) }))
	register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricCustodyInboundAnswered,
		Help: "Resumptions of a session no node holds answered with the cluster's count of its client's stanzas made safe (<failed h/>): the client does not send those again."}, func() float64 { return float64(c.in.answered.Load()) }))
}
