package c2s

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// Resumption across nodes (XEP-0198 in a cluster). A client whose
// connection broke usually comes back through the load balancer, and with
// several nodes it lands on another one. The stream-management ID names
// the node that holds the detached session; the node the client reached
// asks it for the session (kindTakeover over the node link). The holder
// checks the user, acknowledges what the client says it received, takes
// the session out of its router without a word to the contacts (no
// unavailable presence: the user never left) and answers with the routing
// state, the client's count of handled stanzas and every stanza the
// client has not acknowledged. The new node binds the session with that
// state, answers <resumed/>, re-sends the stanzas and tells the holder it
// has them (kindRelease). Until then the holder keeps a copy: if the
// release does not come (the new node failed on the way), it routes the
// copies again (to offline storage, or to the session if it is back), so
// a broken handover costs at most duplicates, never messages. With crash
// safety the holder's router keeps its copies of the messages until the
// new node's client has them instead (Router.HandOver: the new session
// holds receipts naming them), so a crash of either node after the
// hand-over loses nothing either. The holder waits for the release in
// both cases: a new node whose call gave up before the answer came (the
// holder was slow, in a storm) never takes the session, and without the
// release the router's copies would wait for receipts nobody holds
// (Router.TakeBack hands them back to be routed again).

const (
	kindTakeover = "c2s.sm.takeover"
	kindRelease  = "c2s.sm.release"
	// takeoverTimeout bounds the takeover call; releaseWait is how long the
	// holder keeps its copy of the handed-over stanzas.
	takeoverTimeout = 10 * time.Second
)

// releaseWait is how long the holder waits for kindRelease (a variable
// for tests).
var releaseWait = 30 * time.Second

// redirectResumeWindow is how long a stream-management session sent to
// another node (see-other-host) waits to be resumed there before what it
// holds is routed again (to offline storage): long enough for a client to
// reconnect, short enough not to hold up a drain.
const redirectResumeWindow = 15 * time.Second

// canHandOver reports whether a detached session here can be resumed on
// another node right now.
func (srv *Server) canHandOver() bool {
	if srv.d.Cluster == nil || !srv.d.Cluster.Clustered() {
		return false
	}
	_, ok := srv.d.Router.(Mover)
	return ok
}

// Mover is what a handover needs from the router; *router.Router has it.
type Mover interface {
	Detach(ctx context.Context, s router.Session) (router.HandoverState, bool)
	Attach(ctx context.Context, s router.Session, st router.HandoverState) error
	Resumed(ctx context.Context, s router.Session)
	HandOver(node string, unsent []router.Unsent) []uint64
	TakeBack(node string, seqs []uint64) []bool
}

var _ Mover = (*router.Router)(nil)

type takeoverRequest struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	H        uint32 `json:"h"`
}

type takeoverReply struct {
	State     router.HandoverState `json:"state"`
	InH       uint32               `json:"in_h"`
	ResumeFor time.Duration        `json:"resume_for"`
	Stanzas   []string             `json:"stanzas,omitempty"`
	// Receipts are, per stanza, the number under which the holder keeps
	// a copy until the client has it (0: none); see Router.HandOver.
	Receipts []uint64 `json:"receipts,omitempty"`
}

var (
	errTakeoverNotFound = errors.New("no such resumable session")
	// errTakeoverAhead carries "h is more than sent; sent=N".
	errTakeoverAhead = "h acknowledges more than was sent; sent="
)

// smID returns the stream-management ID for a session: the session's own
// ID, prefixed with this node's name when clustered so another node knows
// whom to ask.
func (srv *Server) smID(id string) string {
	if srv.d.Cluster == nil {
		return id
	}
	return base64.RawURLEncoding.EncodeToString([]byte(srv.d.Cluster.NodeName())) + "." + id
}

// smNode returns the node an ID names ("" for none).
func smNode(id string) string {
	prefix, _, ok := strings.Cut(id, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(prefix)
	if err != nil {
		return ""
	}
	return string(b)
}

// ResumeTracker lets the survivors of a node's crash tell which of the
// messages its sessions had not had acknowledged their clients already
// received (router custody_resume.go); *router.Router has it.
type ResumeTracker interface {
	// Positions reports the numbers receipted stanzas got in the
	// outbound count of the resumable session sm.
	Positions(sm string, ps []router.Position)
	// ResumeFailed reports that a client authenticated as bare said it
	// received h stanzas of the session sm, which nobody holds.
	ResumeFailed(sm, bare string, h uint32)
}

var _ ResumeTracker = (*router.Router)(nil)

// InboundTracker lets a failed resumption of a session whose node died
// say how many of the client's stanzas the cluster has (<failed h/>), so
// that the client sends only the rest again (router custody_inbound.go);
// *router.Router has it.
type InboundTracker interface {
	// InboundSafe reports that the count of the client's stanzas that
	// are safe in the resumable session sm of user bare grew to h: what
	// <a h/> may say.
	// held is told, later, once another node has it, when InboundSafe
	// returns true; false: nothing waits.
	InboundSafe(sm, bare string, h uint32, held func(h uint32)) bool
	// InboundEnded reports that the session sm ended or moved on.
	InboundEnded(sm string)
	// SafeInbound returns the highest such count known for the session
	// sm of user bare, which no node holds; skip is a node not to ask.
	SafeInbound(ctx context.Context, sm, bare, skip string) (uint32, bool)
}

var _ InboundTracker = (*router.Router)(nil)

// placed hands the writer's positions to the router.
func (srv *Server) placed(sm string, ps []router.Position) {
	if rt, ok := srv.d.Router.(ResumeTracker); ok {
		rt.Positions(sm, ps)
	}
}

// resumeFailed tells the router that a resumption of previd failed for
// want of a session, with the client's count h (a client reconnecting
// after its node died: the copies of what it had are not sent again).
func (s *Session) resumeFailed(previd string, h uint32) {
	if rt, ok := s.srv.d.Router.(ResumeTracker); ok && previd != "" {
		rt.ResumeFailed(previd, s.username+"@"+s.srv.d.Domain, h)
	}
}

// reportInbound tells the router a resumable session's safe inbound
// count (from reportInboundLocked, under the session's mu: the router
// calls no session back).
func (srv *Server) reportInbound(sm, bare string, h uint32, held func(uint32)) bool {
	if it, ok := srv.d.Router.(InboundTracker); ok {
		return it.InboundSafe(sm, bare, h, held)
	}
	return false
}

// safeInbound is the cluster's count of the client's stanzas that were
// safe in the session previd, which nobody holds any more: the h of
// <failed/>; -1 when none is known.
func (s *Session) safeInbound(previd string) int64 {
	it, ok := s.srv.d.Router.(InboundTracker)
	if !ok || previd == "" {
		return -1
	}
	ctx, cancel := context.WithTimeout(s.ctx, takeoverTimeout)
	defer cancel()
	h, ok := it.SafeInbound(ctx, previd, s.username+"@"+s.srv.d.Domain, smNode(previd))
	if !ok {
		return -1
	}
	return int64(h)
}

// registerHandover installs the node-link handlers; NewServer calls it.
func (srv *Server) registerHandover() {
	if srv.d.Cluster == nil {
		return
	}
	if _, ok := srv.d.Router.(Mover); !ok {
		return
	}
	srv.d.Cluster.Handle(kindTakeover, srv.handleTakeover)
	srv.d.Cluster.Handle(kindRelease, srv.handleRelease)
}

// handleTakeover gives a detached (or about to be detached) session away.
func (srv *Server) handleTakeover(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var req takeoverRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	old := srv.lookupResumable(req.ID)
	if old == nil || old.username != req.Username {
		return nil, errTakeoverNotFound
	}
	if err := old.awaitDetached(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errTakeoverNotFound
	}
	old.settleAcks()
	old.mu.Lock()
	if !old.detached {
		old.mu.Unlock()
		return nil, errTakeoverNotFound
	}
	ok, acked := old.ackLocked(req.H)
	if !ok {
		sent := old.outH
		old.mu.Unlock()
		return nil, errors.New(errTakeoverAhead + strconv.FormatUint(uint64(sent), 10))
	}
	// From here the session is ours to give: it is no longer detached (a
	// late expiry does nothing) and it accepts nothing more (the router
	// routes what races with us elsewhere).
	old.detached, old.closing, old.reason = false, true, ReasonResumed
	if old.resumeTimer != nil {
		old.resumeTimer.Stop()
	}
	unsent := old.unsentLocked()
	// Only what is safe counts as handled (crash safety): the client
	// sends the rest again on the new node.
	inH, resumeFor := old.safeInHLocked(), old.resumeFor
	old.mu.Unlock()
	srv.d.Router.Release(acked)
	srv.dropResumable(old)

	st, ok := srv.d.Router.(Mover).Detach(ctx, old)
	if !ok {
		// Not in the router any more (kicked meanwhile): route what it had.
		srv.d.Router.Unbind(context.WithoutCancel(ctx), old, unsent)
		return nil, errTakeoverNotFound
	}
	reply := takeoverReply{State: st, InH: inH, ResumeFor: resumeFor, Stanzas: make([]string, 0, len(unsent))}
	for _, u := range unsent {
		reply.Stanzas = append(reply.Stanzas, u.El.String())
	}
	reply.Receipts = srv.d.Router.(Mover).HandOver(from, unsent)
	b, err := json.Marshal(reply)
	if err != nil {
		return nil, err
	}
	srv.holdCopies(req.ID, from, old, unsent, reply.Receipts)
	srv.fire(ctx, plugins.EventSessionClosed, st.JID, "moved to "+from)
	if srv.d.Metrics != nil {
		srv.d.Metrics.closes.WithLabelValues(ReasonResumed.String()).Inc()
	}
	old.logger().Info("c2s: session handed to another node", "node", from, "stanzas", len(unsent))
	return b, nil
}

// handedOver is what holdCopies keeps for one session handed over.
type handedOver struct {
	timer    *time.Timer
	unsent   []router.Unsent
	receipts []uint64 // Router.HandOver's numbers; nil: none
}

// holdCopies keeps the stanzas handed over to node until it confirms
// (kindRelease) and routes them again if it does not. With receipts (crash
// safety) the router keeps the messages until node's client has them, and
// holdCopies only watches for the release: without it node never took the
// session, and the router's copies are taken back and routed again.
func (srv *Server) holdCopies(id, node string, old *Session, unsent []router.Unsent, receipts []uint64) {
	if len(unsent) == 0 {
		return
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.handedOver == nil {
		srv.handedOver = map[string]*handedOver{}
	}
	srv.handedOver[id] = &handedOver{unsent: unsent, receipts: receipts, timer: time.AfterFunc(releaseWait, func() {
		srv.mu.Lock()
		delete(srv.handedOver, id)
		srv.mu.Unlock()
		again := unsent
		if receipts != nil {
			back := srv.d.Router.(Mover).TakeBack(node, receipts)
			again = nil
			for i, u := range unsent {
				if i < len(back) && back[i] {
					again = append(again, u)
				}
			}
			if len(again) == 0 {
				return
			}
		}
		srv.d.Logger.Warn("c2s: no confirmation for a handed-over session; routing its stanzas again",
			"jid", old.JID().String(), "node", node, "stanzas", len(again))
		ctx, cancel := context.WithTimeout(context.Background(), srv.d.DatabaseTimeout+5*time.Second)
		defer cancel()
		srv.d.Router.Unbind(ctx, old, again)
	})}
}

func (srv *Server) handleRelease(ctx context.Context, from string, payload []byte) ([]byte, error) {
	id := string(payload)
	srv.mu.Lock()
	h := srv.handedOver[id]
	delete(srv.handedOver, id)
	srv.mu.Unlock()
	if h != nil && h.timer.Stop() && h.receipts == nil {
		// The new node has the stanzas (without receipts: an older
		// version or crash safety off): the copies kept for them may go.
		// With receipts the router keeps its copies until they are done.
		var rcs []*router.Receipt
		for _, u := range h.unsent {
			if u.Receipt != nil {
				rcs = append(rcs, u.Receipt)
			}
		}
		srv.d.Router.Release(rcs)
	}
	return nil, nil
}

// resumeRemote asks the cluster for a session this node does not hold:
// the node its ID names first, then the others (the session may have moved
// on since). handled is false when nobody has it.
func (s *Session) resumeRemote(previd string, h uint32) (next *Session, stop, handled bool) {
	c := s.srv.d.Cluster
	if !s.srv.canHandOver() {
		return nil, false, false
	}
	mv := s.srv.d.Router.(Mover)
	var candidates []string
	if n := smNode(previd); n != "" && n != c.NodeName() {
		candidates = append(candidates, n)
	}
	ctx, cancel := context.WithTimeout(s.ctx, takeoverTimeout)
	defer cancel()
	if ms, err := c.Members(ctx); err == nil {
		for _, m := range ms {
			if m.Name != c.NodeName() && (len(candidates) == 0 || m.Name != candidates[0]) {
				candidates = append(candidates, m.Name)
			}
		}
	}
	req, _ := json.Marshal(takeoverRequest{ID: previd, Username: s.username, H: h})
	for _, node := range candidates {
		b, err := c.Call(ctx, node, kindTakeover, req)
		if err != nil {
			msg := err.Error() // a remote error carries the handler's message
			if i := strings.Index(msg, errTakeoverAhead); i >= 0 {
				sent, _ := strconv.ParseInt(strings.TrimSpace(msg[i+len(errTakeoverAhead):]), 10, 64)
				s.enqueue(smFailed(wire.ErrUnexpectedRequest, sent))
				return nil, false, true
			}
			if !strings.Contains(msg, errTakeoverNotFound.Error()) {
				s.logger().Warn("c2s: asking another node for a session failed", "node", node, "err", err)
			}
			continue
		}
		var reply takeoverReply
		if err := json.Unmarshal(b, &reply); err != nil {
			s.logger().Warn("c2s: bad takeover reply", "node", node, "err", err)
			continue
		}
		return s.adopt(ctx, mv, node, previd, h, reply)
	}
	return nil, false, false
}

// adopt makes this authenticated stream the session another node handed
// over: bound with the same state, <resumed/>, then the stanzas the
// client had not acknowledged, re-sent before anything new.
func (s *Session) adopt(ctx context.Context, mv Mover, node, previd string, h uint32, reply takeoverReply) (*Session, bool, bool) {
	els := make([]router.Unsent, 0, len(reply.Stanzas))
	for i, x := range reply.Stanzas {
		el, err := wire.Parse([]byte(x), wire.Limits{MaxStanzaBytes: 64 << 20})
		if err != nil {
			s.logger().Warn("c2s: bad stanza in a handed-over session", "err", err)
			continue
		}
		u := router.Unsent{El: el}
		if i < len(reply.Receipts) && reply.Receipts[i] != 0 {
			u.Receipt = router.RemoteReceipt(node, reply.Receipts[i])
		}
		els = append(els, u)
	}
	// The session is ours now whatever happens: if it cannot go on here,
	// its stanzas are routed as a gone session's and the client is told.
	fail := func(err error) (*Session, bool, bool) {
		s.logger().Warn("c2s: binding a handed-over session failed", "jid", reply.State.JID, "err", err)
		s.full.Store(nil)
		s.enqueue(smFailed(wire.ErrItemNotFound, -1))
		s.srv.d.Router.Unbind(context.WithoutCancel(ctx), s, els)
		s.release(node, previd)
		return nil, false, true
	}
	full, err := wire.ParseJID(reply.State.JID)
	if err != nil {
		return fail(err)
	}
	s.full.Store(&full)
	// Hold the queue while the router learns of us, so that nothing it
	// delivers overtakes <resumed/> and the re-sent stanzas.
	s.mu.Lock()
	if err := mv.Attach(ctx, s, reply.State); err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	s.bound = true
	s.smResume = true
	s.resumeFor = reply.ResumeFor
	if s.resumeFor <= 0 {
		s.resumeFor = s.srv.d.C2S.SMResumeTimeout
	}
	s.outH, s.ackedH = h, h
	s.smID = previd
	// What the old node made safe is safe: a failed resumption after
	// this node's death may say so.
	// <resumed h/> tells the client the count anyway.
	s.inRouted, s.inReported, s.inHeld, s.smBare = reply.InH, 0, reply.InH, s.username+"@"+s.srv.d.Domain
	s.reportInboundLocked()
	s.stopTimerLocked()
	s.enqueueItemLocked(outItem{kind: itemSMStart, el: wire.NewNS("resumed", wire.NSSM).
		SetAttr("previd", previd).SetAttr("h", strconv.FormatUint(uint64(reply.InH), 10))})
	for _, u := range els {
		s.noteOriginLocked(u.El) // a resend of one of these is recognised here too
		s.enqueueItemLocked(outItem{kind: itemElement, el: u.El, rc: u.Receipt})
	}
	s.startIdleTimerLocked()
	s.mu.Unlock()
	s.smEnabled = true
	s.inH = reply.InH
	s.enterBound()
	s.srv.addResumable(s)
	s.logAsBound(full)
	s.srv.fire(s.ctx, plugins.EventSessionBound, full.String(), "")
	s.release(node, previd)
	mv.Resumed(ctx, s)
	s.logger().Info("c2s: session resumed from another node", "node", node, "resent", len(els))
	return nil, false, true
}

// release tells the node that handed a session over that its copies can go.
func (s *Session) release(node, previd string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), takeoverTimeout)
	defer cancel()
	if err := s.srv.d.Cluster.Send(ctx, node, kindRelease, []byte(previd)); err != nil {
		s.logger().Warn("c2s: confirming a handover failed; that node will route its copies again", "node", node, "err", err)
	}
}
