package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// Module is the keyed state a plugin keeps on each key's owner.
type Module interface {
	// Rebuild makes this node the host of key, before its first Handle
	// here: load it from the store, merge handoffs (what Release returned
	// on the nodes that held the key before: none after a crash or for a
	// new key, several after clustering came back on, this node's own
	// copy first when it had one), and ask the other
	// nodes what only they know (Cluster.CallAll, with a timeout of its
	// own: ctx ends only when the first waiting stanza would). On an error
	// the key's stanzas keep waiting and Rebuild runs again (until
	// MoveTimeout, when they bounce).
	Rebuild(ctx context.Context, key string, handoffs [][]byte) error
	// Handle processes one stanza for key on its host. A
	// *wire.StanzaError is bounced to the sender as is, any other error as
	// internal-server-error.
	Handle(ctx context.Context, key string, el *wire.Element) error
	// Release gives key up: this node no longer owns it. It returns what
	// the next owner's Rebuild needs beyond the store (nil for nothing)
	// and drops the key's state.
	Release(ctx context.Context, key string) ([]byte, error)
}

// Options build a Placement.
type Options struct {
	// Cluster is the plugin's view of the cluster (Host.Cluster).
	Cluster plugins.Cluster
	// Module keeps the state.
	Module Module
	// Name tells apart several placements of one plugin ("rooms",
	// "nodes"); it prefixes their message kinds. Default "keys".
	Name string
	// Route sends bounces (Host.Route).
	Route func(ctx context.Context, el *wire.Element)
	// LocalKeys, when set, lists the keys this node's own sessions are
	// involved in (the module's per-node index: rooms its users joined).
	// After a membership change the node tells each such key's new owner,
	// so a key whose host died is rebuilt at once, not at its next stanza.
	LocalKeys func() []string
	// MoveTimeout bounds how long a stanza may wait for its key's owner
	// (a crashed owner is noticed after cluster.node_ttl, 10s by default)
	// and how long Rebuild and Handle may take. Default 30s.
	MoveTimeout time.Duration
	// QueueLimit bounds the stanzas waiting for one key on this node;
	// past it Dispatch bounces with resource-constraint. Default 1000.
	QueueLimit int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Placement runs a module's keys on their owners. Methods are safe for
// concurrent use.
type Placement struct {
	o    Options
	c    plugins.Cluster
	self string
	log  *slog.Logger

	ctx    context.Context // cancelled when Stop ends
	cancel context.CancelFunc
	// stopping: Stop began; this node owns nothing and hands keys over.
	stopping atomic.Bool
	remove   []func()
	wg       sync.WaitGroup // workers and membership work

	mu      sync.Mutex
	keys    map[string]*keyState
	box     map[string]*handoff // states released here, for the key's next owner
	changed chan struct{}       // closed and replaced at each membership change
	before  []plugins.Member    // members at the last change
	// rebalancing, dirty: one membership pass at a time, another when a
	// change came in meanwhile.
	rebalancing, dirty bool
	stopped            bool // Stop is waiting for the goroutines: start none
}

// keyState is one key on this node: its queue (guarded by Placement.mu)
// and whether its state lives here (written under mu of its own, which
// also serializes the module's calls for the key).
type keyState struct {
	mu       sync.Mutex
	hosted   atomic.Bool
	forget   bool // Forget was called during Handle; guarded by mu
	q        []*item
	inflight int // stanzas the worker took out of q and has not finished
	running  bool
}

// item is a stanza waiting for its key, or a control item (el nil) that
// makes the worker look at the key's ownership: acquire it when it is
// ours, release it when it is not.
type item struct {
	el       *wire.Element
	deadline time.Time
	// merge, on a control item, asks a node that already hosts the key to
	// take in what other nodes hold for it (clustering came back on and
	// they hosted copies of their own).
	merge bool
	// done, for stanzas another node forwarded, is signalled once the
	// stanza was handled or bounced here; the Call waiting on it answers.
	done chan struct{}
	// answerBack, on a stanza forwarded with the deliver.v2 protocol: past
	// its deadline it is not bounced here but reported not handled
	// (unhandled set before done closes), and its sender bounces it. So
	// a stanza is either handled once or bounced once: the owner never
	// handles what its sender already bounced.
	answerBack bool
	unhandled  bool
}

type handoff struct {
	states [][]byte
	at     time.Time
}

// boxTTL is how long a released state waits for its next owner to take it.
const boxTTL = 10 * time.Minute

// askTimeout bounds how long a new owner waits for the members to hand
// over what they hold for a key.
const askTimeout = 5 * time.Second

// maxBatch bounds the stanzas forwarded in one Call.
const maxBatch = 256

// Reply statuses.
const (
	statusDone     byte = 0 // deliver: handled; take: here are the states
	statusNotOwner byte = 1 // deliver: this node does not own the key
	statusBusy     byte = 2 // take: this node hosts the key and owns it by its view
)

// New returns a placement; call Start.
func New(o Options) *Placement {
	if o.Name == "" {
		o.Name = "keys"
	}
	if o.MoveTimeout <= 0 {
		o.MoveTimeout = 30 * time.Second
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Placement{
		o: o, c: o.Cluster, self: o.Cluster.NodeName(),
		log: o.Logger.With("part", "placement", "placement", o.Name),
		ctx: ctx, cancel: cancel,
		keys: map[string]*keyState{}, box: map[string]*handoff{},
		changed: make(chan struct{}), before: o.Cluster.Members(),
	}
}

func (p *Placement) kind(k string) string { return "placement." + p.o.Name + "." + k }

// Start registers the placement's message handlers and follows membership.
func (p *Placement) Start() {
	p.remove = append(p.remove,
		p.c.Handle(p.kind("deliver"), p.handleDeliver),
		p.c.Handle(p.kind("deliver.v2"), p.handleDeliverV2),
		p.c.Handle(p.kind("take"), p.handleTake),
		p.c.Handle(p.kind("adopt"), p.handleAdopt),
		p.c.Handle(p.kind("give"), p.handleGive),
		p.c.OnMembersChange(p.membersChanged),
	)
}

// Owner returns the node that owns key (never this node while it stops,
// unless it is alone).
func (p *Placement) Owner(key string) string {
	if !p.stopping.Load() {
		return p.c.Owner(key)
	}
	var others []plugins.Member
	for _, m := range p.c.Members() {
		if m.Name != p.self {
			others = append(others, m)
		}
	}
	if len(others) == 0 {
		return p.self
	}
	return plugins.Rendezvous(key, others)
}

// Hosted returns the keys whose state lives on this node, sorted.
func (p *Placement) Hosted() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k, ks := range p.keys {
		if ks.hosted.Load() {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Forget, called from the module's Handle for key, says the key's state
// is gone (a room destroyed): nothing is released for it, and the next
// stanza for it runs Rebuild again.
func (p *Placement) Forget(key string) {
	p.mu.Lock()
	ks := p.keys[key]
	p.mu.Unlock()
	if ks != nil {
		ks.forget = true // Handle runs under ks.mu
	}
}

// Dispatch queues a stanza for key and returns: the owner's Handle gets
// it (here or over the node links), or its sender gets an error.
func (p *Placement) Dispatch(ctx context.Context, key string, el *wire.Element) {
	if err := p.enqueue(key, &item{el: el, deadline: time.Now().Add(p.o.MoveTimeout)}, true); err != nil {
		p.bounce(el, err)
	}
}

var (
	errQueueFull = wire.ErrResourceConstraint.WithText("too many stanzas waiting for this address")
	errStopped   = wire.ErrServiceUnavailable.WithText("the service is stopping on this node")
)

// enqueue adds it to key's queue and starts the key's worker. With limit,
// it refuses past QueueLimit (control items and forwarded stanzas are not
// limited: their senders already were).
func (p *Placement) enqueue(key string, it *item, limit bool) *wire.StanzaError {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errStopped
	}
	ks := p.keys[key]
	if ks == nil {
		ks = &keyState{}
		p.keys[key] = ks
	}
	if limit && len(ks.q)+ks.inflight >= p.o.QueueLimit {
		return errQueueFull
	}
	ks.q = append(ks.q, it)
	if !ks.running {
		ks.running = true
		p.wg.Add(1)
		go p.work(key, ks)
	}
	return nil
}

// work processes key's queue until it is empty.
func (p *Placement) work(key string, ks *keyState) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(ks.q) == 0 {
			ks.running = false
			if !ks.hosted.Load() && p.keys[key] == ks {
				delete(p.keys, key) // nothing here for it
			}
			p.mu.Unlock()
			return
		}
		// A control item goes alone; stanzas go in batches.
		n := 1
		if ks.q[0].el != nil {
			for n < len(ks.q) && n < maxBatch && ks.q[n].el != nil {
				n++
			}
		}
		batch := slices.Clone(ks.q[:n])
		ks.q = slices.Delete(ks.q, 0, n)
		ks.inflight = n
		p.mu.Unlock()
		p.process(key, ks, batch)
		p.mu.Lock()
		ks.inflight = 0
		p.mu.Unlock()
	}
}

// process brings a batch to the key's owner, waiting while there is none
// that takes it.
func (p *Placement) process(key string, ks *keyState, batch []*item) {
	backoff := 20 * time.Millisecond
	for {
		batch = p.expire(batch)
		if len(batch) == 0 {
			return
		}
		wait := p.changes()
		owner := p.Owner(key)
		if owner == p.self {
			if batch[0].merge && ks.hosted.Load() {
				if p.merge(key, ks, batch[0].deadline) {
					finish(batch)
					return
				}
			} else if p.acquire(key, ks, batch[0].deadline) {
				rest := p.handleHere(key, ks, batch)
				if len(rest) == 0 {
					return
				}
				if len(rest) < len(batch) {
					batch = rest // forgotten: rebuild at once
					continue
				}
			}
		} else {
			p.release(key, ks, owner)
			if batch[0].el == nil {
				finish(batch) // a control item only had to release
				return
			}
			rest, err := p.forward(owner, key, batch)
			if len(rest) == 0 {
				return
			}
			if len(rest) < len(batch) {
				batch = rest // the owner handled the others
			}
			if err != nil && p.ctx.Err() == nil {
				p.log.Debug("placement: owner did not take the stanzas; waiting", "key", key, "owner", owner, "err", err)
			}
		}
		// No owner took them: wait for the members to change, or a while.
		t := time.NewTimer(backoff)
		select {
		case <-wait:
		case <-t.C:
		case <-p.ctx.Done():
		}
		t.Stop()
		backoff = min(2*backoff, time.Second)
	}
}

// expire bounces what waited past its deadline and returns the rest.
func (p *Placement) expire(batch []*item) []*item {
	now := time.Now()
	kept := batch[:0]
	for _, it := range batch {
		if now.Before(it.deadline) && p.ctx.Err() == nil {
			kept = append(kept, it)
			continue
		}
		switch {
		case it.answerBack:
			it.unhandled = true // its sender bounces it
		case it.el != nil:
			p.log.Warn("placement: no owner took a stanza in time; bouncing it", "to", it.el.To(), "waited", p.o.MoveTimeout)
			p.bounce(it.el, wire.ErrRemoteServerTimeout.WithText("the service did not answer in time: it is moving to another node, try again"))
		}
		finish([]*item{it})
	}
	return kept
}

func finish(batch []*item) {
	for _, it := range batch {
		if it.done != nil {
			close(it.done)
		}
	}
}

// handleHere runs Handle for a batch of a key hosted here. It returns
// what is left to do: the whole batch when the key was released
// meanwhile, the rest after a Handle called Forget (they need a Rebuild
// first); nil when all is handled.
func (p *Placement) handleHere(key string, ks *keyState, batch []*item) []*item {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if !ks.hosted.Load() {
		return batch
	}
	for i, it := range batch {
		if it.answerBack && !time.Now().Before(it.deadline) {
			// Its sender bounces it (see forward); an earlier Handle of
			// the batch took the time.
			it.unhandled = true
		} else if it.el != nil {
			ctx, cancel := context.WithTimeout(p.ctx, p.o.MoveTimeout)
			err := p.o.Module.Handle(ctx, key, it.el)
			cancel()
			if err != nil {
				se, ok := err.(*wire.StanzaError)
				if !ok {
					p.log.Error("placement: module failed", "key", key, "err", err)
					se = wire.ErrInternalServerError
				}
				p.bounce(it.el, se)
			}
		}
		finish(batch[i : i+1])
		if ks.forget {
			ks.forget = false
			ks.hosted.Store(false)
			return batch[i+1:]
		}
	}
	return nil
}

// acquire makes key hosted here: it collects what the nodes hold for it
// (take) and runs Rebuild. It reports false when that must wait: a node
// still hosts the key as its owner (views differ), or Rebuild failed.
func (p *Placement) acquire(key string, ks *keyState, deadline time.Time) bool {
	if ks.hosted.Load() {
		return true
	}
	ctx, cancel := context.WithDeadline(p.ctx, deadline)
	defer cancel()
	states, ok := p.collect(ctx, key)
	if !ok {
		return false
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.hosted.Load() {
		p.keep(key, states)
		return true
	}
	if err := p.o.Module.Rebuild(ctx, key, states); err != nil {
		p.log.Warn("placement: rebuild failed; will retry", "key", key, "err", err)
		p.keep(key, states)
		return false
	}
	ks.forget = false
	ks.hosted.Store(true)
	p.log.Debug("placement: key hosted here", "key", key, "handoffs", len(states))
	return true
}

// merge takes in what other nodes hold for a key hosted here: their
// copies after clustering came back on. The module sees one Rebuild with
// every state, its own (Release) first. It reports false when a node
// still hosts its copy as the owner (views differ): try again.
func (p *Placement) merge(key string, ks *keyState, deadline time.Time) bool {
	ctx, cancel := context.WithDeadline(p.ctx, deadline)
	defer cancel()
	states, ok := p.collect(ctx, key)
	if !ok {
		return false
	}
	if len(states) == 0 {
		return true
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if !ks.hosted.Load() {
		p.keep(key, states) // released meanwhile: for the next owner
		return true
	}
	own, err := p.o.Module.Release(ctx, key)
	if err != nil {
		p.log.Warn("placement: release before a merge failed; merging the others' state only", "key", key, "err", err)
	} else if own != nil {
		states = append([][]byte{own}, states...)
	}
	if err := p.o.Module.Rebuild(ctx, key, states); err != nil {
		// Nothing hosted now; the next stanza rebuilds from the box.
		p.log.Warn("placement: rebuild for a merge failed; will retry", "key", key, "err", err)
		ks.hosted.Store(false)
		p.keep(key, states)
		return true
	}
	p.log.Info("placement: merged copies of a key", "key", key, "states", len(states))
	return true
}

// collect asks every member for what it holds for key (take). ok is
// false when one still hosts the key as its owner by its view: what the
// others gave up stays in this node's box meanwhile.
func (p *Placement) collect(ctx context.Context, key string) (states [][]byte, ok bool) {
	// A member that does not answer soon is taken for gone (a hung node
	// is dropped by the cluster soon after anyway).
	actx, cancel := context.WithTimeout(ctx, askTimeout)
	answers := p.c.CallAll(actx, p.kind("take"), []byte(key))
	cancel()
	busy := ""
	for _, a := range answers {
		if a.Err != nil {
			// Gone or silent: what it held (if anything) is lost with it,
			// as after a crash; Rebuild works from the store.
			p.log.Info("placement: a member did not hand over", "key", key, "node", a.Node, "err", a.Err)
			continue
		}
		st, got, err := decodeTake(a.Payload)
		if err != nil {
			p.log.Warn("placement: bad take answer", "node", a.Node, "err", err)
			continue
		}
		if st == statusBusy && a.Node != p.self { // merging into our own copy is the point
			busy = a.Node
		}
		states = append(states, got...)
	}
	if busy != "" {
		p.keep(key, states)
		p.log.Debug("placement: key still hosted by a node that owns it by its view; waiting", "key", key, "node", busy)
		return nil, false
	}
	return states, true
}

// keep puts released states in this node's box for key.
func (p *Placement) keep(key string, states [][]byte) {
	if len(states) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.box[key]
	if b == nil {
		b = &handoff{}
		p.box[key] = b
	}
	b.states = append(b.states, states...)
	b.at = time.Now()
}

// takeBox removes and returns the states boxed here for key, dropping
// boxes nobody came for in boxTTL.
func (p *Placement) takeBox(key string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, b := range p.box {
		if time.Since(b.at) > boxTTL {
			p.log.Warn("placement: a released state was never taken", "key", k)
			delete(p.box, k)
		}
	}
	b := p.box[key]
	delete(p.box, key)
	if b == nil {
		return nil
	}
	return b.states
}

// release gives up key when it is hosted here: the state goes to this
// node's box (or, while stopping, to the owner's) and the owner is told.
func (p *Placement) release(key string, ks *keyState, owner string) {
	if !ks.hosted.Load() {
		return
	}
	ks.mu.Lock()
	if !ks.hosted.Load() {
		ks.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.o.MoveTimeout)
	state, err := p.o.Module.Release(ctx, key)
	cancel()
	if err != nil {
		p.log.Warn("placement: release failed; the next owner rebuilds from the store", "key", key, "err", err)
		state = nil
	}
	// The state is in the box (or with the owner) before the key stops
	// being hosted here: a take that finds it not hosted finds the state.
	if state != nil {
		if !p.stopping.Load() {
			p.keep(key, [][]byte{state})
		} else if err := p.give(owner, key, state); err != nil {
			p.log.Warn("placement: could not hand a key over at stop; its owner rebuilds from the store", "key", key, "owner", owner, "err", err)
		}
	}
	ks.hosted.Store(false)
	ks.mu.Unlock()
	p.log.Debug("placement: key released", "key", key, "owner", owner)
	if err := p.c.Send(p.ctx, owner, p.kind("adopt"), []byte(key)); err != nil {
		p.log.Debug("placement: could not tell the new owner", "key", key, "owner", owner, "err", err)
	}
}

// forward sends a batch to the owner and returns what it did not handle
// (nil when it handled everything; the whole batch when the call failed).
// It finishes the items the owner handled.
//
// The owner gets each stanza's deadline with it and answers, per stanza,
// handled or not: what it could not start before the deadline it reports
// instead of handling it later, so that this node bounces it and nobody
// handles it as well. The call waits replyGrace past the last deadline
// for that answer. While the owner is a live member the call is not given
// up early even if the key moved meanwhile: the owner forwards what it
// still holds to the new owner, and answers. Only an owner that left the
// membership (dead, or hung and dropped) is given up on at once; what it
// had started on may then be handled twice, never lost.
func (p *Placement) forward(owner, key string, batch []*item) ([]*item, error) {
	last := batch[0].deadline
	for _, it := range batch {
		if it.deadline.After(last) {
			last = it.deadline
		}
	}
	ctx, cancel := context.WithDeadline(p.ctx, last.Add(p.replyGrace()))
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-p.changes():
				if !p.isMember(owner) {
					cancel()
					return
				}
			case <-done:
				return
			}
		}
	}()
	reply, err := p.c.Call(ctx, owner, p.kind("deliver.v2"), encodeDeliverV2(key, batch, time.Now()))
	if errors.Is(err, plugins.ErrNoHandler) {
		// An owner from before deliver.v2 (a rolling upgrade).
		return p.forwardV1(ctx, owner, key, batch)
	}
	if err != nil {
		return batch, err
	}
	st, unhandled, err := decodeDeliverReply(reply, len(batch))
	if err != nil {
		return batch, err
	}
	if st != statusDone {
		return batch, fmt.Errorf("placement: %s does not own %q", owner, key)
	}
	var rest []*item
	for i, it := range batch {
		if unhandled[i] {
			rest = append(rest, it)
		} else {
			finish(batch[i : i+1])
		}
	}
	return rest, nil
}

// forwardV1 is forward for an owner that knows only "deliver": it handles
// the whole batch or nothing, and bounces what waits past its own
// deadline itself. The call ends at the batch's first deadline.
func (p *Placement) forwardV1(ctx context.Context, owner, key string, batch []*item) ([]*item, error) {
	first := batch[0].deadline
	for _, it := range batch {
		if it.deadline.Before(first) {
			first = it.deadline
		}
	}
	ctx, cancel := context.WithDeadline(ctx, first)
	defer cancel()
	reply, err := p.c.Call(ctx, owner, p.kind("deliver"), encodeDeliver(key, batch))
	if err != nil {
		return batch, err
	}
	if len(reply) == 1 && reply[0] == statusDone {
		finish(batch)
		return nil, nil
	}
	return batch, fmt.Errorf("placement: %s does not own %q", owner, key)
}

// replyGrace is how long a forwarding call waits for the owner's answer
// past the last deadline of its batch: the owner reports at each deadline
// what it did not start, once the Handle under way (if any) returns.
func (p *Placement) replyGrace() time.Duration {
	return min(p.o.MoveTimeout/4, 10*time.Second)
}

func (p *Placement) isMember(node string) bool {
	for _, m := range p.c.Members() {
		if m.Name == node {
			return true
		}
	}
	return false
}

// give hands a released state to owner's box (at Stop).
func (p *Placement) give(owner, key string, state []byte) error {
	if owner == p.self {
		return errors.New("placement: no other member to hand over to")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), p.o.MoveTimeout)
	defer cancel()
	_, err := p.c.Call(ctx, owner, p.kind("give"), encodeStrings(key, state))
	return err
}

// handleDeliver takes stanzas another node forwarded for a key this node
// owns, and answers once they are handled (or bounced).
func (p *Placement) handleDeliver(ctx context.Context, from string, payload []byte) ([]byte, error) {
	key, els, err := decodeDeliver(payload)
	if err != nil {
		return nil, err
	}
	if p.Owner(key) != p.self || p.ctx.Err() != nil {
		return []byte{statusNotOwner}, nil
	}
	deadline := time.Now().Add(p.o.MoveTimeout)
	dones := make([]chan struct{}, 0, len(els))
	for _, el := range els {
		d := make(chan struct{})
		if p.enqueue(key, &item{el: el, deadline: deadline, done: d}, false) != nil {
			return []byte{statusNotOwner}, nil // stopping: the sender takes them elsewhere
		}
		dones = append(dones, d)
	}
	for _, d := range dones {
		select {
		case <-d:
		case <-ctx.Done():
			// The sender gave up and will send them again: they may be
			// handled twice, never lost.
			return nil, ctx.Err()
		}
	}
	return []byte{statusDone}, nil
}

// handleDeliverV2 takes stanzas another node forwarded with their
// deadlines, and answers, once each was handled or reached its deadline
// unstarted, which it did not handle (see forward).
func (p *Placement) handleDeliverV2(ctx context.Context, from string, payload []byte) ([]byte, error) {
	key, els, deadlines, err := decodeDeliverV2(payload, time.Now())
	if err != nil {
		return nil, err
	}
	if p.Owner(key) != p.self || p.ctx.Err() != nil {
		return []byte{statusNotOwner}, nil
	}
	items := make([]*item, len(els))
	for i, el := range els {
		items[i] = &item{el: el, deadline: deadlines[i], done: make(chan struct{}), answerBack: true}
		if p.enqueue(key, items[i], false) != nil {
			// Stopping: what was queued already is reported unhandled
			// (p.ctx is done, so expire does that at once).
			for _, it := range items[i:] {
				it.unhandled = true
				close(it.done)
			}
			break
		}
	}
	unhandled := make([]bool, len(items))
	for i, it := range items {
		select {
		case <-it.done:
			unhandled[i] = it.unhandled
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return encodeDeliverReply(statusDone, unhandled), nil
}

// handleTake answers a new owner collecting what this node holds for a
// key: its boxed states, and its live state when it hosts the key but no
// longer owns it (released now); when it hosts the key and owns it by its
// view, it says so (busy: the asker waits for the views to meet).
func (p *Placement) handleTake(ctx context.Context, from string, payload []byte) ([]byte, error) {
	key := string(payload)
	p.mu.Lock()
	ks := p.keys[key]
	p.mu.Unlock()
	if ks != nil && ks.hosted.Load() {
		if owner := p.Owner(key); owner == p.self {
			// Still ours by this node's view. What others handed over
			// goes along: the asker keeps it for the owner.
			return encodeTake(statusBusy, p.takeBox(key)), nil
		}
		ks.mu.Lock()
		if ks.hosted.Load() {
			rctx, cancel := context.WithTimeout(p.ctx, p.o.MoveTimeout)
			state, err := p.o.Module.Release(rctx, key)
			cancel()
			if err != nil {
				p.log.Warn("placement: release failed; the next owner rebuilds from the store", "key", key, "err", err)
			} else if state != nil {
				p.keep(key, [][]byte{state})
			}
			ks.hosted.Store(false)
		}
		ks.mu.Unlock()
	}
	return encodeTake(statusDone, p.takeBox(key)), nil
}

// handleAdopt: another node says this one owns key now (it released the
// key, or its sessions use it and its owner changed). Acquire it, or, if
// it is hosted here already, take in what others held for it.
func (p *Placement) handleAdopt(ctx context.Context, from string, payload []byte) ([]byte, error) {
	key := string(payload)
	if p.Owner(key) == p.self && p.ctx.Err() == nil {
		p.enqueue(key, &item{deadline: time.Now().Add(p.o.MoveTimeout), merge: true}, false)
	}
	return nil, nil
}

// handleGive keeps a state a stopping node handed over.
func (p *Placement) handleGive(ctx context.Context, from string, payload []byte) ([]byte, error) {
	parts, err := decodeStrings(payload, 2)
	if err != nil {
		return nil, err
	}
	key := string(parts[0])
	p.keep(key, [][]byte{parts[1]})
	if p.Owner(key) == p.self {
		p.enqueue(key, &item{deadline: time.Now().Add(p.o.MoveTimeout)}, false)
	}
	return nil, nil
}

// changes returns a channel closed at the next membership change.
func (p *Placement) changes() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// membersChanged wakes waiting stanzas and starts a pass over the keys
// (on its own goroutine: the cluster's event goroutine must not block).
func (p *Placement) membersChanged(ch plugins.MembersChange) {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	if p.stopped {
		p.mu.Unlock()
		return
	}
	if p.rebalancing {
		p.dirty = true
		p.mu.Unlock()
		return
	}
	p.rebalancing = true
	p.wg.Add(1)
	p.mu.Unlock()
	go p.rebalance()
}

// rebalance looks at every key this node hosts or its sessions use after
// a membership change, until no change came in meanwhile.
func (p *Placement) rebalance() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		before := p.before
		after := p.c.Members()
		p.before = after
		var hosted []string
		for k, ks := range p.keys {
			if ks.hosted.Load() {
				hosted = append(hosted, k)
			}
		}
		p.dirty = false
		p.mu.Unlock()
		for _, k := range hosted {
			if p.Owner(k) != p.self {
				p.enqueue(k, &item{deadline: time.Now().Add(p.o.MoveTimeout)}, false)
			}
		}
		if p.o.LocalKeys != nil {
			for _, k := range p.o.LocalKeys() {
				owner := p.Owner(k)
				if owner == plugins.Rendezvous(k, before) {
					continue
				}
				if owner == p.self {
					p.enqueue(k, &item{deadline: time.Now().Add(p.o.MoveTimeout), merge: true}, false)
				} else if err := p.c.Send(p.ctx, owner, p.kind("adopt"), []byte(k)); err != nil {
					p.log.Debug("placement: could not tell a key's new owner", "key", k, "owner", owner, "err", err)
				}
			}
		}
		p.mu.Lock()
		if !p.dirty || p.ctx.Err() != nil {
			p.rebalancing = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// Stop hands every key hosted here to its next owner, lets the queued
// stanzas reach their owners (until ctx ends; the rest bounce) and stops
// following the cluster.
func (p *Placement) Stop(ctx context.Context) error {
	p.stopping.Store(true)
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	var hosted []string
	for k, ks := range p.keys {
		if ks.hosted.Load() {
			hosted = append(hosted, k)
		}
	}
	p.mu.Unlock()
	for _, k := range hosted {
		p.enqueue(k, &item{deadline: time.Now().Add(p.o.MoveTimeout)}, false)
	}
	// Bounded below ctx: until this node leaves the membership, the
	// others still name it the owner of its keys and refuse what it
	// forwards to their next owner, so a worker with stanzas queued keeps
	// waiting for views that meet only after Stop (a node stopped without
	// a drain). Past stopWait what still waits is bounced (or reported
	// unhandled to the node that forwarded it), rather than holding the
	// node's whole stop (server/clustertest TestPlacementSurvivesOwnerKill
	// ran out of its 30 s stopping a node).
	wait := time.NewTimer(p.stopWait())
	defer wait.Stop()
	done := make(chan struct{})
	go func() {
		for {
			p.mu.Lock()
			busy := false
			for _, ks := range p.keys {
				if ks.running {
					busy = true
				}
			}
			p.mu.Unlock()
			if !busy {
				close(done)
				return
			}
			select {
			case <-time.After(10 * time.Millisecond):
			case <-wait.C:
				p.log.Warn("placement: stanzas still waiting for another owner at stop; bouncing them")
				close(done)
				return
			case <-ctx.Done():
				close(done)
				return
			}
		}
	}()
	<-done
	for _, rm := range p.remove {
		rm()
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cancel() // what still waits expires: bounced
	p.wg.Wait()
	return nil
}

// stopWait bounds how long Stop waits for the keys' queues to drain.
func (p *Placement) stopWait() time.Duration {
	return min(p.o.MoveTimeout/3, 10*time.Second)
}

// bounce answers a stanza with an error, unless it is one itself, an IQ
// result or has no sender (never answer those).
func (p *Placement) bounce(el *wire.Element, se *wire.StanzaError) {
	if el.IsError() || el.From() == "" || (el.Name == "iq" && el.Type() == "result") || p.o.Route == nil {
		return
	}
	p.o.Route(context.WithoutCancel(p.ctx), wire.ErrorReply(el, se))
}
