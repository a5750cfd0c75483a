package router

import (
	"context"
	"encoding/binary"
	"slices"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

// Each once, where stream management lets the server tell (CRASHSAFETY.md,
// "Duplicates"). When a node dies, the copies the survivors kept of what
// its sessions had not had acknowledged are routed again; some of those
// the clients had received. A client reconnecting after its node died
// usually tries to resume (XEP-0198 <resume previd h/>) on another node;
// that fails, the session died with its node, but h says how many
// stanzas of the session the client received. So:
//
//   - Positions. The writer of a resumable session reports, for each
//     receipted stanza it counts, its number in the session's outbound
//     count (Router.Positions); the router tells the node keeping the
//     copy (KindPositions, gathered like KindDone), which notes it on the
//     copy: stream-management ID and number.
//   - Verdicts. The node that answers <failed/> to a resumption of a
//     session nobody holds tells every node (KindResumeFailed) that the
//     client of that session received up to h (Router.ResumeFailed).
//     Each node drops its copies of that session numbered up to h, as
//     if the client had acknowledged them (it has them), and remembers
//     the verdict for a while (a position that arrives later is checked
//     against it).
//   - The order of events. A verdict may come before the node is found
//     dead (the usual case: clients reconnect within seconds, the node is
//     found dead cluster.node_ttl after its last heartbeat) or after. At
//     a node's death, the copies for a recipient whose session had
//     positions without a verdict wait (parked) until the verdict or
//     cluster.crash_resume_wait, whichever is first, then what is left is
//     routed again, in order. Copies with no position (not written yet,
//     or their position notice did not arrive) are routed again: a
//     duplicate is better than a loss.
//
// A verdict is the client's own word, like <a h/>: the user authenticated
// on the node that sends it, and only copies for that user's JIDs are
// dropped, so a client can only give up its own messages.

const (
	// KindPositions lists, per resumable session, where it counted
	// copies: groups of a byte saying whose sequence numbers follow
	// (posKept: the receiver's, of copies it forwarded; posDeposit: the
	// sender's, of its deposits), the stream-management ID (2 bytes of
	// length, then the ID), a count (4 bytes) and that many sequence
	// numbers (8 bytes) with their number in the session's outbound count
	// (4 bytes).
	KindPositions = "custody.positions"
	// KindResumeFailed says a client failed to resume a session nobody
	// holds: h (4 bytes), the user's bare JID, '\n', the
	// stream-management ID.
	KindResumeFailed = "custody.resume_failed"

	// verdictKeep is how long a verdict is remembered for positions or a
	// node's death that come after it.
	verdictKeep = 5 * time.Minute
)

// The two kinds of copies a KindPositions group names: their sequence
// numbers are from different counters.
const (
	posKept    byte = 'k'
	posDeposit byte = 'd'
)

// Position says the stanza Receipt came with was counted as number H of
// a resumable session's outbound stanzas (XEP-0198's h).
type Position struct {
	Receipt *Receipt
	H       uint32
}

// verdict is what a failed resumption said of a session.
type verdict struct {
	bare string
	h    uint32
	at   time.Time
}

// parked are the copies for one recipient of a dead node, waiting for
// the verdicts of the sessions they were counted in (waiting).
type parked struct {
	ks      []*kept
	waiting map[string]bool
	done    bool
}

// covers reports whether a client that received h stanzas has the one
// numbered pos (counts modulo 2^32).
func covers(h, pos uint32) bool { return int32(h-pos) >= 0 }

// Positions is called by a resumable session's writer (c2s) with the
// numbers it gave receipted stanzas in its outbound count; sm is its
// stream-management ID. The nodes keeping copies of them note it.
func (r *Router) Positions(sm string, ps []Position) {
	r.custody.positions(sm, ps)
}

// ResumeFailed is called when a client authenticated as bare tried to
// resume the session sm, saying it received h of its stanzas, and no node
// holds that session: every node drops its copies of what the client
// had.
func (r *Router) ResumeFailed(sm, bare string, h uint32) {
	r.custody.resumeFailed(sm, bare, h)
}

type seqPos struct {
	rc  *Receipt
	pos uint32
}

// posKey groups positions for one node: its copies or our deposits.
type posKey struct {
	node    string
	deposit bool
}

func (c *custody) positions(sm string, ps []Position) {
	if !c.on || sm == "" {
		return
	}
	for _, p := range ps {
		rc := p.Receipt
		if rc == nil {
			continue
		}
		node, deposit := rc.keeper, rc.keeper == ""
		if deposit {
			// A local copy: its deposit at the buddy is what matters.
			c.mu.Lock()
			if k := c.kept[rc.seq]; k != nil && k.node == "" {
				node = k.buddy
			}
			c.mu.Unlock()
			if node == "" {
				continue
			}
		}
		c.nmu.Lock()
		key := posKey{node, deposit}
		bySM := c.posNotices[key]
		if bySM == nil {
			bySM = map[string][]seqPos{}
			c.posNotices[key] = bySM
		}
		bySM[sm] = append(bySM[sm], seqPos{rc, p.H})
		start := c.kickLocked()
		c.nmu.Unlock()
		if start {
			time.AfterFunc(noticeDelay, c.flushNotices)
		}
	}
}

// positionPayloads encodes gathered positions, skipping receipts released
// meanwhile (the client acknowledged them: nothing left to place).
func positionPayloads(batch map[posKey]map[string][]seqPos) map[string][]byte {
	out := map[string][]byte{}
	for key, bySM := range batch {
		b := out[key.node]
		for sm, ps := range bySM {
			n := 0
			for _, p := range ps {
				if !p.rc.released.Load() {
					n++
				}
			}
			if n == 0 || len(sm) > 0xffff {
				continue
			}
			if key.deposit {
				b = append(b, posDeposit)
			} else {
				b = append(b, posKept)
			}
			b = binary.BigEndian.AppendUint16(b, uint16(len(sm)))
			b = append(b, sm...)
			b = binary.BigEndian.AppendUint32(b, uint32(n))
			for _, p := range ps {
				if !p.rc.released.Load() {
					b = binary.BigEndian.AppendUint64(b, p.rc.seq)
					b = binary.BigEndian.AppendUint32(b, p.pos)
				}
			}
		}
		if len(b) > 0 {
			out[key.node] = b
		}
	}
	return out
}

// handlePositions notes on the copies from kept (forwarded to from, or
// deposited by it) where they were counted.
func (c *custody) handlePositions(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var done []*kept
	c.mu.Lock()
	for len(payload) >= 3 {
		deposit := payload[0] == posDeposit
		l := int(binary.BigEndian.Uint16(payload[1:]))
		if len(payload) < 3+l+4 {
			break
		}
		sm := string(payload[3 : 3+l])
		n := int(binary.BigEndian.Uint32(payload[3+l:]))
		payload = payload[3+l+4:]
		v, judged := c.verdicts[sm]
		for ; n > 0 && len(payload) >= 12; n-- {
			seq, pos := binary.BigEndian.Uint64(payload), binary.BigEndian.Uint32(payload[8:])
			payload = payload[12:]
			var k *kept
			if deposit {
				k = c.deposits[from][seq]
			} else if k = c.kept[seq]; k != nil && k.node != from {
				k = nil
			}
			if k == nil {
				continue // done already
			}
			c.placeLocked(k, sm, pos)
			if judged && c.coveredLocked(k, v) {
				done = append(done, c.takeLocked(k)...)
			}
		}
	}
	c.mu.Unlock()
	c.finish(done)
	return nil, nil
}

// placeLocked notes where k was counted and indexes it by session.
func (c *custody) placeLocked(k *kept, sm string, pos uint32) {
	if k.sm != sm {
		c.unindexLocked(k)
		k.sm = sm
		m := c.bySM[sm]
		if m == nil {
			m = map[*kept]struct{}{}
			c.bySM[sm] = m
		}
		m[k] = struct{}{}
	}
	k.pos = pos
}

func (c *custody) unindexLocked(k *kept) {
	if k.sm == "" {
		return
	}
	if m := c.bySM[k.sm]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(c.bySM, k.sm)
		}
	}
	k.sm = ""
}

// coveredLocked reports whether verdict v says the client had k.
func (c *custody) coveredLocked(k *kept, v verdict) bool {
	return k.sm != "" && cluster.BareJID(k.full) == v.bare && covers(v.h, k.pos)
}

// takeLocked removes k, whose client has it, from wherever it waits, and
// returns it for finish; a parked copy is only marked (its group's
// unpark finishes it).
func (c *custody) takeLocked(k *kept) []*kept {
	c.unindexLocked(k)
	c.deduplicated.Add(1)
	switch {
	case k.parked != nil:
		k.dropped = true
		return nil
	case k.from != "":
		if m := c.deposits[k.from]; m != nil && m[k.seq] == k {
			delete(m, k.seq)
			if len(m) == 0 {
				delete(c.deposits, k.from)
			}
		}
		return nil
	case k.node != "" && c.kept[k.seq] == k:
		delete(c.kept, k.seq)
		return []*kept{k}
	}
	return nil
}

// finish releases what waited for copies whose client has them: the
// sender's acknowledgement if still held, and a chained receipt.
func (c *custody) finish(ks []*kept) {
	for _, k := range ks {
		c.mu.Lock()
		h := k.hold
		k.hold = nil
		c.mu.Unlock()
		h.release()
		c.release(k.then)
	}
}

// positioned is how many copies here know where their session counted
// them (metrics, tests).
func (c *custody) positioned() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.bySM {
		n += len(m)
	}
	return n
}

// resumeFailed applies the verdict here and tells every other node that
// keeps copies.
func (c *custody) resumeFailed(sm, bare string, h uint32) {
	if !c.on || sm == "" {
		return
	}
	c.judge(sm, bare, h)
	payload := binary.BigEndian.AppendUint32(nil, h)
	payload = append(payload, bare...)
	payload = append(payload, '\n')
	payload = append(payload, sm...)
	go func() {
		for node := range c.view().capable {
			ctx, cancel := c.r.clusterCtx(context.Background())
			err := c.r.cluster.Send(ctx, node, KindResumeFailed, payload)
			cancel()
			if err != nil {
				c.r.log.Debug("router: resume verdict not delivered", "node", node, "err", err)
			}
		}
	}()
}

func (c *custody) handleResumeFailed(ctx context.Context, from string, payload []byte) ([]byte, error) {
	if len(payload) < 4 {
		return nil, errMalformedLink
	}
	h := binary.BigEndian.Uint32(payload)
	bare, sm, ok := cutByte(payload[4:], '\n')
	if !ok || sm == "" || bare == "" {
		return nil, errMalformedLink
	}
	c.judge(sm, bare, h)
	return nil, nil
}

func cutByte(b []byte, sep byte) (string, string, bool) {
	i := slices.Index(b, sep)
	if i < 0 {
		return "", "", false
	}
	return string(b[:i]), string(b[i+1:]), true
}

// judge records a verdict and drops the copies it covers; parked copies
// waiting only for it are routed again now.
func (c *custody) judge(sm, bare string, h uint32) {
	now := c.r.now()
	var done []*kept
	var ready []*parked
	c.mu.Lock()
	if now.Sub(c.verdictsPruned) > time.Minute {
		c.verdictsPruned = now
		for id, v := range c.verdicts {
			if now.Sub(v.at) > verdictKeep {
				delete(c.verdicts, id)
			}
		}
	}
	v := verdict{bare: bare, h: h, at: now}
	c.verdicts[sm] = v
	for k := range c.bySM[sm] {
		if c.coveredLocked(k, v) {
			done = append(done, c.takeLocked(k)...)
		}
	}
	for _, p := range c.awaiting[sm] {
		delete(p.waiting, sm)
		if len(p.waiting) == 0 && !p.done {
			ready = append(ready, p)
		}
	}
	delete(c.awaiting, sm)
	c.mu.Unlock()
	c.finish(done)
	if len(ready) > 0 {
		go func() {
			for _, p := range ready {
				c.unpark(p)
			}
		}()
	}
}

// park splits the copies a dead node leaves (in the order they are to be
// routed again) by recipient: a recipient whose copies were counted in a
// session without a verdict waits for it, bounded by
// cluster.crash_resume_wait; the others are returned to be routed now.
func (c *custody) park(ks []*kept) []*kept {
	wait := time.Duration(0)
	if w := c.r.cfg.Cluster.CrashResumeWait; w != nil {
		wait = *w
	}
	byFull := map[string]*parked{}
	var groups []*parked
	var now []*kept
	c.mu.Lock()
	for _, k := range ks {
		p := byFull[k.full]
		if p == nil {
			p = &parked{waiting: map[string]bool{}}
			byFull[k.full] = p
			groups = append(groups, p)
		}
		p.ks = append(p.ks, k)
		if k.sm != "" && wait > 0 {
			if _, judged := c.verdicts[k.sm]; !judged {
				p.waiting[k.sm] = true
			}
		}
	}
	var parkedGroups []*parked
	for _, p := range groups {
		if len(p.waiting) == 0 {
			for _, k := range p.ks {
				c.unindexLocked(k)
			}
			now = append(now, p.ks...)
			continue
		}
		for _, k := range p.ks {
			k.parked = p
		}
		for sm := range p.waiting {
			c.awaiting[sm] = append(c.awaiting[sm], p)
		}
		parkedGroups = append(parkedGroups, p)
	}
	c.mu.Unlock()
	if len(parkedGroups) > 0 {
		c.r.log.Info("router: waiting for resumptions before routing again what a dead node's sessions held",
			"recipients", len(parkedGroups), "wait", wait)
		time.AfterFunc(wait, func() {
			for _, p := range parkedGroups {
				c.unpark(p)
			}
		})
	}
	return now
}

// unpark routes a parked group again (once), but for the copies a verdict
// said the client had.
func (c *custody) unpark(p *parked) {
	var again, dropped []*kept
	c.mu.Lock()
	if p.done {
		c.mu.Unlock()
		return
	}
	p.done = true
	for sm := range p.waiting {
		l := slices.DeleteFunc(c.awaiting[sm], func(q *parked) bool { return q == p })
		if len(l) == 0 {
			delete(c.awaiting, sm)
		} else {
			c.awaiting[sm] = l
		}
	}
	for _, k := range p.ks {
		k.parked = nil
		c.unindexLocked(k)
		if k.dropped {
			dropped = append(dropped, k)
		} else {
			again = append(again, k)
		}
	}
	c.mu.Unlock()
	c.finish(dropped)
	c.reroute(again, "node_down")
}
