package bosh

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// request is one HTTP request of a session, from its arrival until it is
// answered. done gets exactly one response body.
type request struct {
	rid       int64
	body      *wire.Element
	done      chan []byte
	timer     *time.Timer
	creation  bool
	pause     time.Duration // > 0: a pause request
	terminate bool
	report    bool // answer at once with report/time (XEP-0124 §9.2)
	empty     bool // no payload, pause, terminate or restart
}

// cached is a response kept for a client that resends a request (XEP-0124
// §14.3) until it is acknowledged or leaves the window.
type cached struct {
	body   []byte
	sentAt time.Time
}

// event is one thing the c2s core reads: an element, a restart or the end.
type event struct {
	el  *wire.Element
	err error
}

// Session is one BOSH session. The c2s core uses Header, Open, Recv, Send,
// Close and the accessors; everything else is the HTTP side.
type Session struct {
	m          *Manager
	sid        string
	remoteAddr string
	secure     bool
	header     *wire.Element
	created    time.Time

	// Negotiated at creation; read-only afterwards.
	waitSecs    int
	hold        int
	requests    int
	inactSecs   int
	pollSecs    int
	maxPause    int
	ackMode     bool
	ver         string
	xmppVersion string
	creationRID int64

	mu       sync.Mutex
	lastRID  int64 // highest rid processed in order
	pending  map[int64]*request
	held     []*request // processed, not answered, in rid order
	cache    map[int64]*cached
	cacheIDs []int64   // rids in cache, ascending
	out      []payload // payloads waiting for a request, oldest first
	outBytes int
	// sent: rid → what its response carried, until the client is known to
	// have it (delivery.go).
	sent map[int64]*sentResp
	// streamAcks: the stream acknowledges what is sent from now on
	// (StreamAcks); Send keeps no element for Undelivered.
	streamAcks bool
	// outTaken is closed (and cleared) when out is emptied: SendWait
	// waits on it for the client to fetch what is queued.
	outTaken chan struct{}

	streamID string // the c2s core's stream id (authid)
	key      string // XEP-0124 §15: the key the next request must hash to
	opened   bool

	inbox   []event
	inboxCh chan struct{} // signalled when inbox grows

	lastReqAt      time.Time // arrival of the last new request
	lastWasEmpty   bool      // the last new request carried no payload
	lastRespEmpty  bool      // the last answered request got no payload
	pauseFor       time.Duration
	inactTimer     *time.Timer
	inactGen       uint64 // bumped per inactivity timer
	closed         bool   // no more requests are processed
	told           bool   // the client got a terminate answer
	termCond       string // condition sent to requests after close
	termPayload    []byte
	activity       func()
	done           chan struct{}
	flushScheduled bool
}

// SID is the session id.
func (s *Session) SID() string { return s.sid }

// RemoteAddr is the address of the client that created the session.
func (s *Session) RemoteAddr() string { return s.remoteAddr }

// Secure reports whether the session counts as encrypted (created over
// HTTPS, or over plain HTTP that the configuration trusts).
func (s *Session) Secure() bool { return s.secure }

// Header returns the client's stream header as a TCP client would have
// sent it, built from the session creation request (to, xml:lang,
// xmpp:version).
func (s *Session) Header() *wire.Element { return s.header.Copy() }

// Held returns how many requests the session holds, waiting for
// something to answer with.
func (s *Session) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Open records the server's stream header: id becomes the authid of the
// session creation response. Call it before sending features, at the start
// and after each restart.
func (s *Session) Open(id string) {
	s.mu.Lock()
	s.streamID = id
	s.opened = true
	s.scheduleFlushLocked()
	s.mu.Unlock()
}

// Recv returns the next element the client sent, ErrRestart when the client
// asked for a stream restart, or an error when the session ended
// (ErrTerminated, ErrInactive, ErrBinding, ErrClosed). It also returns when
// ctx ends.
func (s *Session) Recv(ctx context.Context) (*wire.Element, error) {
	for {
		s.mu.Lock()
		if len(s.inbox) > 0 {
			ev := s.inbox[0]
			s.inbox[0] = event{}
			s.inbox = s.inbox[1:]
			if ev.err != nil && !isRestart(ev.err) {
				s.inbox = append(s.inbox, ev) // the end stays the end
			}
			s.mu.Unlock()
			return ev.el, ev.err
		}
		s.mu.Unlock()
		select {
		case <-s.inboxCh:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func isRestart(err error) bool { return err == ErrRestart }

// Unread puts an element back at the head of the inbox.
func (s *Session) Unread(el *wire.Element) {
	s.mu.Lock()
	s.inbox = append([]event{{el: el}}, s.inbox...)
	s.mu.Unlock()
}

// pushLocked queues an event for Recv.
func (s *Session) pushLocked(ev event) {
	s.inbox = append(s.inbox, ev)
	select {
	case s.inboxCh <- struct{}{}:
	default:
	}
}

// endInboxLocked makes Recv return err from now on (after what is queued).
func (s *Session) endInboxLocked(err error) {
	for _, ev := range s.inbox {
		if ev.err != nil && !isRestart(ev.err) {
			return
		}
	}
	s.pushLocked(event{err: err})
}

// Send queues an element for the client; it is serialized at once and
// kept, unmodified, until the client has it (Undelivered hands it back if
// the session ends first), so the caller must not modify it. It never blocks; it returns false when the session
// is closed or the client is too slow to take it (the session then ends).
func (s *Session) Send(el *wire.Element) bool {
	p := payloadBytes(el)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.outBytes+len(p) > s.m.opts.MaxPendingBytes {
		s.m.opts.Logger.Warn("bosh: slow consumer", "sid", s.sid, "pending", s.outBytes)
		s.closeLocked(CondPolicyViolation, nil, ErrBinding)
		return false
	}
	s.out = append(s.out, s.payloadLocked(el, p))
	s.outBytes += len(p)
	s.scheduleFlushLocked()
	return true
}

// SendWait is Send for a writer that can wait, as a socket write waits
// for the peer to read: when el would take what waits for the client past
// MaxPendingBytes it waits until the client fetched it (its next request)
// instead of ending the session as a slow consumer. It returns false when
// the session ends or ctx is done first. A client that stops fetching
// altogether ends by the inactivity timeout, which returns false here.
func (s *Session) SendWait(ctx context.Context, el *wire.Element) bool {
	p := payloadBytes(el)
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return false
		}
		if s.outBytes == 0 || s.outBytes+len(p) <= s.m.opts.MaxPendingBytes {
			s.out = append(s.out, s.payloadLocked(el, p))
			s.outBytes += len(p)
			s.scheduleFlushLocked()
			s.mu.Unlock()
			return true
		}
		if s.outTaken == nil {
			s.outTaken = make(chan struct{})
		}
		taken := s.outTaken
		s.mu.Unlock()
		select {
		case <-taken:
		case <-s.done:
		case <-ctx.Done():
			return false
		}
	}
}

// payloadLocked is what Send queues for el, serialized as p. The element
// is kept (not modified) until the client has it, so that a session that
// ends first hands it back (Undelivered), unless the stream acknowledges
// it itself.
func (s *Session) payloadLocked(el *wire.Element, p []byte) payload {
	if s.streamAcks {
		return payload{b: p}
	}
	return payload{el: el, b: p}
}

// StreamAcks tells the session that the stream above it acknowledges
// what it sends from now on (XEP-0198 stream management: the c2s core
// keeps each stanza until the client acknowledges it, and routes or sends
// again what it did not): Undelivered leaves out what Send and SendWait
// take after this call.
func (s *Session) StreamAcks() {
	s.mu.Lock()
	s.streamAcks = true
	s.mu.Unlock()
}

// SetActivityHook installs fn, called on every request of the session.
func (s *Session) SetActivityHook(fn func()) {
	s.mu.Lock()
	s.activity = fn
	s.mu.Unlock()
}

// scheduleFlushLocked answers held requests with queued elements soon, on
// another goroutine, so that a burst of Sends goes out in one response.
func (s *Session) scheduleFlushLocked() {
	if s.flushScheduled || len(s.held) == 0 {
		return
	}
	s.flushScheduled = true
	go func() {
		s.mu.Lock()
		s.flushScheduled = false
		s.flushLocked()
		s.mu.Unlock()
	}()
}

// Close ends the session from the server side. streamErr, when not nil, is
// a <stream:error/> sent to the client inside a remote-stream-error
// terminate body (XEP-0206 §7.1); otherwise the client gets a plain
// terminate. What is queued goes out with it on a held request, or with the
// answer to the client's next request.
func (s *Session) Close(streamErr *wire.Element) {
	var p []byte
	cond := ""
	if streamErr != nil {
		p = payloadBytes(streamErr)
		cond = CondRemoteStreamError
	}
	s.mu.Lock()
	s.closeLocked(cond, p, ErrClosed)
	s.mu.Unlock()
}

// closeLocked ends the session: held requests are answered (the oldest
// carries what is queued, all carry the terminate), what cannot be carried
// stays queued for Undelivered, Recv returns recvErr, and the session
// leaves the table.
func (s *Session) closeLocked(cond string, streamErr []byte, recvErr error) {
	if s.closed {
		return
	}
	s.closed = true
	s.termCond = cond
	s.termPayload = streamErr
	s.stopInactivityLocked()
	for _, r := range s.pending {
		s.answerLocked(r, s.terminateBodyLocked(r, nil), nil, false)
	}
	for i, r := range s.held {
		var carry []payload
		// A client that said goodbye reads no more: what is queued is
		// routed elsewhere (Undelivered) rather than sent into its exit.
		if i == 0 && recvErr != ErrTerminated {
			carry = s.takeOutLocked()
		}
		s.answerLocked(r, s.terminateBodyLocked(r, carry), carry, r.pause == 0)
	}
	told := s.told || len(s.held) > 0 || len(s.pending) > 0
	s.held, s.pending = nil, nil
	s.endInboxLocked(recvErr)
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	// A client that got no terminate yet learns the reason from its next
	// request, so the closed session stays in the table for a while.
	linger := time.Duration(0)
	if !told {
		linger = time.Duration(s.inactSecs) * s.m.opts.Second
	}
	s.m.removeAfter(s, linger)
}

// terminateBodyLocked builds the final response with the queued payloads
// and the stream error, if any.
func (s *Session) terminateBodyLocked(r *request, carry []payload) []byte {
	var buf bytes.Buffer
	attrs := []wire.Attr{{Name: "type", Value: "terminate"}}
	if s.termCond != "" {
		attrs = append(attrs, wire.Attr{Name: "condition", Value: s.termCond})
	}
	if s.termPayload != nil {
		carry = append(carry[:len(carry):len(carry)], payload{b: s.termPayload})
	}
	if r != nil && r.creation {
		attrs = append(attrs, s.creationAttrsLocked()...)
	}
	writeBody(&buf, attrs, carry)
	return buf.Bytes()
}

// answerLocked hands a response to the request's waiter and caches it.
// carried is what the response carries from the queue: it is remembered
// until the client is known to have it (delivery.go).
func (s *Session) answerLocked(r *request, body []byte, carried []payload, cache bool) {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if cache {
		s.cacheLocked(r.rid, body)
	}
	s.recordSentLocked(r.rid, carried)
	select {
	case r.done <- body:
	default:
	}
}

func (s *Session) cacheLocked(rid int64, body []byte) {
	if _, ok := s.cache[rid]; !ok {
		s.cacheIDs = append(s.cacheIDs, rid)
		for i := len(s.cacheIDs) - 1; i > 0 && s.cacheIDs[i] < s.cacheIDs[i-1]; i-- {
			s.cacheIDs[i], s.cacheIDs[i-1] = s.cacheIDs[i-1], s.cacheIDs[i]
		}
	}
	s.cache[rid] = &cached{body: body, sentAt: s.m.opts.Now()}
	// Keep `requests` responses, or every unacknowledged one when the
	// client acknowledges (bounded, so a silent client cannot pin memory).
	keep := s.requests
	if s.ackMode {
		keep = 4 * (s.requests + 1)
	}
	for len(s.cacheIDs) > keep {
		delete(s.cache, s.cacheIDs[0])
		s.cacheIDs = s.cacheIDs[1:]
	}
}

// ackLocked drops cached responses the client acknowledged.
func (s *Session) ackLocked(ack int64) {
	for len(s.cacheIDs) > 0 && s.cacheIDs[0] <= ack {
		delete(s.cache, s.cacheIDs[0])
		s.cacheIDs = s.cacheIDs[1:]
	}
}

// creationAttrsLocked are the session creation response attributes
// (XEP-0124 §7.2, XEP-0206 §5).
func (s *Session) creationAttrsLocked() []wire.Attr {
	a := []wire.Attr{
		{Name: "sid", Value: s.sid},
		{Name: "wait", Value: strconv.Itoa(s.waitSecs)},
		{Name: "requests", Value: strconv.Itoa(s.requests)},
		{Name: "hold", Value: strconv.Itoa(s.hold)},
		{Name: "inactivity", Value: strconv.Itoa(s.inactSecs)},
		{Name: "ver", Value: s.ver},
		{Name: "from", Value: s.m.opts.Domain},
		{Name: "secure", Value: "true"},
	}
	if s.pollSecs > 0 {
		a = append(a, wire.Attr{Name: "polling", Value: strconv.Itoa(s.pollSecs)})
	}
	if s.maxPause > 0 {
		a = append(a, wire.Attr{Name: "maxpause", Value: strconv.Itoa(s.maxPause)})
	}
	if s.streamID != "" {
		a = append(a, wire.Attr{Name: "authid", Value: s.streamID})
	}
	if s.ackMode {
		a = append(a, wire.Attr{Name: "ack", Value: strconv.FormatInt(s.creationRID, 10)})
	}
	a = append(a,
		wire.Attr{Name: "xmlns:xmpp", Value: NSXBOSH},
		wire.Attr{Name: "xmpp:version", Value: "1.0"},
		wire.Attr{Name: "xmpp:restartlogic", Value: "true"},
	)
	return a
}

// responseLocked builds a normal response to r with payloads.
func (s *Session) responseLocked(r *request, payloads []payload) []byte {
	var attrs []wire.Attr
	if r.creation {
		attrs = s.creationAttrsLocked()
	} else if s.ackMode && s.lastRID != r.rid {
		attrs = append(attrs, wire.Attr{Name: "ack", Value: strconv.FormatInt(s.lastRID, 10)})
	}
	if r.report {
		if ack, ok := r.reportRID(); ok {
			if c := s.cache[ack]; c != nil {
				ms := s.m.opts.Now().Sub(c.sentAt).Milliseconds()
				attrs = append(attrs,
					wire.Attr{Name: "report", Value: strconv.FormatInt(ack, 10)},
					wire.Attr{Name: "time", Value: strconv.FormatInt(ms, 10)})
			}
		}
	}
	var buf bytes.Buffer
	writeBody(&buf, attrs, payloads)
	return buf.Bytes()
}

// reportRID is the rid after the client's ack, whose response it misses.
func (r *request) reportRID() (int64, bool) {
	ack, present, ok := parseUint(r.body, "ack")
	if !present || !ok {
		return 0, false
	}
	return ack + 1, true
}

// flushLocked answers held requests: the oldest first, each carrying all
// queued elements, while there is something to carry or more are held than
// allowed. The creation response waits for the stream header so that it
// can name the authid.
func (s *Session) flushLocked() {
	for len(s.held) > 0 {
		r := s.held[0]
		if r.creation && !s.opened {
			break // the creation response names the authid; wait for it
		}
		over := len(s.held) > s.hold
		if !over && len(s.out) == 0 && !r.report {
			break
		}
		var payloads []payload
		if r.pause == 0 {
			payloads = s.takeOutLocked()
		}
		s.held = s.held[1:]
		s.lastRespEmpty = len(payloads) == 0
		s.answerLocked(r, s.responseLocked(r, payloads), payloads, r.pause == 0)
	}
	s.idleCheckLocked()
}

// expire answers a held request whose wait ran out.
func (s *Session) expire(r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range s.held {
		if h != r {
			continue
		}
		// Answer in order: older held requests go first.
		for _, older := range s.held[:i+1] {
			var payloads []payload
			if older == s.held[0] && older.pause == 0 {
				payloads = s.takeOutLocked()
			}
			s.lastRespEmpty = len(payloads) == 0
			s.answerLocked(older, s.responseLocked(older, payloads), payloads, older.pause == 0)
		}
		s.held = s.held[i+1:]
		break
	}
	s.idleCheckLocked()
}

// idleCheckLocked starts the inactivity timer when the client holds no
// request (XEP-0124 §10), with the pause period when one was granted.
func (s *Session) idleCheckLocked() {
	if s.closed || len(s.held) > 0 || len(s.pending) > 0 || s.inactTimer != nil {
		return
	}
	d := time.Duration(s.inactSecs) * s.m.opts.Second
	if s.pauseFor > 0 {
		d = s.pauseFor
	}
	s.inactGen++
	gen := s.inactGen
	s.inactTimer = time.AfterFunc(d, func() { s.inactive(gen) })
}

func (s *Session) stopInactivityLocked() {
	if s.inactTimer != nil {
		s.inactTimer.Stop()
		s.inactTimer = nil
	}
}

// inactive ends the session when timer gen is still the current one (a
// timer stopped too late to keep its callback from running is stale).
func (s *Session) inactive(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inactTimer == nil || s.inactGen != gen || len(s.held) > 0 || len(s.pending) > 0 {
		return
	}
	s.inactTimer = nil
	s.m.opts.Logger.Debug("bosh: session inactive", "sid", s.sid)
	s.m.stats.timeouts.Add(1)
	s.closeLocked("", nil, ErrInactive)
}

// handle runs one request of an existing session and returns its response,
// waiting while it is held. A nil body means ctx ended first: the client
// went away, so the request no longer holds anything (abandonLocked). The
// caller reports through reply.settle whether the body reached the client.
func (s *Session) handle(ctx context.Context, body *wire.Element) reply {
	rid, _, ok := parseUint(body, "rid")
	if !ok || rid == 0 || rid > maxRID {
		return reply{body: s.fail(CondBadRequest)}
	}
	s.mu.Lock()
	if fn := s.activity; fn != nil {
		s.mu.Unlock()
		fn()
		s.mu.Lock()
	}
	if s.closed {
		// A client that has not seen the end yet learns it now, with what
		// was queued when the server closed.
		if c := s.cache[rid]; c != nil {
			s.mu.Unlock()
			return reply{body: c.body}
		}
		carry := s.takeOutLocked()
		resp := s.terminateBodyLocked(nil, carry)
		s.cacheLocked(rid, resp)
		s.recordSentLocked(rid, carry)
		s.mu.Unlock()
		return s.reply(resp, rid)
	}
	r, resp, cond := s.admitLocked(body, rid, false)
	if cond != "" {
		s.told = true
		s.closeLocked(cond, nil, ErrBinding)
		s.mu.Unlock()
		return reply{body: terminateBody(cond)}
	}
	if resp != nil {
		s.mu.Unlock()
		return reply{body: resp}
	}
	done := r.done // a resend may replace it once the lock is released
	s.mu.Unlock()
	return s.await(ctx, r, done)
}

// await waits for the answer to r on done. When ctx ends first, an answer
// handed over meanwhile still wins; otherwise the request is abandoned.
func (s *Session) await(ctx context.Context, r *request, done chan []byte) reply {
	select {
	case b := <-done:
		return s.reply(b, r.rid)
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case b := <-done:
		return s.reply(b, r.rid)
	default:
	}
	if r.done == done {
		s.abandonLocked(r)
	}
	return reply{}
}

// fail ends the session with a terminal binding condition.
func (s *Session) fail(cond string) []byte {
	s.mu.Lock()
	s.told = true
	s.closeLocked(cond, nil, ErrBinding)
	s.mu.Unlock()
	return terminateBody(cond)
}

// admitLocked places a request in the rid window. It returns the request to
// wait on, or an immediate response (a resend answered from the cache), or
// a terminal condition.
func (s *Session) admitLocked(body *wire.Element, rid int64, creation bool) (*request, []byte, string) {
	now := s.m.opts.Now()
	r := &request{rid: rid, body: body, done: make(chan []byte, 1), creation: creation}
	r.terminate = body.Attr("type") == "terminate"
	if p, present, ok := parseUint(body, "pause"); present {
		if !ok {
			return nil, nil, CondBadRequest
		}
		if s.maxPause > 0 && p > 0 && p <= int64(s.maxPause) {
			r.pause = time.Duration(p) * s.m.opts.Second
		}
	}
	ack, ackPresent, ackOK := parseUint(body, "ack")
	if ackPresent && ackOK && s.ackMode {
		s.ackLocked(ack)
		s.confirmLocked(ack)
		// A response after the acknowledged one went missing (§9.2).
		if ack < s.lastRID && s.cache[ack+1] != nil && now.Sub(s.cache[ack+1].sentAt) >= s.m.opts.Second {
			r.report = true
		}
	}

	// Resends (XEP-0124 §14.3).
	if rid <= s.lastRID {
		if c := s.cache[rid]; c != nil {
			return nil, c.body, ""
		}
		for _, h := range s.held {
			if h.rid == rid {
				s.replaceWaiterLocked(h)
				return h, nil, ""
			}
		}
		return nil, nil, CondItemNotFound
	}
	if p := s.pending[rid]; p != nil {
		s.replaceWaiterLocked(p)
		return p, nil, ""
	}

	// What the client has: without an ack it has every response below this
	// rid (ack mode, §9.1); without ack mode, it cannot have more than
	// `requests` outstanding (§11), so it has the one `requests` back.
	switch {
	case s.ackMode && !ackPresent:
		s.confirmLocked(rid - 1)
	case !s.ackMode:
		s.confirmLocked(rid - int64(s.requests))
	}

	// The window (§14.2): at most `requests` ahead of the last processed,
	// one more for a pause or terminate (§11).
	extra := int64(0)
	if r.pause > 0 || r.terminate {
		extra = 1
	}
	if rid > s.lastRID+int64(s.requests)+extra {
		return nil, nil, CondItemNotFound
	}
	// Overactivity (§11): more unanswered requests than allowed.
	outstanding := len(s.held) + len(s.pending) + 1
	if outstanding > s.requests+int(extra) {
		return nil, nil, CondPolicyViolation
	}
	empty := len(body.Children) == 0 && r.pause == 0 && !r.terminate && xboshAttr(body, "restart") != "true"
	if empty && s.pollSecs > 0 {
		poll := time.Duration(s.pollSecs) * s.m.opts.Second
		tooSoon := !s.lastReqAt.IsZero() && now.Sub(s.lastReqAt) < poll
		// Polling session (§12): two empty polls in a row too quickly
		// while the first got nothing.
		if s.hold == 0 && tooSoon && s.lastWasEmpty && s.lastRespEmpty && len(s.held) == 0 {
			return nil, nil, CondPolicyViolation
		}
		// Every slot taken by requests none of which is answered, the last
		// two empty and too close together (§11). The last two in rid
		// order: the newest held one and this one. A client that polls and
		// writes on its two requests at once may have the poll before a
		// write arrive after it; the write in between makes them no pair.
		if s.hold > 0 && outstanding == s.requests && tooSoon && len(s.held) == outstanding-1 && s.held[len(s.held)-1].empty {
			return nil, nil, CondPolicyViolation
		}
	}
	s.lastReqAt = now
	s.lastWasEmpty = empty
	r.empty = empty
	s.stopInactivityLocked()
	s.pending[rid] = r
	for {
		next := s.pending[s.lastRID+1]
		if next == nil {
			break
		}
		delete(s.pending, next.rid)
		s.lastRID = next.rid
		if !s.checkKeyLocked(next.body) {
			s.held = append(s.held, next) // answered with the terminate
			s.closeLocked(CondItemNotFound, nil, ErrBinding)
			break
		}
		s.processLocked(next)
		if s.closed {
			break
		}
	}
	if !s.closed {
		s.flushLocked()
	}
	return r, nil, ""
}

// checkKeyLocked applies the optional key sequence of XEP-0124 §15: once
// a request set newkey, each following request must carry the key whose
// SHA-1 (hex) is the previous key. It runs in rid order.
func (s *Session) checkKeyLocked(body *wire.Element) bool {
	newKey := body.Attr("newkey")
	if s.key == "" {
		s.key = newKey
		return true
	}
	k := body.Attr("key")
	if k == "" {
		return false
	}
	sum := sha1.Sum([]byte(k))
	if !strings.EqualFold(hex.EncodeToString(sum[:]), s.key) {
		return false
	}
	s.key = k
	if newKey != "" {
		s.key = newKey
	}
	return true
}

// replaceWaiterLocked gives a resent request's response to the new HTTP
// request; the old one, presumably broken, gets an empty body.
func (s *Session) replaceWaiterLocked(r *request) {
	old := r.done
	r.done = make(chan []byte, 1)
	var buf bytes.Buffer
	writeBody(&buf, nil, nil)
	select {
	case old <- buf.Bytes():
	default:
	}
}

// processLocked handles a request whose turn has come: its payloads go to
// the stream in rid order, and it joins the held requests.
func (s *Session) processLocked(r *request) {
	s.pauseFor = 0
	if r.terminate {
		for _, c := range r.body.Children {
			s.pushLocked(event{el: inbound(c)})
		}
		s.held = append(s.held, r)
		s.closeLocked("", nil, ErrTerminated)
		return
	}
	if xboshAttr(r.body, "restart") == "true" {
		s.opened = false
		s.pushLocked(event{err: ErrRestart})
	}
	for _, c := range r.body.Children {
		s.pushLocked(event{el: inbound(c)})
	}
	if r.pause > 0 {
		// Answer every held request now, the pause request without payloads
		// (§10), and let the client stay away for the pause.
		for len(s.held) > 0 {
			h := s.held[0]
			s.held = s.held[1:]
			var payloads []payload
			if h.pause == 0 {
				payloads = s.takeOutLocked()
			}
			s.answerLocked(h, s.responseLocked(h, payloads), payloads, h.pause == 0)
		}
		s.answerLocked(r, s.responseLocked(r, nil), nil, false)
		s.pauseFor = r.pause
		return
	}
	s.held = append(s.held, r)
	wait := time.Duration(s.waitSecs) * s.m.opts.Second
	r.timer = time.AfterFunc(wait, func() { s.expire(r) })
}
