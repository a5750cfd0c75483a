package c2s

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// Stream management (XEP-0198): the writer counts stanzas it hands to the
// transport (outH) and keeps them until the client acknowledges them; the
// reader counts stanzas the client sent (inH). A session enabled with
// resume='true' outlives a broken transport for c2s.sm_resume_timeout,
// still bound in the router and still queueing, until a new stream resumes
// it or the timer unbinds it with everything unacknowledged.

func smFailed(se *wire.StanzaError, h int64) *wire.Element {
	f := wire.NewNS("failed", wire.NSSM)
	if h >= 0 {
		f.SetAttr("h", strconv.FormatInt(h, 10))
	}
	return f.Append(wire.NewNS(se.Condition, wire.NSStanzas))
}

func (s *Session) handleSM(el *wire.Element) bool {
	switch el.Name {
	case "enable":
		if s.smEnabled {
			s.enqueue(smFailed(wire.ErrUnexpectedRequest, -1))
			return false
		}
		s.enableSM(el, nil, nil)
		return false
	case "r":
		if s.smEnabled {
			s.mu.Lock()
			// Answered at once unless a stanza up to here is still held
			// (crash safety): then once it is safe, in order.
			s.ackWait = append(s.ackWait, s.inH)
			s.answerAcksLocked()
			s.mu.Unlock()
		}
		return false
	case "a":
		h, err := strconv.ParseUint(el.Attr("h"), 10, 32)
		if err != nil {
			s.streamError("bad-format", "bad h in <a/>")
			return true
		}
		s.mu.Lock()
		ok, acked := s.ackLocked(uint32(h))
		sent := s.outH
		ready := s.backlogReadyLocked()
		s.mu.Unlock()
		s.srv.d.Router.Release(acked)
		runAll(ready)
		if !ok {
			s.closeWith(ReasonProtocol, "undefined-condition", "handled count "+strconv.FormatUint(h, 10)+" is more than the "+strconv.FormatUint(uint64(sent), 10)+" stanzas sent")
			return true
		}
		return false
	case "resume":
		s.enqueue(smFailed(wire.ErrUnexpectedRequest, -1))
		return false
	}
	s.streamError("unsupported-stanza-type", "")
	return true
}

// enableSM turns stream management on as el, an <enable/>, asks. The
// <enabled/> answer goes out alone, or, when carrier is set, inside parent
// (Bind 2's <bound/>) within carrier (the SASL2 <success/>); either way the
// element queued is marked itemSMStart, so that the writer counts the
// stanzas that follow it and none before.
func (s *Session) enableSM(el, carrier, parent *wire.Element) {
	s.smEnabled = true
	s.inH = 0
	enabled := wire.NewNS("enabled", wire.NSSM)
	resume := el.Attr("resume") == "true" || el.Attr("resume") == "1"
	resumeFor := s.srv.d.C2S.SMResumeTimeout
	if m, err := strconv.Atoi(el.Attr("max")); err == nil && m > 0 && time.Duration(m)*time.Second < resumeFor {
		resumeFor = time.Duration(m) * time.Second // the client's preference, when shorter
	}
	if resume {
		id := s.srv.smID(s.id)
		// Under mu: the writer reads smID (positions of resumable
		// sessions) while this reader enables.
		s.mu.Lock()
		s.smID = id
		s.mu.Unlock()
		enabled.SetAttr("id", id)
		enabled.SetAttr("resume", "true")
		enabled.SetAttr("max", strconv.Itoa(int((resumeFor+time.Second-1)/time.Second)))
		s.srv.addResumable(s)
	}
	out := enabled
	if carrier != nil {
		parent.Append(enabled)
		out = carrier
	}
	s.mu.Lock()
	s.smResume = resume
	s.resumeFor = resumeFor
	s.inRouted, s.inReported, s.inHeld, s.smBare = 0, 0, 0, ""
	if resume {
		s.smBare = s.username + "@" + s.srv.d.Domain
	}
	s.enqueueItemLocked(outItem{kind: itemSMStart, el: out})
	s.mu.Unlock()
}

// errNotDetached: the session did not detach in time for a resumption.
var errNotDetached = errors.New("c2s: session did not detach")

// awaitDetached makes a resumable session let go of its transport for a
// resumption: a client may reconnect before we noticed its old transport
// died, so that transport is closed and its reader detaches the session.
// It returns once the reader is done (the caller checks old.detached).
func (s *Session) awaitDetached(ctx context.Context) error {
	s.mu.Lock()
	if !s.detached && !s.closing {
		s.takeover = true
		s.closeLocked(ReasonResumed, "", "")
	}
	readerDone := s.readerDone
	s.mu.Unlock()
	select {
	case <-readerDone:
		return nil
	case <-time.After(5 * time.Second):
		return errNotDetached
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ackLocked drops the stanzas the client acknowledged with h and returns
// their receipts (for Router.Release, after unlocking); false when h
// acknowledges more than was sent.
func (s *Session) ackLocked(h uint32) (bool, []*router.Receipt) {
	n := h - s.ackedH // modulo 2^32, as XEP-0198 §4 requires
	if int64(n) > int64(len(s.unacked)) {
		return false, nil
	}
	var rcs []*router.Receipt
	for i := uint32(0); i < n; i++ {
		s.unackedBytes -= approxSize(s.unacked[i].el)
		if rc := s.unacked[i].rc; rc != nil {
			rcs = append(rcs, rc)
		}
		s.unacked[i] = sentEl{}
	}
	s.unacked = s.unacked[n:]
	if len(s.unacked) == 0 {
		s.unacked = nil
		s.unackedBytes = 0
	}
	s.ackedH = h
	s.rOutstanding = false
	return true, rcs
}

// ackHold is one client stanza whose acknowledgement waits until its
// routing has put a copy on a second node (crash safety).
type ackHold struct {
	h uint32 // the stanza's number (inH)
	n int    // copies still on their way; guarded by Session.mu
}

// HoldAck holds the acknowledgement of the stanza the reader is routing
// (router.AckHolder): <r/> is answered with an h below it until the
// returned function has run, once per call. Without stream management
// nothing is acknowledged, so nothing is held (nil).
func (s *Session) HoldAck() func() {
	if !s.smEnabled {
		return nil
	}
	h := s.inH // the reader's own field: HoldAck runs inside FromClient
	s.mu.Lock()
	var e *ackHold
	if n := len(s.ackHolds); n > 0 && s.ackHolds[n-1].h == h {
		e = s.ackHolds[n-1]
	} else {
		e = &ackHold{h: h}
		s.ackHolds = append(s.ackHolds, e)
	}
	e.n++
	s.mu.Unlock()
	return func() { s.releaseAck(e) }
}

func (s *Session) releaseAck(e *ackHold) {
	s.mu.Lock()
	if e.n--; e.n > 0 {
		s.mu.Unlock()
		return
	}
	i := 0
	for i < len(s.ackHolds) && s.ackHolds[i].n == 0 {
		i++
	}
	clear(s.ackHolds[:i])
	s.ackHolds = s.ackHolds[i:]
	if len(s.ackHolds) == 0 {
		s.ackHolds = nil
	}
	s.reportInboundLocked() // first: it may let answers go at once
	s.answerAcksLocked()
	s.wakeSettledLocked()
	s.mu.Unlock()
}

// inboundHeld is told by the router that another node has the count h
// of the client's stanzas that are safe (InboundTracker): the <a/>s up
// to it may go.
func (s *Session) inboundHeld(h uint32) {
	s.mu.Lock()
	if before(s.inHeld, h) {
		s.inHeld = h
		s.answerAcksLocked()
		s.wakeSettledLocked()
	}
	s.mu.Unlock()
}

// ackableLocked says whether <a h/> may go as far as the client's
// stanza h: for a resumable session, once another node has the count
// (a failed resumption after this node's death answers <failed h/>
// with that node's count, which must not be below an <a h/> the client
// had: it would count the difference modulo 2^32 as handled).
func (s *Session) ackableLocked(h uint32) bool {
	return s.smBare == "" || !before(s.inHeld, h)
}

// settledLocked: nothing held, and the count another node has is the
// session's own (settleAcks).
func (s *Session) settledLocked() bool {
	return len(s.ackHolds) == 0 && s.ackableLocked(s.inRouted)
}

func (s *Session) wakeSettledLocked() {
	if len(s.acksSettled) == 0 || !s.settledLocked() {
		return
	}
	for _, ch := range s.acksSettled {
		close(ch)
	}
	s.acksSettled = nil
}

// inboundRouted notes that the reader has routed the client's stanzas up
// to inH (those with no acknowledgement held are safe now) and reports
// the safe count of a resumable session.
func (s *Session) inboundRouted() {
	if !s.smEnabled {
		return
	}
	s.mu.Lock()
	s.inRouted = s.inH
	s.reportInboundLocked()
	s.mu.Unlock()
}

// reportInboundLocked tells the router (Server.reportInbound) the count
// of the client's stanzas that are safe now, exactly what <a h/> may say
// (every one up to it routed, none held), when it grew since the last
// report of this resumable session. If this node dies, a failed
// resumption elsewhere answers <failed h/> with it, and the client sends
// again only what came after: a count too high would lose messages, so it
// is never above what is safe. Under mu, so that no report follows the
// session's end (Server.dropResumable): the router would keep it.
func (s *Session) reportInboundLocked() {
	if s.smBare == "" {
		return
	}
	h := s.inRouted
	if len(s.ackHolds) > 0 && before(s.ackHolds[0].h-1, h) {
		h = s.ackHolds[0].h - 1
	}
	if !before(s.inReported, h) {
		return
	}
	s.inReported = h
	if !s.srv.reportInbound(s.smID, s.smBare, h, s.inboundHeld) && before(s.inHeld, h) {
		s.inHeld = h // nobody else to have it: nothing to wait for
	}
}

// answerAcksLocked answers, in order, the <r/>s whose stanzas are all
// safe: each with the count it was asked at.
func (s *Session) answerAcksLocked() {
	for len(s.ackWait) > 0 && (len(s.ackHolds) == 0 || before(s.ackWait[0], s.ackHolds[0].h)) && s.ackableLocked(s.ackWait[0]) {
		h := s.ackWait[0]
		s.ackWait = s.ackWait[1:]
		s.enqueueItemLocked(outItem{kind: itemElement, el: wire.NewNS("a", wire.NSSM).SetAttr("h", strconv.FormatUint(uint64(h), 10))})
	}
	if len(s.ackWait) == 0 {
		s.ackWait = nil
	}
}

// before compares stanza counts modulo 2^32.
func before(a, b uint32) bool { return int32(a-b) < 0 }

// settleAcks waits (at most ackSettleWait) until no acknowledgement is
// held and another node has the session's count, so that the count a
// resumption reports (<resumed h/>, or to the node taking the session
// over) covers only stanzas already safe and is never above what a
// failed resumption elsewhere would answer. The caller then reads
// safeInHLocked.
func (s *Session) settleAcks() {
	s.mu.Lock()
	if s.settledLocked() {
		s.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	s.acksSettled = append(s.acksSettled, ch)
	s.mu.Unlock()
	t := time.NewTimer(ackSettleWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// ackSettleWait bounds settleAcks: holds clear in a link round trip,
// unless a node just died or the message waits for offline storage to
// answer (router offlineretry.go); then the client resends what is not
// yet safe, at worst a duplicate.
const ackSettleWait = 3 * time.Second

// safeInHLocked is the count of the client's stanzas that are safe: inH,
// or just below the oldest one still held. Only while the reader does not
// run (a detached session), since inH is the reader's.
func (s *Session) safeInHLocked() uint32 {
	if len(s.ackHolds) > 0 {
		return s.ackHolds[0].h - 1
	}
	return s.inH
}

// resume moves this (new, authenticated) stream's transport to the
// detached session it names, re-sends what the client did not acknowledge
// and continues with that session. With inline set (a SASL2 <success/>,
// XEP-0198 inside XEP-0388), the answer, <resumed/> or <failed/>, goes
// inside it instead of on its own, and a resumed session sends it, then
// its stream features, then what it re-sends; a failure leaves inline to
// the caller. Inline resumption covers sessions detached on this node.
func (s *Session) resume(el, inline *wire.Element) (*Session, bool) {
	h64, err := strconv.ParseUint(el.Attr("h"), 10, 32)
	old := s.srv.lookupResumable(el.Attr("previd"))
	if err == nil && old == nil && inline == nil {
		if next, stop, handled := s.resumeRemote(el.Attr("previd"), uint32(h64)); handled {
			return next, stop
		}
	}
	fail := func(f *wire.Element) (*Session, bool) {
		if inline != nil {
			inline.Append(f)
		} else {
			s.enqueue(f)
		}
		return nil, false
	}
	if err == nil && old == nil {
		// Nobody holds it: most likely its node died. The client's count
		// still says what it received, and the cluster may know how many
		// of the client's stanzas that node had made safe: the client
		// need not send those again (CRASHSAFETY.md, "Duplicates").
		s.resumeFailed(el.Attr("previd"), uint32(h64))
		return fail(smFailed(wire.ErrItemNotFound, s.safeInbound(el.Attr("previd"))))
	}
	if err != nil || old == nil || old == s || old.username != s.username {
		return fail(smFailed(wire.ErrItemNotFound, -1))
	}
	h := uint32(h64)
	if err := old.awaitDetached(s.ctx); err != nil {
		if s.ctx.Err() != nil {
			return nil, true
		}
		return fail(smFailed(wire.ErrItemNotFound, -1))
	}
	old.settleAcks()
	var features *wire.Element
	if inline != nil {
		features = old.features() // before old.mu: features takes it
	}

	old.mu.Lock()
	if !old.detached {
		old.mu.Unlock()
		return fail(smFailed(wire.ErrItemNotFound, -1))
	}
	ok, acked := old.ackLocked(h)
	if !ok {
		sent := int64(old.outH)
		old.mu.Unlock()
		return fail(smFailed(wire.ErrUnexpectedRequest, sent))
	}
	defer s.srv.d.Router.Release(acked)
	if old.resumeTimer != nil {
		old.resumeTimer.Stop()
	}
	// Hand this stream's transport over: our writer writes what it has,
	// then nothing of ours touches the transport again.
	s.mu.Lock()
	s.stopTimerLocked()
	for s.writing || (len(s.queue) > 0 && !s.tclosed) {
		s.wcond.Wait()
	}
	s.paused = true
	s.tclosed = true
	s.mu.Unlock()

	// Unacknowledged stanzas go first, then what was queued while detached.
	requeue := make([]outItem, 0, len(old.unacked)+len(old.queue)+2)
	// Acknowledged by <resumed/> as by <a/>: only what is safe.
	old.inH = old.safeInHLocked()
	old.inRouted = old.inH
	old.ackHolds, old.ackWait = nil, nil
	resumed := wire.NewNS("resumed", wire.NSSM).
		SetAttr("previd", old.smID).SetAttr("h", strconv.FormatUint(uint64(old.inH), 10))
	if inline != nil {
		inline.Append(wire.New("authorization-identifier").SetText(old.JID().String()), resumed)
		requeue = append(requeue, outItem{kind: itemElement, el: inline}, outItem{kind: itemElement, el: features})
	} else {
		requeue = append(requeue, outItem{kind: itemElement, el: resumed})
	}
	lead := len(requeue) // what goes before the stanzas sent again
	pending := 0
	for _, u := range old.unacked {
		sz := approxSize(u.el)
		requeue = append(requeue, outItem{kind: itemElement, el: u.el, rc: u.rc, size: sz})
		pending += sz
	}
	for _, it := range old.queue {
		requeue = append(requeue, it)
		pending += it.size
	}
	resent := len(requeue) - lead
	old.queue = requeue
	old.pending = pending
	old.unacked, old.unackedBytes = nil, 0
	old.outH = h
	old.rOutstanding = false
	old.detached, old.closing, old.takeover = false, false, false
	// The writer waits for the resumed hooks below: a plugin that treats
	// a detached session specially (push wakes its device) must know the
	// session is back before the client can see <resumed/> and its
	// contacts' next messages arrive for it live.
	old.paused = true
	old.writing, old.tclosed = false, false
	old.inactive, old.held = false, 0 // a new stream starts active (XEP-0352 §4)
	old.reason, old.closeErr = ReasonNone, nil
	old.t = s.t
	old.kind, old.remote = s.kind, s.remote
	old.parent = s.parent
	old.ctx, old.cancel = context.WithCancel(s.parent)
	old.routeCtx = context.WithoutCancel(old.ctx)
	context.AfterFunc(old.ctx, func() { old.closeWith(ReasonShutdown, "system-shutdown", "") })
	old.readerDone = make(chan struct{})
	old.enterBound()
	old.last.Store(monotonic())
	old.startIdleTimerLocked()
	old.t.SetActivityHook(old.touch)
	old.signalLocked()
	old.mu.Unlock()

	s.mu.Lock()
	s.closing = true
	s.reason = ReasonResumed
	s.mu.Unlock()
	s.cancel()
	old.srv.fire(old.ctx, plugins.EventSessionResumed, old.JID().String(), "")
	old.resumeWriter()
	old.logAsBound(old.JID()) // the client's new address
	old.logger().Info("c2s: session resumed", "resent", resent, "inline", inline != nil)
	return old, false
}
