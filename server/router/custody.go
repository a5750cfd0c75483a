package router

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Crash safety (cluster.crash_safety): a message a client sent is never
// held by one node only once the client has its acknowledgement. The
// design and why it was chosen are in CRASHSAFETY.md; in short:
//
//   - Forward. A message for a session on another node travels as
//     KindHeld with a sequence number; the sending node keeps the copy
//     (custody.kept, node set) until the receiving node says the client
//     acknowledged it (KindDone). The sender's own acknowledgement waits
//     for the link's report that the receiving node handled the message.
//   - Local. A message for a session on this node is deposited with a
//     buddy node (KindDeposit), which keeps it until this node says the
//     client acknowledged it (KindDrop); the sender's acknowledgement waits
//     for the deposit.
//   - A node dies. Each survivor routes again, in order, what it kept for
//     that node's sessions and what that node deposited with it: to the
//     users' new sessions, else to offline storage. Local copies whose
//     buddy died are deposited with another.
//
// Only messages offline storage would keep are protected (chat, normal
// and no type, not carbon copies, not bare chat states): presence is
// transient and IQs get an error when their session is gone.

// Message kinds of crash safety on the node links.
const (
	// KindHeld carries a protected message for one local full JID of the
	// receiving node: the sender's sequence number (8 bytes, big endian),
	// then a KindStanza payload. The receiver answers with KindDone when
	// the client has it, or it was stored offline or bounced.
	KindHeld = "stanza.held"
	// KindDeposit asks the buddy to keep a copy of a message delivered to
	// one of the sender's own sessions: sequence number, then a KindStanza
	// payload naming the recipient.
	KindDeposit = "custody.deposit"
	// KindDone lists (8 bytes each) the KindHeld sequence numbers of the
	// receiving node whose messages the sender no longer needs kept.
	KindDone = "custody.done"
	// KindDrop lists the deposits of the sending node the receiver may
	// drop.
	KindDrop = "custody.drop"
	// FeatureCustody in a cluster.Member's Features says the node handles
	// these kinds; others get plain KindStanza messages.
	FeatureCustody = "custody"
)

const (
	// noticeDelay gathers KindDone and KindDrop numbers into one message:
	// they only free memory, so a few milliseconds cost nothing.
	noticeDelay = 5 * time.Millisecond
	// peersEvery is how long the view of custody-capable members is
	// reused.
	peersEvery = time.Second
)

// Receipt travels with a protected message a local session holds, until
// its client has it. It names the copy that waits for that: kept on
// another node (keeper, seq: the sender's KindHeld number), or kept on this
// node with a deposit at the buddy (keeper ""). Sessions keep it as an
// opaque value and hand it back to Router.Release.
type Receipt struct {
	keeper string
	seq    uint64
	// released is set once the receipt went back (Router.Release): a
	// position gathered for it need not travel (custody_resume.go).
	released atomic.Bool
}

// RemoteReceipt is the receipt of a copy node keeps under seq: a session
// another node handed over (c2s cross-node resumption) sends these back.
func RemoteReceipt(node string, seq uint64) *Receipt { return &Receipt{keeper: node, seq: seq} }

// Keeper and Seq describe the receipt for a hand-over to another node:
// RemoteReceipt(Keeper(), Seq()) on the new node.
func (rc *Receipt) Keeper() string { return rc.keeper }

// Seq is the receipt's sequence number at its keeper.
func (rc *Receipt) Seq() uint64 { return rc.seq }

// Unsent is a stanza a session ends without delivering, with the receipt
// it came with (nil for none).
type Unsent struct {
	El      *wire.Element
	Receipt *Receipt
}

// kept is one copy custody keeps: a message this node forwarded (node set)
// or delivered to a local session (node "", deposited at buddy), or one
// another node deposited here.
type kept struct {
	seq   uint64
	node  string // forwarded to this node; "" for a local delivery or a deposit
	buddy string // a local delivery's deposit holder ("" while it has none)
	full  string
	el    *wire.Element
	at    time.Time
	// hold is released once a second node has the message (the link
	// acknowledged the forward or the deposit), or when it is done; nil
	// after that.
	hold *hold
	// then is released when this copy is done: custody taken over from a
	// previous holder (a session handed over to another node).
	then *Receipt
	// from is the node that deposited this copy here ("" for this node's
	// own copies).
	from string
	// sm and pos say where the recipient's resumable session counted the
	// message (its stream-management ID and XEP-0198 number; sm "" while
	// unknown); parked is set while it waits for that session's resume
	// verdict after its node died, and dropped once a verdict said the
	// client had it. See custody_resume.go.
	sm      string
	pos     uint32
	parked  *parked
	dropped bool
}

type noticeKey struct{ kind, node string }

// custody is the router's crash-safety bookkeeping. mu guards kept and
// deposits; it is never held while calling out.
type custody struct {
	r  *Router
	on bool
	// switchOn is cluster.crash_safety, whether or not a second node can
	// keep copies (on needs one).
	switchOn bool
	nf       cluster.Notifier

	mu       sync.Mutex
	seq      uint64
	kept     map[uint64]*kept
	deposits map[string]map[uint64]*kept // by depositing node

	// By custody_resume.go: the copies by the session they were counted
	// in, the verdicts of failed resumptions, and the groups of a dead
	// node's copies parked until a verdict.
	bySM           map[string]map[*kept]struct{}
	verdicts       map[string]verdict
	verdictsPruned time.Time
	awaiting       map[string][]*parked

	nmu        sync.Mutex
	notices    map[noticeKey][]uint64
	posNotices map[posKey]map[string][]seqPos // by node and kind, then session
	flushing   bool

	// in are the inbound counts of resumable sessions, this node's and
	// those other nodes report here (custody_inbound.go); its own part is
	// guarded by nmu.
	in *inCounts

	pmu   sync.Mutex // one refresh of peers at a time
	peers atomic.Pointer[peerView]

	rerouted, unprotected, deduplicated atomic.Uint64

	// afterReroute, when set (by tests), runs after each copy reroute
	// routed.
	afterReroute func(*kept)
}

type peerView struct {
	capable map[string]bool
	buddies []string        // capable members, the one after this node (by name) first
	inbound map[string]bool // capable members that keep inbound counts
	at      time.Time
}

func newCustody(r *Router) *custody {
	c := &custody{r: r, kept: map[uint64]*kept{}, deposits: map[string]map[uint64]*kept{}, notices: map[noticeKey][]uint64{},
		bySM: map[string]map[*kept]struct{}{}, verdicts: map[string]verdict{}, awaiting: map[string][]*parked{},
		posNotices: map[posKey]map[string][]seqPos{}, in: newInbound(r.now)}
	on := r.cfg.Cluster.CrashSafety
	c.switchOn = on == nil || *on
	if r.cluster == nil {
		return c
	}
	nf, ok := r.cluster.(cluster.Notifier)
	c.nf = nf
	c.on = ok && c.switchOn
	r.cluster.Handle(KindHeld, c.handleHeld)
	r.cluster.Handle(KindDeposit, c.handleDeposit)
	r.cluster.Handle(KindDone, c.handleDone)
	r.cluster.Handle(KindDrop, c.handleDrop)
	r.cluster.Handle(KindPositions, c.handlePositions)
	r.cluster.Handle(KindResumeFailed, c.handleResumeFailed)
	r.cluster.Handle(KindInbound, c.handleInbound)
	r.cluster.Handle(KindInboundQuery, c.handleInboundQuery)
	r.cluster.OnNodeDown(c.nodeDown)
	r.cluster.UpdateSelf(func(m *cluster.Member) {
		for _, f := range []string{FeatureCustody, FeatureInboundCount} {
			if !slices.Contains(m.Features, f) {
				m.Features = append(m.Features, f)
			}
		}
	})
	return c
}

// protects reports whether el is a message crash safety keeps copies of:
// what offline storage would keep.
func (c *custody) protects(el *wire.Element) bool {
	return c.on && keepsMessage(el)
}

// holdsRemote reports whether the sender's acknowledgement of el, bound
// for another domain, waits until s2s has it out of this process: a
// message offline storage would keep, with cluster.crash_safety on. It
// needs no second node (the remote domain's server is the second copy),
// so a lone node holds it too.
func (c *custody) holdsRemote(el *wire.Element) bool {
	return c.switchOn && keepsMessage(el)
}

// keepsMessage reports whether el is a message crash safety keeps: one
// offline storage would keep (chat, normal or no type, with content), not
// a carbon copy.
func keepsMessage(el *wire.Element) bool {
	if el.Name != "message" || isCarbonCopy(el) {
		return false
	}
	switch el.Type() {
	case "", "normal", "chat":
		return worthStoring(el)
	}
	return false
}

// view returns the custody-capable live members, read again every
// peersEvery (and after forgetPeers).
func (c *custody) view() *peerView {
	if v := c.peers.Load(); v != nil && time.Since(v.at) < peersEvery {
		return v
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if v := c.peers.Load(); v != nil && time.Since(v.at) < peersEvery {
		return v
	}
	v := &peerView{capable: map[string]bool{}, inbound: map[string]bool{}, at: time.Now()}
	if c.r.clustered() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ms, err := c.r.cluster.Members(ctx)
		cancel()
		if err == nil {
			self := c.r.node
			var after, before []string
			for _, m := range ms {
				if m.Name == self || !slices.Contains(m.Features, FeatureCustody) {
					continue
				}
				v.capable[m.Name] = true
				if slices.Contains(m.Features, FeatureInboundCount) {
					v.inbound[m.Name] = true
				}
				if m.Name > self {
					after = append(after, m.Name)
				} else {
					before = append(before, m.Name)
				}
			}
			slices.Sort(after)
			slices.Sort(before)
			v.buddies = append(after, before...)
		}
	}
	c.peers.Store(v)
	return v
}

// forgetPeers makes the next view read the members again.
func (c *custody) forgetPeers() { c.peers.Store(nil) }

func (c *custody) capable(node string) bool { return c.on && c.view().capable[node] }

// forward sends a protected message to the session full on node and keeps
// a copy until node reports that its client has it. The hold the routing
// context carries waits for node to have handled it. It reports false
// when the link refused the message (the caller falls back).
func (c *custody) forward(ctx context.Context, node, full string, el *wire.Element) bool {
	k := &kept{node: node, full: full, el: el, at: c.r.now(), hold: holdFrom(ctx)}
	c.mu.Lock()
	c.seq++
	k.seq = c.seq
	c.kept[k.seq] = k
	c.mu.Unlock()
	payload := appendKept(make([]byte, 0, 8+len(full)+2+256), k.seq, full, el)
	if err := c.nf.SendNotify(ctx, node, KindHeld, payload, func(ok bool) { c.forwarded(k, ok) }); err != nil {
		c.mu.Lock()
		if c.kept[k.seq] == k {
			delete(c.kept, k.seq)
		}
		h := k.hold
		k.hold = nil
		c.mu.Unlock()
		h.release()
		c.r.log.Debug("router: delivery to node failed", "node", node, "to", full, "err", err)
		return false
	}
	return true
}

// forwarded is the link's report on a forward: handled, so two nodes
// have the message; or not, so it is routed again.
func (c *custody) forwarded(k *kept, handled bool) {
	c.mu.Lock()
	if c.kept[k.seq] != k {
		c.mu.Unlock()
		return // done already, or routed again after its node died
	}
	if handled {
		h := k.hold
		k.hold = nil
		c.mu.Unlock()
		h.release()
		return
	}
	delete(c.kept, k.seq)
	c.unindexLocked(k)
	c.mu.Unlock()
	go c.reroute([]*kept{k}, "link")
}

// keepLocal keeps a copy of a protected message about to be queued on
// the local session full and deposits it with a buddy. It returns the
// receipt the session holds, or nil when no buddy can take it (the
// message then has only this node, as without crash safety).
func (c *custody) keepLocal(ctx context.Context, full string, el *wire.Element) (*Receipt, *kept) {
	buddies := c.view().buddies
	if len(buddies) == 0 {
		return nil, nil
	}
	k := &kept{full: full, el: el, at: c.r.now(), hold: holdFrom(ctx)}
	c.mu.Lock()
	c.seq++
	k.seq = c.seq
	c.kept[k.seq] = k
	c.mu.Unlock()
	c.deposit(ctx, k, buddies)
	return &Receipt{seq: k.seq}, k
}

// deposit hands a local copy to the first buddy that takes it. With none
// the copy stays here alone (and its hold is released: nothing better
// can be done until a buddy comes).
func (c *custody) deposit(ctx context.Context, k *kept, buddies []string) {
	payload := appendKept(make([]byte, 0, 8+len(k.full)+2+256), k.seq, k.full, k.el)
	for _, b := range buddies {
		c.mu.Lock()
		if c.kept[k.seq] != k {
			c.mu.Unlock()
			return // done meanwhile
		}
		k.buddy = b
		c.mu.Unlock()
		err := c.nf.SendNotify(ctx, b, KindDeposit, payload, func(ok bool) { c.deposited(k, b, ok) })
		if err == nil {
			return
		}
		c.r.log.Debug("router: deposit with buddy failed", "node", b, "err", err)
	}
	c.mu.Lock()
	var h *hold
	if c.kept[k.seq] == k {
		k.buddy = ""
		h, k.hold = k.hold, nil
	}
	c.mu.Unlock()
	if h != nil {
		c.unprotected.Add(1)
		h.release()
	}
}

// deposited is the link's report on a deposit.
func (c *custody) deposited(k *kept, buddy string, handled bool) {
	c.mu.Lock()
	if c.kept[k.seq] != k || k.buddy != buddy {
		c.mu.Unlock()
		return
	}
	if handled {
		h := k.hold
		k.hold = nil
		c.mu.Unlock()
		h.release()
		return
	}
	k.buddy = ""
	c.mu.Unlock()
	go c.redeposit([]*kept{k})
}

// redeposit deposits local copies again (their buddy failed or died).
func (c *custody) redeposit(ks []*kept) {
	if len(ks) == 0 {
		return
	}
	c.forgetPeers()
	buddies := c.view().buddies
	for _, k := range ks {
		c.deposit(context.Background(), k, buddies)
	}
}

// unkeep drops a local copy whose session refused the message (the
// caller falls back, which makes the message safe itself).
func (c *custody) unkeep(k *kept) {
	if k == nil {
		return
	}
	c.releaseLocal(k.seq)
}

// release lets the copy a receipt names go: the message is delivered (or
// stored, or handed to another custody).
func (c *custody) release(rc *Receipt) {
	if rc == nil {
		return
	}
	rc.released.Store(true)
	if rc.keeper == "" {
		c.releaseLocal(rc.seq)
		return
	}
	c.notice(KindDone, rc.keeper, rc.seq)
}

func (c *custody) releaseLocal(seq uint64) {
	c.mu.Lock()
	k := c.kept[seq]
	if k == nil || k.node != "" {
		c.mu.Unlock()
		return
	}
	delete(c.kept, seq)
	buddy, h := k.buddy, k.hold
	k.hold = nil
	c.mu.Unlock()
	if buddy != "" {
		c.notice(KindDrop, buddy, seq)
	}
	h.release()
	c.release(k.then)
}

// handOver turns receipts a session leaving for node holds into copies
// this node keeps for node (a cross-node resumption): each gets a new
// number node will send back with KindDone, and the old receipt is
// released only then. It returns the new numbers (0 for none), or nil
// when node cannot take receipts.
func (c *custody) handOver(node string, unsent []Unsent) []uint64 {
	if !c.on || !c.capable(node) {
		return nil
	}
	seqs := make([]uint64, len(unsent))
	c.mu.Lock()
	for i, u := range unsent {
		if !c.protects(u.El) {
			continue
		}
		c.seq++
		seqs[i] = c.seq
		c.kept[c.seq] = &kept{seq: c.seq, node: node, full: u.El.To(), el: u.El, at: c.r.now(), then: u.Receipt}
	}
	c.mu.Unlock()
	for i, u := range unsent {
		if seqs[i] == 0 {
			c.release(u.Receipt)
		}
	}
	return seqs
}

// takeBack removes the copies handOver kept for node under seqs, if they
// are still kept, and reports which were (see Router.TakeBack).
func (c *custody) takeBack(node string, seqs []uint64) []bool {
	back := make([]bool, len(seqs))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, seq := range seqs {
		if seq == 0 {
			continue
		}
		if k := c.kept[seq]; k != nil && k.node == node {
			delete(c.kept, seq)
			c.unindexLocked(k)
			back[i] = true
		}
	}
	return back
}

// notice queues a KindDone or KindDrop number for node; a timer sends
// what gathered in one message per node.
func (c *custody) notice(kind, node string, seq uint64) {
	c.nmu.Lock()
	key := noticeKey{kind, node}
	c.notices[key] = append(c.notices[key], seq)
	start := c.kickLocked()
	c.nmu.Unlock()
	if start {
		time.AfterFunc(noticeDelay, c.flushNotices)
	}
}

// kickLocked notes that something waits for the next flush; true when
// the caller must start its timer (after unlocking nmu).
func (c *custody) kickLocked() bool {
	start := !c.flushing
	c.flushing = true
	return start
}

func (c *custody) flushNotices() {
	c.nmu.Lock()
	batch := c.notices
	c.notices = map[noticeKey][]uint64{}
	var positions map[posKey]map[string][]seqPos
	if len(c.posNotices) > 0 {
		positions = c.posNotices
		c.posNotices = map[posKey]map[string][]seqPos{}
	}
	c.flushing = false
	c.nmu.Unlock()
	// Positions first: a copy's done notice after its position leaves
	// nothing behind, a position after the done finds nothing.
	for node, payload := range positionPayloads(positions) {
		ctx, cancel := c.r.clusterCtx(context.Background())
		err := c.r.cluster.Send(ctx, node, KindPositions, payload)
		cancel()
		if err != nil {
			// Without the position the copy is routed again if node
			// dies: a duplicate at worst.
			c.r.log.Debug("router: custody positions not delivered", "node", node, "err", err)
		}
	}
	for key, seqs := range batch {
		payload := make([]byte, 0, 8*len(seqs))
		for _, s := range seqs {
			payload = binary.BigEndian.AppendUint64(payload, s)
		}
		ctx, cancel := c.r.clusterCtx(context.Background())
		err := c.r.cluster.Send(ctx, key.node, key.kind, payload)
		cancel()
		if err != nil {
			c.noticeFailed(key.node, key.kind, payload, err)
		}
	}
	c.flushInbound()
}

// noticeFailed queues the numbers of a notice the link could not deliver
// again while its node is a member: a lost notice would keep a copy until
// that node dies and then deliver it twice.
func (c *custody) noticeFailed(node, kind string, payload []byte, err error) {
	c.forgetPeers()
	if !c.capable(node) {
		return
	}
	c.r.log.Debug("router: custody notice not delivered, queued again", "node", node, "kind", kind, "err", err)
	go func() {
		time.Sleep(100 * time.Millisecond)
		for len(payload) >= 8 {
			c.notice(kind, node, binary.BigEndian.Uint64(payload))
			payload = payload[8:]
		}
	}()
}

// handleHeld delivers a protected message another node forwarded and
// keeps a copy of: its receipt goes back once the client has it, at once
// when the session is gone and the message was stored or bounced.
func (c *custody) handleHeld(ctx context.Context, from string, payload []byte) ([]byte, error) {
	if !c.r.handlers.enter() {
		return nil, cluster.ErrHandBack
	}
	seq, full, el, err := c.parseKept(payload)
	if err != nil {
		c.r.handlers.leave()
		return nil, err
	}
	rc := &Receipt{keeper: from, seq: seq}
	c.r.inbox.run(full, func() { // inbox.go; HandBack waits for it
		defer c.r.handlers.leave()
		if !c.r.deliverTo(ctx, full, el, rc) {
			// The receipt goes back once the fallback has made the
			// message safe: stored (when the database answers,
			// offlineretry.go) or bounced.
			h := newHold(func() { c.release(rc) })
			c.r.fallback(withHold(ctx, h), el, full)
			h.release()
		}
	})
	return nil, nil
}

func (c *custody) handleDeposit(ctx context.Context, from string, payload []byte) ([]byte, error) {
	if !c.r.handlers.enter() {
		return nil, cluster.ErrHandBack // a copy kept here would be lost with this node
	}
	defer c.r.handlers.leave()
	seq, full, el, err := c.parseKept(payload)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	m := c.deposits[from]
	if m == nil {
		m = map[uint64]*kept{}
		c.deposits[from] = m
	}
	m[seq] = &kept{seq: seq, full: full, el: el, at: c.r.now(), from: from}
	c.mu.Unlock()
	return nil, nil
}

func (c *custody) handleDone(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var done []*kept
	var holds []*hold
	c.mu.Lock()
	for ; len(payload) >= 8; payload = payload[8:] {
		seq := binary.BigEndian.Uint64(payload)
		k := c.kept[seq]
		if k == nil || k.node != from {
			continue
		}
		delete(c.kept, seq)
		c.unindexLocked(k)
		done = append(done, k)
		if k.hold != nil {
			// The client acknowledged before the link's report came.
			holds = append(holds, k.hold)
			k.hold = nil
		}
	}
	c.mu.Unlock()
	for _, h := range holds {
		h.release()
	}
	for _, k := range done {
		c.release(k.then)
	}
	return nil, nil
}

func (c *custody) handleDrop(ctx context.Context, from string, payload []byte) ([]byte, error) {
	c.mu.Lock()
	if m := c.deposits[from]; m != nil {
		for ; len(payload) >= 8; payload = payload[8:] {
			seq := binary.BigEndian.Uint64(payload)
			if k := m[seq]; k != nil {
				c.unindexLocked(k)
				delete(m, seq)
			}
		}
		if len(m) == 0 {
			delete(c.deposits, from)
		}
	}
	c.mu.Unlock()
	return nil, nil
}

// nodeDown routes again, in order, what this node kept for the dead
// node's sessions and what it deposited here, and deposits elsewhere the
// local copies it had deposited there. Not when clustering was switched
// off here: the other nodes live on and report as before.
func (c *custody) nodeDown(node string, _ []cluster.Route) {
	c.forgetPeers()
	if !c.r.clustered() {
		return
	}
	c.inboundNodeDown(node)
	var again, redep, deps []*kept
	c.mu.Lock()
	for seq, k := range c.kept {
		switch {
		case k.node == node:
			delete(c.kept, seq)
			again = append(again, k)
		case k.node == "" && k.buddy == node:
			k.buddy = ""
			redep = append(redep, k)
		}
	}
	for _, k := range c.deposits[node] {
		deps = append(deps, k)
	}
	delete(c.deposits, node)
	c.mu.Unlock()
	bySeq := func(a, b *kept) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	}
	slices.SortFunc(again, bySeq)
	slices.SortFunc(deps, bySeq)
	slices.SortFunc(redep, bySeq)
	if n := len(again) + len(deps); n > 0 {
		c.r.log.Info("router: routing again what a dead node held", "node", node, "kept", len(again), "deposited", len(deps), "deposit_again", len(redep))
	}
	// Copies counted in a resumable session wait for its client's
	// resume verdict (custody_resume.go); the others go now.
	now := c.park(append(again, deps...))
	go func() {
		c.reroute(now, "node_down")
		c.redeposit(redep)
	}()
}

// reroute routes copies again, in order, each stamped with the time it
// first reached the cluster (XEP-0203) so clients can place it among
// what arrived meanwhile. A copy's pending hold, and its chained receipt,
// are released once the new route has made it safe.
//
// Once a copy for a user went to offline storage, the user's later copies
// of the batch go there too, even if a resource has become available
// meanwhile: delivered live they would overtake the stored ones, which
// reach the new session only through its offline hand-over (a read of
// the store, and paced by the client). Stored behind them, they are
// handed over in order; each store kicks the user's hand-over, so they
// are not left for the next login.
func (c *custody) reroute(ks []*kept, why string) {
	var stored map[string]bool // users a copy of this batch was stored for
	for _, k := range ks {
		c.rerouted.Add(1)
		c.mu.Lock()
		h := k.hold
		k.hold = nil
		c.mu.Unlock()
		if then := k.then; then != nil {
			h = chainHold(h, func() { c.release(then) })
		}
		el := k.el
		if !hasDelay(el, c.r.domain) {
			el = privateCopy(el)
			el.Append(delayElement(c.r.domain, k.at))
		}
		c.r.log.Debug("router: routing a kept message again", "to", k.full, "why", why)
		ctx := withHold(context.Background(), h)
		bare := wire.BareJID(k.full)
		if stored[bare] {
			c.r.storeRerouted(ctx, el)
		} else {
			mark := &offlineMark{}
			c.r.route(withOfflineMark(ctx, mark), el)
			if mark.stored {
				if stored == nil {
					stored = map[string]bool{}
				}
				stored[bare] = true
			}
		}
		h.release() // the routing's own reference
		if c.afterReroute != nil {
			c.afterReroute(k)
		}
	}
}

// appendKept encodes a KindHeld or KindDeposit payload.
func appendKept(b []byte, seq uint64, full string, el *wire.Element) []byte {
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, full...)
	b = append(b, '\n', formatBinary)
	return wire.AppendBinary(b, el)
}

func (c *custody) parseKept(payload []byte) (uint64, string, *wire.Element, error) {
	if len(payload) < 8 {
		return 0, "", nil, errMalformedLink
	}
	full, el, err := c.r.parseStanzaMessage(payload[8:])
	return binary.BigEndian.Uint64(payload), full, el, err
}

// counts returns how many copies this node keeps and how many other
// nodes deposited with it (metrics, tests).
func (c *custody) counts() (kept, deposits int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.deposits {
		deposits += len(m)
	}
	return len(c.kept), deposits
}

// hold waits until every copy of one routed stanza that had to reach a
// second node has, then runs done once (the sender's acknowledgement, or
// the release of a receipt whose message was routed again). One
// reference belongs to the routing itself and is released when it ends;
// each copy takes another.
type hold struct {
	n    atomic.Int32
	done func()
}

func newHold(done func()) *hold {
	h := &hold{done: done}
	h.n.Store(1)
	return h
}

// add takes a reference; nil-safe.
func (h *hold) add() *hold {
	if h != nil {
		h.n.Add(1)
	}
	return h
}

// release drops a reference; nil-safe.
func (h *hold) release() {
	if h != nil && h.n.Add(-1) == 0 {
		h.done()
	}
}

// chainHold returns a hold that releases h (when not nil) and runs f.
func chainHold(h *hold, f func()) *hold {
	if h == nil {
		return newHold(f)
	}
	return newHold(func() { h.release(); f() })
}

// holdSrc rides in the routing context of one stanza: the hold its copies
// take, made on first use (asking the sending session only when a copy
// needs it). It is the plugins.AckHolder the interceptors see (under
// plugins' context key, so routing a held message adds no context value of
// its own): a plugin's hold (plugins.HoldAck, the archive's write) is one
// more reference on the same hold. A nil *holdSrc masks an outer one
// (withoutHold).
type holdSrc struct {
	s    AckHolder
	h    *hold
	made bool
}

var _ plugins.AckHolder = (*holdSrc)(nil)

// withHold returns ctx carrying h for the copies routing makes (nil:
// none).
func withHold(ctx context.Context, h *hold) context.Context {
	if h == nil {
		return ctx
	}
	return plugins.WithAckHolder(ctx, &holdSrc{h: h, made: true})
}

// withoutHold returns ctx carrying no hold: for work that outlives the
// routing of the stanza whose context it was (a backlog pump), which must
// neither take references on a hold that may be done nor ask the sending
// session for one from another goroutine.
func withoutHold(ctx context.Context) context.Context {
	if plugins.AckHolderFrom(ctx) == nil {
		return ctx
	}
	return plugins.WithAckHolder(ctx, (*holdSrc)(nil))
}

// holdFrom takes a reference on the hold of the stanza being routed, or
// returns nil when nothing waits for it.
func holdFrom(ctx context.Context) *hold {
	hs, _ := plugins.AckHolderFrom(ctx).(*holdSrc)
	return hs.take()
}

// take takes a reference on the hold, making it on first use; nil-safe.
// It runs on the routing's goroutine only (AckHolder.HoldAck must).
func (hs *holdSrc) take() *hold {
	if hs == nil {
		return nil
	}
	if !hs.made {
		hs.made = true
		if done := hs.s.HoldAck(); done != nil {
			hs.h = newHold(done)
		}
	}
	return hs.h.add()
}

// HoldAck is plugins.AckHolder: a plugin holds the acknowledgement with a
// reference of its own on the hold.
func (hs *holdSrc) HoldAck() func() {
	if h := hs.take(); h != nil {
		return h.release
	}
	return nil
}

// registerMetrics exports how many copies the node keeps and holds for
// others, and how many it routed again.
func (c *custody) registerMetrics(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	count := func(deposits bool) func() float64 {
		return func() float64 {
			k, d := c.counts()
			if deposits {
				return float64(d)
			}
			return float64(k)
		}
	}
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricCustodyCopies,
		Help: "Protected messages this node keeps a copy of until their recipient's client has them (kind=kept) or holds for other nodes (kind=deposited).", ConstLabels: prometheus.Labels{"kind": "kept"}}, count(false)))
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricCustodyCopies,
		Help: "Protected messages this node keeps a copy of until their recipient's client has them (kind=kept) or holds for other nodes (kind=deposited).", ConstLabels: prometheus.Labels{"kind": "deposited"}}, count(true)))
	register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricCustodyRerouted,
		Help: "Kept copies routed again because the node holding the message died or its link failed."}, func() float64 { return float64(c.rerouted.Load()) }))
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricCustodyPositioned,
		Help: "Kept copies whose number in their recipient's resumable stream-management session is known (a failed resumption's h can tell they were received)."}, func() float64 { return float64(c.positioned()) }))
	register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricCustodyDeduplicated,
		Help: "Kept copies let go without routing them again because a failed resumption's h said the client had them."}, func() float64 { return float64(c.deduplicated.Load()) }))
	c.registerInboundMetrics(reg)
	register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricCustodyUnprotected,
		Help: "Protected messages delivered to a local session while no buddy node could take a copy."}, func() float64 { return float64(c.unprotected.Load()) }))
}
