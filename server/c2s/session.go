package c2s

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// Lock order: Server.mu before Session.mu; during a resumption the old
// (detached) session's mu before the new stream's. No lock is held during I/O or
// while calling the router. Methods ending in Locked need Session.mu held.

// state is where the reader is in the stream negotiation.
type state uint8

const (
	stateHeader      state = iota // waiting for a stream header
	stateNegotiating              // before authentication: STARTTLS, SASL, registration
	stateSASL                     // inside a SASL exchange
	stateAuthed                   // authenticated, not bound: bind or resume
	stateBound                    // stanzas flow
)

// itemKind tags what the writer finds in the outbound queue.
type itemKind uint8

const (
	itemElement itemKind = iota // a stanza or nonza
	itemHeader                  // the server's stream header
	itemFlush                   // close done once written; pause the writer if pause
	itemSMStart                 // the <enabled/> element: count stanzas after it
	itemHandoff                 // stop the writer without closing the transport
)

type outItem struct {
	kind  itemKind
	el    *wire.Element
	rc    *router.Receipt // crash safety: released once the client has el
	hdr   *StreamHeader
	done  chan struct{}
	pause bool
	size  int
}

// sentEl is a stanza written to the client that it has not acknowledged
// (stream management) or that a failed write lost, with its receipt.
type sentEl struct {
	el *wire.Element
	rc *router.Receipt
}

// Session is one client session: a stream negotiated to a bound resource,
// which the router sees as a router.Session. With stream management it can
// outlive its transport (detached) and continue on a new one (resumed).
type Session struct {
	srv  *Server
	logp atomic.Pointer[slog.Logger]
	id   string // session ID, in logs
	// smID is the stream-management ID (Server.smID), set when resumption
	// is enabled; the resumable table's key.
	smID string

	// preAuthRelease uncounts the transport's stream from its address's
	// unauthenticated streams (preauth.go); preAuthOver is true when the
	// address had too many already. Reader only.
	preAuthRelease func()
	preAuthOver    bool

	parent context.Context // the Serve context of the current transport
	ctx    context.Context // cancelled when the session closes
	cancel context.CancelFunc
	// routeCtx is ctx without its cancellation, for routing what the
	// client sent: a stanza read (and maybe acknowledged) is routed to
	// the end even when the session closes meanwhile (a node stopping);
	// every network and database call below bounds itself.
	routeCtx context.Context

	full atomic.Pointer[wire.JID]
	last atomic.Int64 // monotonic nanoseconds of the last byte from the client
	// started is when the session's first stream opened; client is what
	// the client said about itself; kind and remote describe the current
	// transport, guarded by mu (a resumption brings another). See info.go.
	started      time.Time
	client       atomic.Pointer[clientInfo]
	kind, remote string

	// Reader-goroutine state.
	t            Transport
	state        state
	username     string
	exchange     auth.Exchange
	mechanism    string // of the running (or last) exchange, for logs
	saslFailures int
	// sasl2 is set while the exchange runs in XEP-0388's namespace; bind2
	// is the XEP-0386 <bind/> its <authenticate/> carried, if any, and
	// sasl2Resume its XEP-0198 <resume/>. resumedInto is the session an
	// inline resumption moved this stream to, for handle to return.
	sasl2       bool
	bind2       *wire.Element
	sasl2Resume *wire.Element
	resumedInto *Session
	// userAgent is the XEP-0388 user-agent id of the running SASL2
	// exchange; fastUse its XEP-0484 <fast/> (a login with a token),
	// fastRequest the mechanism of its <request-token/>.
	userAgent   string
	fastUse     *auth.FASTUse
	fastRequest string
	// cb are the channel bindings of the stream's TLS, once cbKnown
	// (channel.go).
	cb          auth.Bindings
	cbKnown     bool
	smEnabled   bool
	inH         uint32
	headerCount int
	// tlsTurn and loginTurn are the times admitLoad reserved for this
	// stream's STARTTLS handshake and its login (gate.go).
	tlsTurn, loginTurn time.Time

	mu         sync.Mutex
	queue      []outItem
	spare      []outItem
	pending    int // bytes in queue
	closing    bool
	reason     CloseReason
	closeErr   *wire.Element
	paused     bool
	writing    bool       // a writer goroutine is running
	tclosed    bool       // the transport is closed (or handed to another session)
	wcond      *sync.Cond // on mu: signalled when writing or tclosed change
	readerDone chan struct{}
	failed     []sentEl // stanzas a failed write lost (without SM)
	authed     bool
	bound      bool
	timer      *time.Timer // auth timer, then the idle/ping timer
	pingID     string
	pingSent   int64
	pings      int

	// origins are the last messages' origin-ids, to drop resends
	// (origins.go); guarded by mu.
	origins *originRing

	// Stream management (XEP-0198), guarded by mu.
	smOn         bool // the writer counts outgoing stanzas
	smResume     bool
	resumeFor    time.Duration // how long a detached session waits
	outH         uint32
	ackedH       uint32
	unacked      []sentEl
	unackedBytes int
	rOutstanding bool
	detached     bool
	takeover     bool
	resumeTimer  *time.Timer
	// ackHolds are the client's stanzas (by their inH number, oldest
	// first) whose routing waits for a copy to reach a second node (crash
	// safety, router.AckHolder); ackWait the numbers requested <r/>s
	// were at, answered once nothing held is at or below them.
	ackHolds    []*ackHold
	ackWait     []uint32
	acksSettled []chan struct{} // closed once settledLocked (settleAcks)
	// inRouted is inH once the reader has routed those stanzas. A
	// resumable session reports its safe count (what <a h/> may say) to
	// the router when it grows (InboundTracker): inReported is the last
	// one, smBare the user it is reported for ("" when not resumable).
	inRouted, inReported uint32
	smBare               string
	// inHeld is the highest count another node has (the router says so,
	// inboundHeld) or that needs no other node: <a h/> goes no further
	// (ackableLocked).
	inHeld uint32

	// Client state indication (XEP-0352), guarded by mu: while inactive,
	// stanzas that can wait stay at the end of queue (held counts them)
	// until one that cannot wait, or anything the session itself sends,
	// flushes them in order (csi.go).
	inactive bool
	held     int

	// backlogReady are the router's callbacks waiting for room for more
	// backlog (offline messages, subscription requests), guarded by mu;
	// see Backlog.
	backlogReady []func()
}

var (
	_ router.Session   = (*Session)(nil)
	_ router.Receipted = (*Session)(nil)
	_ router.AckHolder = (*Session)(nil)
)

var clockBase = time.Now()

func monotonic() int64 { return int64(time.Since(clockBase)) }

func (srv *Server) newSession(ctx context.Context, t Transport) *Session {
	s := &Session{
		srv:        srv,
		id:         randomID(12),
		parent:     ctx,
		t:          t,
		readerDone: make(chan struct{}),
		started:    time.Now(),
		kind:       transportKind(t),
		remote:     t.RemoteAddr(),
	}
	s.wcond = sync.NewCond(&s.mu)
	s.logp.Store(srv.d.Logger.With("session", s.id, "addr", s.remote))
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.routeCtx = context.WithoutCancel(s.ctx)
	s.last.Store(monotonic())
	t.SetActivityHook(s.touch)
	s.timer = time.AfterFunc(srv.d.C2S.AuthTimeout, s.authExpired)
	context.AfterFunc(s.ctx, func() { s.closeWith(ReasonShutdown, "system-shutdown", "") })
	return s
}

// JID is the bound full JID (zero before binding).
func (s *Session) JID() wire.JID {
	if p := s.full.Load(); p != nil {
		return *p
	}
	return wire.JID{}
}

// ID is the session's stream management ID.
func (s *Session) ID() string { return s.id }

// Send queues a stanza for the client without blocking. It returns false
// when the session is closing; past the pending-bytes cap it closes the
// session as a slow consumer and returns false.
func (s *Session) Send(el *wire.Element) bool { return s.SendReceipted(el, nil) }

// SendReceipted is Send for a message the router keeps a copy of until
// the client has it (router.Receipted): rc goes back to Router.Release
// when the client acknowledges el, or, without stream management, once
// it is written; with Unbind's unsent stanzas when the session ends first.
func (s *Session) SendReceipted(el *wire.Element, rc *router.Receipt) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	if k, ok := originKey(el); ok {
		if s.origins == nil {
			s.origins = new(originRing)
		}
		if s.origins.seen(k) {
			// A resend of a message this session already has (origins.go):
			// delivered, as far as the router is concerned.
			s.mu.Unlock()
			s.srv.d.Metrics.duplicateDropped()
			if rc != nil {
				s.srv.d.Router.Release([]*router.Receipt{rc})
			}
			return true
		}
	}
	defer s.mu.Unlock()
	size := approxSize(el)
	if s.pending+s.unackedBytes+size > s.srv.maxPending() {
		s.closeLocked(ReasonSlowConsumer, "policy-violation", "too much data queued for a slow client")
		return false
	}
	s.queue = append(s.queue, outItem{kind: itemElement, el: el, rc: rc, size: size})
	s.pending += size
	if s.holdLocked(el) {
		return true
	}
	s.signalLocked()
	return true
}

// Backlog tells the router how many bytes of backlog (the offline queue,
// subscription requests waiting since the last login) it may hand over
// now (router.Paced). Backlog fills at most a quarter of the pending-bytes
// cap, and only once the client has taken what came before, down to an
// eighth (what the writer took counts as taken; with stream management,
// what the client acknowledged): a client gets its backlog as fast as it
// reads it, live stanzas keep most of the cap, and a large backlog never
// closes the session as a slow consumer. With nothing to give now it keeps
// ready (when not nil) and calls it once, with no lock held, when there is
// room again; a session that closes drops it, and a detached one keeps it
// for a resumption.
func (s *Session) Backlog(ready func()) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.backlogRoomLocked(); n > 0 && !s.closing {
		return n
	}
	// Kept while closing too: a session whose transport broke is closing
	// until its reader detaches it for a resumption, and the callback must
	// survive that; a session that does end drops it with itself.
	if ready != nil {
		s.backlogReady = append(s.backlogReady, ready)
	}
	return 0
}

// backlogRoomLocked is what Backlog may hand over now.
func (s *Session) backlogRoomLocked() int {
	used, limit := s.pending+s.unackedBytes, s.srv.maxPending()
	if s.detached || used > limit/8 {
		return 0
	}
	return limit/4 - used
}

// backlogReadyLocked returns the callbacks to run (after unlocking) when
// there is room for backlog again.
func (s *Session) backlogReadyLocked() []func() {
	if len(s.backlogReady) == 0 || s.closing || s.backlogRoomLocked() == 0 {
		return nil
	}
	fns := s.backlogReady
	s.backlogReady = nil
	return fns
}

func runAll(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}

// Close ends the session with a stream error condition (router.Session).
// It never blocks and never calls back into the router synchronously.
func (s *Session) Close(condition, text string) {
	reason := ReasonKicked
	switch condition {
	case "conflict":
		reason = ReasonConflict
	case "system-shutdown":
		reason = ReasonShutdown
	}
	s.mu.Lock()
	if s.detached {
		s.mu.Unlock()
		go s.expire(reason)
		return
	}
	s.closeLocked(reason, condition, text)
	s.mu.Unlock()
}

func (s *Session) closeWith(reason CloseReason, condition, text string) {
	s.mu.Lock()
	s.closeLocked(reason, condition, text)
	s.mu.Unlock()
}

// closeLocked starts closing: the writer drains the queue (unless the
// client is a slow consumer), writes the stream error and ends the stream.
func (s *Session) closeLocked(reason CloseReason, condition, text string) {
	if s.closing || s.detached {
		return
	}
	s.closing = true
	s.reason = reason
	if condition != "" {
		s.closeErr = wire.StreamError(condition, text)
	}
	s.stopTimerLocked()
	s.cancel()
	s.signalLocked()
}

// signalLocked starts the writer when there is something to write and
// none runs. The writer returns when the queue is empty, so an idle
// session has no writer goroutine (and no writer stack): writers come
// from a pool shared by all sessions (writers.go).
func (s *Session) signalLocked() {
	if s.writing || s.paused || s.detached || s.tclosed || s.t == nil {
		return
	}
	if len(s.queue) == s.held && !s.closing { // nothing, or only what CSI holds
		return
	}
	s.writing = true
	writers.run(writeJob{s: s, t: s.t})
}

// enqueue queues an element the session itself answers with (nonzas,
// errors, results). It is dropped when the session is closing.
func (s *Session) enqueue(el *wire.Element) {
	s.enqueueItem(outItem{kind: itemElement, el: el})
}

func (s *Session) enqueueItem(it outItem) {
	s.mu.Lock()
	s.enqueueItemLocked(it)
	s.mu.Unlock()
}

func (s *Session) enqueueItemLocked(it outItem) {
	if s.closing {
		if it.done != nil {
			close(it.done)
		}
		return
	}
	if it.el != nil && it.size == 0 {
		it.size = approxSize(it.el)
	}
	s.queue = append(s.queue, it)
	s.pending += it.size
	s.held = 0 // the session's own answers flush what CSI held, before them
	s.signalLocked()
}

// flush waits until everything queued so far is written (or the transport
// failed). With pause the writer then stops touching the transport until
// resumeWriter.
func (s *Session) flush(pause bool) {
	done := make(chan struct{})
	s.enqueueItem(outItem{kind: itemFlush, done: done, pause: pause})
	<-done
}

func (s *Session) resumeWriter() {
	s.mu.Lock()
	s.paused = false
	s.signalLocked()
	s.mu.Unlock()
}

// writeLoop is the session's writer: it takes the whole queue, counts
// stream-management stanzas, and hands the batch to the transport in one
// Write with no lock held. It exits when there is nothing left to write.
func (s *Session) writeLoop(t Transport) {
	var els []*wire.Element
	for {
		s.mu.Lock()
		if s.detached || s.paused || s.tclosed || (len(s.queue) == s.held && !s.closing) {
			s.writing = false
			s.wcond.Broadcast()
			s.mu.Unlock()
			return
		}
		closing, closeErr := s.closing, s.closeErr
		var batch []outItem
		if !(closing && s.reason == ReasonSlowConsumer) {
			batch, s.queue, s.spare = s.queue, s.spare, nil
			s.pending, s.held = 0, 0
		}
		nStanzas, written, placed := s.countLocked(batch)
		smID := s.smID
		if nStanzas > 0 && s.smOn && !s.rOutstanding {
			s.rOutstanding = true
			batch = append(batch, outItem{kind: itemElement, el: wire.NewNS("r", wire.NSSM)})
		}
		ready := s.backlogReadyLocked()
		s.mu.Unlock()
		runAll(ready)
		if len(placed) > 0 {
			s.srv.placed(smID, placed)
		}

		err := s.writeBatch(t, batch, &els)
		pause := false
		for _, it := range batch {
			pause = pause || (it.kind == itemFlush && it.pause)
		}
		if pause && err == nil {
			// Paused before the flush is reported done: the reader starts
			// the TLS upgrade only then and unpauses after it.
			s.mu.Lock()
			s.paused = true
			s.mu.Unlock()
		}
		for _, it := range batch {
			if it.kind == itemFlush {
				close(it.done)
			}
		}
		if err != nil {
			s.mu.Lock()
			if !s.smOn {
				for _, it := range batch {
					if it.kind == itemElement && it.el.IsStanza() {
						s.failed = append(s.failed, sentEl{it.el, it.rc})
					}
				}
			}
			s.closeLocked(ReasonWriteError, "", "")
			s.mu.Unlock()
			s.logger().Debug("c2s: write failed", "err", err)
			s.closeTransport(t, nil)
			return
		}
		if len(written) > 0 {
			// Written without stream management: as far as the client
			// will ever confirm.
			s.srv.d.Router.Release(written)
		}
		if closing {
			s.closeTransport(t, closeErr)
			return
		}
		clear(batch)
		s.mu.Lock()
		if s.spare == nil && cap(batch) <= 16 {
			s.spare = batch[:0] // big batches are let go: idle sessions stay small
		}
		s.mu.Unlock()
	}
}

// closeTransport closes t and marks the writer done; called by the writer.
func (s *Session) closeTransport(t Transport, streamErr *wire.Element) {
	_ = t.Close(streamErr)
	s.mu.Lock()
	s.tclosed = true
	s.writing = false
	s.wcond.Broadcast()
	s.mu.Unlock()
}

// countLocked counts outgoing stanzas for stream management and metrics.
// It returns the receipts of stanzas that stream management does not
// count, to release once the batch is written, and, for a resumable
// session, the number each receipted stanza got (router.Positions: if
// this node dies, a failed resumption's h tells which the client had).
func (s *Session) countLocked(batch []outItem) (int, []*router.Receipt, []router.Position) {
	n := 0
	var written []*router.Receipt
	var placed []router.Position
	for _, it := range batch {
		switch it.kind {
		case itemSMStart:
			s.smOn = true
		case itemElement:
			if !it.el.IsStanza() {
				continue
			}
			n++
			s.srv.d.Metrics.out(it.el.Name, 1)
			if s.smOn {
				s.outH++
				s.unacked = append(s.unacked, sentEl{it.el, it.rc})
				s.unackedBytes += it.size
				if it.rc != nil && s.smResume && s.smID != "" {
					placed = append(placed, router.Position{Receipt: it.rc, H: s.outH})
				}
			} else if it.rc != nil {
				written = append(written, it.rc)
			}
		}
	}
	return n, written, placed
}

func (s *Session) writeBatch(t Transport, batch []outItem, els *[]*wire.Element) error {
	*els = (*els)[:0]
	write := func() error {
		if len(*els) == 0 {
			return nil
		}
		err := t.Write(*els)
		clear(*els)
		*els = (*els)[:0]
		return err
	}
	for _, it := range batch {
		switch it.kind {
		case itemSMStart:
			// From here on stream management counts what is written.
			if r, ok := t.(UndeliveredReporter); ok {
				if err := write(); err != nil {
					return err
				}
				r.StreamAcks()
			}
			*els = append(*els, it.el)
		case itemElement:
			*els = append(*els, it.el)
		case itemHeader:
			if err := write(); err != nil {
				return err
			}
			if err := t.OpenStream(*it.hdr); err != nil {
				return err
			}
		}
	}
	return write()
}

// touch records client activity; the transport calls it on every read.
func (s *Session) touch() { s.last.Store(monotonic()) }

func (s *Session) authExpired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authed {
		s.logger().Info("c2s: not authenticated in time")
		s.closeLocked(ReasonAuthTimeout, "connection-timeout", "authentication took too long")
	}
}

func (s *Session) stopTimerLocked() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// startIdleTimerLocked replaces the auth timer with the ping timer.
func (s *Session) startIdleTimerLocked() {
	s.stopTimerLocked()
	s.pingSent = 0
	s.timer = time.AfterFunc(s.srv.d.C2S.PingInterval, s.idleCheck)
}

// idleCheck runs from the session's timer: after PingInterval of silence
// it pings the client (XEP-0199), and after IdleTimeout more with no byte
// from the client it closes the session.
func (s *Session) idleCheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.detached {
		return
	}
	c := &s.srv.d.C2S
	now, last := monotonic(), s.last.Load()
	if s.pingSent != 0 && last > s.pingSent {
		s.pingSent = 0
	}
	if s.pingSent == 0 {
		idle := time.Duration(now - last)
		if idle < c.PingInterval {
			s.timer.Reset(c.PingInterval - idle)
			return
		}
		s.pings++
		s.pingID = "ping-" + strconv.Itoa(s.pings)
		ping := wire.New("iq", "type", "get", "id", s.pingID, "from", s.srv.d.Domain)
		if full := s.JID(); !full.IsZero() {
			ping.SetAttr("to", full.String())
		}
		ping.Append(wire.NewNS("ping", wire.NSPing))
		s.pingSent = now
		s.enqueueItemLocked(outItem{kind: itemElement, el: ping})
		s.timer.Reset(c.IdleTimeout)
		return
	}
	s.logger().Info("c2s: client silent after ping")
	s.closeLocked(ReasonIdleTimeout, "connection-timeout", "no answer to ping")
}

// unsentLocked collects what the session accepted but the client never
// confirmed, with the receipts: unacked stanzas (with stream management),
// lost writes, and the queue. Nonzas are dropped.
func (s *Session) unsentLocked() []router.Unsent {
	out := make([]router.Unsent, 0, len(s.unacked)+len(s.failed)+len(s.queue))
	for _, u := range s.unacked {
		out = append(out, router.Unsent{El: u.el, Receipt: u.rc})
	}
	for _, u := range s.failed {
		out = append(out, router.Unsent{El: u.el, Receipt: u.rc})
	}
	for _, it := range s.queue {
		if it.kind == itemElement && it.el.IsStanza() {
			out = append(out, router.Unsent{El: it.el, Receipt: it.rc})
		}
	}
	s.unacked, s.failed, s.queue = nil, nil, nil
	s.unackedBytes, s.pending = 0, 0
	return out
}

// approxSize estimates an element's serialized size without serializing.
func approxSize(el *wire.Element) int {
	n := 2*len(el.Name) + 5 + len(el.Text) + len(el.Tail)
	for _, a := range el.Attrs {
		n += len(a.Name) + len(a.Value) + 4
	}
	for _, c := range el.Children {
		n += approxSize(c)
	}
	return n
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Session) logger() *slog.Logger { return s.logp.Load() }

// logAsBound makes the session's log lines name it by its full JID, which
// replaces the user the authentication added: every line carries the
// session ID, the client's address and the JID, each once.
func (s *Session) logAsBound(full wire.JID) {
	s.mu.Lock()
	addr := s.remote
	s.mu.Unlock()
	s.logp.Store(s.srv.d.Logger.With("session", s.id, "addr", addr, "jid", full.String()))
}
