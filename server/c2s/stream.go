package c2s

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// maxSASLFailures is how many failed authentications one stream may have
// before it is closed.
const maxSASLFailures = 5

// run is the reader loop. It returns the session to continue with when a
// stream-management resumption moved this transport to an older session.
func (s *Session) run() (*Session, CloseReason) {
	for {
		if s.state == stateHeader {
			hdr, err := s.t.ReadHeader()
			if err != nil {
				if wire.StreamErrorFor(err) != "" {
					// RFC 6120 §4.9.1.1: our header goes out before the error.
					s.enqueueItem(outItem{kind: itemHeader, hdr: &StreamHeader{
						From: s.srv.d.Domain, ID: randomID(8), Version: "1.0", Lang: "en"}})
				}
				s.readFailed(err)
				break
			}
			if !s.openStream(hdr) {
				break
			}
			continue
		}
		el, err := s.t.ReadElement()
		if err != nil {
			s.readFailed(err)
			break
		}
		next, stop := s.handle(el)
		if next != nil {
			return next, ReasonNone
		}
		if stop {
			break
		}
	}
	return nil, s.finish()
}

func (s *Session) readFailed(err error) {
	switch cond := wire.StreamErrorFor(err); {
	case errors.Is(err, wire.ErrStreamEnd):
		s.closeWith(ReasonClientClosed, "", "")
	case errors.Is(err, ErrInactive):
		s.closeWith(ReasonInactivity, "", "")
	case cond != "":
		s.logger().Debug("c2s: bad input", "err", err)
		s.closeWith(ReasonProtocol, cond, "")
	default:
		s.closeWith(ReasonReadError, "", "")
	}
}

// streamError closes the stream with a stream error caused by the client.
func (s *Session) streamError(cond, text string) {
	s.logger().Debug("c2s: stream error", "condition", cond, "text", text)
	s.closeWith(ReasonProtocol, cond, text)
}

// finish ends the reader's part: a resumable session whose transport broke
// is detached and waits for resumption; any other is unbound from the
// router with what it never delivered.
func (s *Session) finish() CloseReason {
	s.mu.Lock()
	reason := s.reason
	// A session sent away (see-other-host, a drain) stays resumable when
	// another node can take it over: the client resumes there.
	detach := s.bound && s.smResume && (s.takeover ||
		reason == ReasonReadError || reason == ReasonWriteError || reason == ReasonIdleTimeout || reason == ReasonInactivity ||
		(reason == ReasonRedirected && s.srv.canHandOver()))
	if detach {
		s.detached = true
		s.closing = false
		s.closeErr = nil
		s.stopTimerLocked()
	} else if !s.closing {
		s.closeLocked(ReasonReadError, "", "")
		reason = s.reason
	}
	for s.writing {
		s.wcond.Wait()
	}
	if detach {
		t := s.t
		closeIt := !s.tclosed
		s.tclosed = true
		s.mu.Unlock()
		// Before the resumption timer starts and before a resumption can
		// take the session (it waits for readerDone), so hooks see
		// detached, then resumed or closed.
		s.srv.fire(context.WithoutCancel(s.parent), plugins.EventSessionDetached, s.JID().String(), reason.String())
		if closeIt {
			_ = t.Close(nil)
		}
		// What the transport still had goes out again after the
		// unacknowledged stanzas when the client resumes, or is routed
		// with them when it does not.
		extra := s.transportUnsent(t)
		s.mu.Lock()
		if !s.detached && len(extra) > 0 {
			// Ended meanwhile (kicked while detached): expire has routed
			// what the session held; route these the same way.
			s.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.WithoutCancel(s.parent), s.srv.d.DatabaseTimeout+5*time.Second)
			s.srv.d.Router.Unbind(ctx, s, extra)
			cancel()
			s.mu.Lock()
			extra = nil
		}
		if len(extra) > 0 {
			again := make([]outItem, 0, len(extra)+len(s.queue))
			for _, u := range extra {
				sz := approxSize(u.El)
				again = append(again, outItem{kind: itemElement, el: u.El, size: sz})
				s.pending += sz
			}
			s.queue = append(again, s.queue...)
		}
		if s.detached {
			wait := s.resumeFor
			if reason == ReasonRedirected {
				wait = min(wait, redirectResumeWindow)
			}
			s.resumeTimer = time.AfterFunc(wait, func() { s.expire(ReasonResumeTimeout) })
		}
		s.mu.Unlock()
		s.logger().Info("c2s: session detached, waiting for resumption", "reason", reason.String())
		close(s.readerDone)
		return reason
	}
	for !s.tclosed {
		s.wcond.Wait()
	}
	t := s.t
	s.mu.Unlock()
	extra := s.transportUnsent(t) // older than anything the session holds
	s.mu.Lock()
	bound := s.bound
	unsent := append(extra, s.unsentLocked()...)
	s.stopTimerLocked()
	s.mu.Unlock()
	s.cancel()
	s.srv.dropResumable(s)
	if bound {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.parent), s.srv.d.DatabaseTimeout+5*time.Second)
		s.srv.d.Router.Unbind(ctx, s, unsent)
		s.srv.fire(ctx, plugins.EventSessionClosed, s.JID().String(), reason.String())
		cancel()
	}
	s.logger().Info("c2s: session closed", "reason", reason.String())
	close(s.readerDone)
	return reason
}

// transportUnsent asks a closed transport that queues what it is given
// (UndeliveredReporter) for the stanzas its client is not known to have,
// leaving out those the session already holds as unacknowledged or failed
// (the same elements: stream management counts what the transport took).
func (s *Session) transportUnsent(t Transport) []router.Unsent {
	r, ok := t.(UndeliveredReporter)
	if !ok {
		return nil
	}
	els := r.Undelivered()
	if len(els) == 0 {
		return nil
	}
	s.mu.Lock()
	held := make(map[*wire.Element]bool, len(s.unacked)+len(s.failed))
	for _, u := range s.unacked {
		held[u.el] = true
	}
	for _, u := range s.failed {
		held[u.el] = true
	}
	for _, it := range s.queue {
		held[it.el] = true
	}
	s.mu.Unlock()
	var out []router.Unsent
	for _, el := range els {
		if !held[el] {
			// Its receipt, if any, went when it was written.
			out = append(out, router.Unsent{El: el})
		}
	}
	return out
}

// expire ends a detached session that was not resumed in time (or was
// kicked while detached): it is unbound with everything it never delivered.
func (s *Session) expire(reason CloseReason) {
	s.mu.Lock()
	if !s.detached {
		s.mu.Unlock()
		return
	}
	s.detached = false
	s.closing = true
	s.reason = reason
	if s.resumeTimer != nil {
		s.resumeTimer.Stop()
	}
	unsent := s.unsentLocked()
	s.mu.Unlock()
	s.srv.dropResumable(s)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.parent), s.srv.d.DatabaseTimeout+5*time.Second)
	s.srv.d.Router.Unbind(ctx, s, unsent)
	s.srv.fire(ctx, plugins.EventSessionClosed, s.JID().String(), reason.String())
	cancel()
	if s.srv.d.Metrics != nil {
		s.srv.d.Metrics.closes.WithLabelValues(reason.String()).Inc()
	}
	s.logger().Info("c2s: detached session ended", "reason", reason.String(), "unsent", len(unsent))
}

// openStream answers a stream header: our header, then the features.
func (s *Session) openStream(hdr *wire.Element) bool {
	domain := s.srv.d.Domain
	lang := hdr.Attr("xml:lang")
	if lang == "" {
		lang = "en"
	}
	h := StreamHeader{From: domain, ID: randomID(8), Version: "1.0", Lang: lang}
	if from := hdr.Attr("from"); from != "" {
		if j, err := wire.ParseJID(from); err == nil {
			h.To = j.String()
		}
	}
	s.enqueueItem(outItem{kind: itemHeader, hdr: &h})
	s.headerCount++
	// The reader has checked that a TCP header is <stream/> in the streams
	// namespace, whatever its prefix; its content namespace must be
	// jabber:client (§4.9.3.10). WebSocket's <open/> has no content
	// namespace, and BOSH's header is made by the connector.
	if hdr.LocalName() == "stream" && hdr.Attr("xmlns") != wire.NSClient {
		s.streamError("invalid-namespace", "the content namespace of a client stream is jabber:client")
		return false
	}
	to := hdr.Attr("to")
	if to == "" {
		s.streamError("host-unknown", "no 'to' in the stream header")
		return false
	}
	if d, err := wire.ParseJID(to); err != nil || d.Local() != "" || d.Resource() != "" || d.Domain() != domain {
		s.streamError("host-unknown", "")
		return false
	}
	if v := hdr.Attr("version"); v == "" || !strings.HasPrefix(v, "1.") {
		s.streamError("unsupported-version", "")
		return false
	}
	if s.headerCount == 1 && s.preAuthOver {
		s.closeWith(ReasonTooManyUnauthenticated, "policy-violation", "too many unauthenticated connections from your address")
		return false
	}
	if s.headerCount == 1 {
		if se := s.srv.admit(s.t); se != nil {
			s.mu.Lock()
			s.closeLocked(ReasonRedirected, "", "")
			s.closeErr = se
			s.mu.Unlock()
			return false
		}
	}
	if limit := s.srv.MaxSessions(); s.headerCount == 1 && limit > 0 && s.srv.Active() > limit {
		s.closeWith(ReasonTooManySessions, "resource-constraint", "this server is full")
		return false
	}
	if s.headerCount == 1 {
		if se := s.admitLoad(); se != nil {
			s.mu.Lock()
			s.closeLocked(ReasonShed, "", "")
			s.closeErr = se
			s.mu.Unlock()
			return false
		}
	}
	s.enqueue(s.features())
	s.mu.Lock()
	authed := s.authed
	s.mu.Unlock()
	if authed {
		s.state = stateAuthed
	} else {
		s.state = stateNegotiating
	}
	return true
}

func (s *Session) requireTLS() bool {
	r := s.srv.d.C2S.RequireTLS
	return r == nil || *r
}

func (s *Session) features() *wire.Element {
	f := wire.New("stream:features")
	s.mu.Lock()
	authed := s.authed
	s.mu.Unlock()
	if !authed {
		secure := s.t.Secure()
		if !secure && s.t.CanStartTLS() && s.srv.d.TLS != nil {
			st := wire.NewNS("starttls", wire.NSTLS)
			if s.requireTLS() {
				st.Append(wire.New("required"))
			}
			f.Append(st)
		}
		if secure || !s.requireTLS() {
			conn := s.authConn()
			mechs := wire.NewNS("mechanisms", wire.NSSASL)
			for _, m := range s.srv.d.Auth.MechanismsOn(conn) {
				mechs.Append(wire.New("mechanism").SetText(m))
			}
			f.Append(mechs)
			if types := conn.Bindings.Types(); len(types) > 0 {
				// XEP-0440: which binding types the -PLUS mechanisms take.
				cb := wire.NewNS("sasl-channel-binding", wire.NSSASLCB)
				for _, t := range types {
					cb.Append(wire.New("channel-binding", "type", t))
				}
				f.Append(cb)
			}
			f.Append(s.sasl2Feature(mechs, conn))
			if s.srv.d.Plugins != nil {
				f.Append(s.srv.d.Plugins.StreamFeatures(false)...)
			}
		}
		return f
	}
	if s.state != stateBound { // not bound already by XEP-0386
		f.Append(wire.NewNS("bind", wire.NSBind))
		f.Append(wire.NewNS("session", wire.NSSession).Append(wire.New("optional")))
	}
	if !s.smEnabled {
		// Not once it is on (Bind 2 may have enabled it): xmpp.js 0.14
		// answers an offered <sm/> with <resume/> of the very session it is
		// on, and forgets its session ID when that fails.
		f.Append(wire.NewNS("sm", wire.NSSM))
	}
	f.Append(wire.NewNS("csi", wire.NSCSI))
	// The router versions every roster (XEP-0237): a client that sees
	// this sends the version it holds and gets an empty result when
	// nothing changed, instead of the whole roster at every login.
	f.Append(wire.NewNS("ver", wire.NSRosterVer))
	if s.srv.d.Plugins != nil {
		f.Append(s.srv.d.Plugins.StreamFeatures(true)...)
	}
	return f
}

// handle processes one element in the current state. stop ends the loop;
// next is set when a resumption moved the transport to another session.
func (s *Session) handle(el *wire.Element) (next *Session, stop bool) {
	switch s.state {
	case stateNegotiating, stateSASL:
		stop := s.handleNegotiating(el)
		next := s.resumedInto // set when SASL2 resumed a session inline
		s.resumedInto = nil
		return next, stop
	case stateAuthed:
		return s.handleAuthed(el)
	case stateBound:
		return nil, s.handleBound(el)
	}
	return nil, false
}

func (s *Session) handleNegotiating(el *wire.Element) bool {
	switch {
	case el.Name == "starttls" && el.NS() == wire.NSTLS && s.state == stateNegotiating:
		return s.startTLS()
	case el.Name == "auth" && el.NS() == wire.NSSASL:
		return s.startAuth(el)
	case el.Name == "authenticate" && el.NS() == wire.NSSASL2:
		return s.startAuth2(el)
	case el.Name == "response" && s.state == stateSASL && el.NS() == s.saslNS():
		data, err := decodeSASL(el.AllText())
		if err != nil {
			return s.saslFail(&auth.Failure{Condition: auth.CondIncorrectEncoding, Err: err})
		}
		return s.saslStep(data)
	case el.Name == "abort" && (el.NS() == wire.NSSASL || el.NS() == wire.NSSASL2):
		s.exchange = nil
		s.state = stateNegotiating
		s.sasl2 = el.NS() == wire.NSSASL2 // answered in the abort's profile
		s.enqueue(s.failureElement(auth.CondAborted, ""))
		return false
	case el.Name == "iq" && s.state == stateNegotiating:
		return s.preAuthIQ(el)
	}
	s.streamError("not-authorized", "authenticate first")
	return true
}

// preAuthIQ lets plugins answer IQs before authentication (XEP-0077
// in-band registration, through plugins.Manager.HandlePreAuthIQ). An IQ no
// plugin accepts there ends the stream with not-authorized (RFC 6120
// §4.9.3.12: no stanzas before authentication), except a registration IQ,
// which gets service-unavailable so clients can tell registration is off.
func (s *Session) preAuthIQ(el *wire.Element) bool {
	el.RemoveAttr("from")
	if el.NS() == wire.NSClient {
		el.RemoveAttr("xmlns")
	}
	if el.Type() != "get" && el.Type() != "set" {
		return false
	}
	if s.srv.d.Plugins != nil && (s.t.Secure() || !s.requireTLS()) {
		if reply, ok := s.srv.d.Plugins.HandlePreAuthIQ(s.ctx, el, s.t.RemoteAddr()); ok {
			s.enqueue(reply)
			return false
		}
	}
	if p := el.FirstChild(); p != nil && p.NS() == "jabber:iq:register" {
		r := wire.ErrorReply(el, wire.ErrServiceUnavailable)
		r.RemoveAttr("from")
		r.RemoveAttr("to")
		s.enqueue(r)
		return false
	}
	s.streamError("not-authorized", "authenticate first")
	return true
}

func (s *Session) startTLS() bool {
	if !s.t.CanStartTLS() || s.srv.d.TLS == nil {
		s.enqueue(wire.NewNS("failure", wire.NSTLS))
		s.closeWith(ReasonProtocol, "", "")
		return true
	}
	if !s.awaitTurn(s.tlsTurn) {
		return true
	}
	s.enqueue(wire.NewNS("proceed", wire.NSTLS))
	s.flush(true)
	err := s.t.StartTLS(s.ctx, s.srv.d.TLS)
	s.resumeWriter()
	if err != nil {
		s.logger().Debug("c2s: TLS handshake failed", "err", err)
		s.closeWith(ReasonProtocol, "", "")
		return true
	}
	s.state = stateHeader
	s.cb, s.cbKnown = nil, false // the bindings of the new TLS layer
	return false
}

func (s *Session) startAuth(el *wire.Element) bool {
	s.sasl2, s.bind2 = false, nil
	s.userAgent, s.fastUse, s.fastRequest = "", nil, ""
	return s.beginSASL(el.Attr("mechanism"), el.AllText())
}

// beginSASL starts an exchange with the client's mechanism and initial
// response (RFC 6120 <auth/> or XEP-0388 <authenticate/>).
func (s *Session) beginSASL(mechanism, initial string) bool {
	s.exchange = nil
	if s.requireTLS() && !s.t.Secure() {
		s.enqueue(s.failureElement(auth.CondEncryptionRequired, ""))
		s.state = stateNegotiating
		return false
	}
	if !s.awaitTurn(s.loginTurn) {
		return true
	}
	a := s.srv.d.Auth
	if err := a.Wait(s.ctx, s.t.RemoteAddr()); err != nil {
		return true
	}
	x, err := a.StartOn(mechanism, s.authConn())
	if err != nil {
		return s.saslFail(err)
	}
	s.exchange, s.mechanism = x, mechanism
	text := strings.TrimSpace(initial)
	if text == "" {
		// No initial response: an empty challenge asks for it.
		s.state = stateSASL
		s.enqueue(wire.NewNS("challenge", s.saslNS()))
		return false
	}
	data, err := decodeSASL(text)
	if err != nil {
		return s.saslFail(&auth.Failure{Condition: auth.CondIncorrectEncoding, Err: err})
	}
	return s.saslStep(data)
}

func decodeSASL(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "=" || text == "" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(text)
}

func encodeSASL(data []byte) string {
	if len(data) == 0 {
		return ""
	}
	return base64.StdEncoding.EncodeToString(data)
}

func saslFailure(cond string) *wire.Element {
	return wire.NewNS("failure", wire.NSSASL).Append(wire.New(cond))
}

func (s *Session) saslStep(data []byte) bool {
	if s.exchange == nil {
		return s.saslFail(&auth.Failure{Condition: auth.CondMalformedRequest})
	}
	out, done, err := s.exchange.Step(s.ctx, data)
	if err != nil {
		return s.saslFail(err)
	}
	if !done {
		s.state = stateSASL
		s.enqueue(wire.NewNS("challenge", s.saslNS()).SetText(encodeSASL(out)))
		return false
	}
	x := s.exchange
	s.username = x.Username()
	s.exchange = nil
	s.srv.d.Auth.Succeeded(s.t.RemoteAddr())
	s.markAuthenticated()
	if s.sasl2 {
		return s.sasl2Success(out, x)
	}
	s.enqueue(wire.NewNS("success", wire.NSSASL).SetText(encodeSASL(out)))
	s.t.Restart()
	s.state = stateHeader
	return false
}

// markAuthenticated records a successful SASL exchange (either profile):
// the auth timer gives way to the idle timer.
func (s *Session) markAuthenticated() {
	if s.preAuthRelease != nil {
		s.preAuthRelease()
	}
	if l, ok := s.t.(stanzaLimiter); ok {
		l.SetMaxStanzaBytes(s.srv.d.C2S.MaxStanzaBytes)
	}
	s.mu.Lock()
	s.authed = true
	if !s.closing {
		s.startIdleTimerLocked()
	}
	s.mu.Unlock()
	s.logp.Store(s.logger().With("user", s.username))
	s.logger().Debug("c2s: authenticated", "sasl2", s.sasl2, "mechanism", s.mechanism)
}

func (s *Session) saslFail(err error) bool {
	user := ""
	if s.exchange != nil {
		user = s.exchange.Username()
	}
	s.exchange = nil
	s.state = stateNegotiating
	var f *auth.Failure
	if !errors.As(err, &f) {
		f = &auth.Failure{Condition: auth.CondTemporaryAuthFailure, Err: err}
	}
	switch f.Condition {
	case auth.CondNotAuthorized, auth.CondInvalidAuthzid:
		s.srv.d.Metrics.authFailed()
		s.srv.d.Auth.Failed(s.ctx, s.t.RemoteAddr())
	}
	text := ""
	if f.Condition == auth.CondAccountDisabled {
		// Sent only after the password proved right (see auth).
		text = "This account is locked: ask the server's administrator."
		s.logger().Info("c2s: login to a locked account refused", "user", user)
	} else {
		s.logger().Debug("c2s: authentication failed", "err", f)
	}
	s.enqueue(s.failureElement(f.Condition, text))
	s.saslFailures++
	if s.saslFailures >= maxSASLFailures {
		s.streamError("policy-violation", "too many failed authentication attempts")
		return true
	}
	return false
}

func (s *Session) handleAuthed(el *wire.Element) (*Session, bool) {
	switch {
	case el.Name == "iq" && el.Type() == "set" && el.Child("bind", wire.NSBind) != nil:
		return nil, s.bind(el)
	case el.Name == "iq" && el.Type() == "set" && el.Child("session", wire.NSSession) != nil:
		s.enqueue(wire.New("iq", "type", "result", "id", el.ID()))
		return nil, false
	case el.Name == "resume" && el.NS() == wire.NSSM:
		return s.resume(el, nil)
	case el.Name == "enable" && el.NS() == wire.NSSM:
		s.enqueue(smFailed(wire.ErrUnexpectedRequest, -1))
		return nil, false
	case (el.Name == "r" || el.Name == "a") && el.NS() == wire.NSSM:
		return nil, false
	case el.NS() == wire.NSCSI: // XEP-0352 allows it once authenticated
		return nil, s.handleCSI(el)
	}
	s.streamError("not-authorized", "bind a resource first")
	return nil, true
}

// bind binds a resource through the router (RFC 6120 §7).
func (s *Session) bind(el *wire.Element) bool {
	res := strings.TrimSpace(el.Child("bind", wire.NSBind).ChildText("resource", ""))
	if res == "" {
		res = "av-" + randomID(6)
	}
	full, se := s.bindResource(res)
	if se != nil {
		s.enqueue(bindError(el, se))
		return false
	}
	s.enqueue(wire.New("iq", "type", "result", "id", el.ID()).Append(
		wire.NewNS("bind", wire.NSBind).Append(wire.New("jid").SetText(full.String()))))
	return false
}

// bindResource binds res (or, on a conflict under the new_resource
// policy, a variant of it) and moves the session to stateBound.
func (s *Session) bindResource(res string) (wire.JID, *wire.StanzaError) {
	d := &s.srv.d
	for attempt := 0; ; attempt++ {
		tentative, err := wire.NewJID(s.username, d.Domain, res)
		if err != nil {
			return wire.JID{}, wire.ErrBadRequest
		}
		s.full.Store(&tentative)
		full, err := s.srv.d.Router.Bind(s.ctx, s, s.username, res)
		if err != nil {
			var se *wire.StanzaError
			if !errors.As(err, &se) {
				s.logger().Warn("c2s: bind failed", "err", err)
				se = wire.ErrInternalServerError
			}
			if se.Condition == wire.ErrConflict.Condition && d.C2S.ResourceConflict == "new_resource" && attempt < 3 {
				res = res + "-" + randomID(3)
				continue
			}
			s.full.Store(nil)
			return wire.JID{}, se
		}
		s.full.Store(&full)
		break
	}
	full := s.JID()
	s.mu.Lock()
	s.bound = true
	inactive := s.inactive
	s.mu.Unlock()
	s.enterBound()
	s.logAsBound(full)
	s.logger().Debug("c2s: bound")
	s.srv.fire(s.ctx, plugins.EventSessionBound, full.String(), "")
	if inactive { // said <inactive/> before binding (XEP-0352 §3)
		s.srv.fire(s.ctx, plugins.EventClientInactive, full.String(), "")
	}
	return full, nil
}

func bindError(iq *wire.Element, se *wire.StanzaError) *wire.Element {
	r := wire.ErrorReply(iq, se)
	r.RemoveAttr("from")
	r.RemoveAttr("to")
	return r
}

func (s *Session) handleBound(el *wire.Element) bool {
	switch el.Name {
	case "message", "presence", "iq":
		switch ns := el.NS(); ns {
		case "", wire.NSClient:
			s.inbound(el)
			s.inboundRouted()
			return false
		case wire.NSServer:
			// RFC 6120 §4.9.3.10: a content namespace this stream is not.
			s.streamError("invalid-namespace", "stanzas on a client stream are in jabber:client")
			return true
		}
		// §4.9.3.24: a first-level element in a namespace we do not know.
		s.streamError("unsupported-stanza-type", "")
		return true
	}
	switch el.NS() {
	case wire.NSSM:
		return s.handleSM(el)
	case wire.NSCSI:
		return s.handleCSI(el)
	}
	s.streamError("unsupported-stanza-type", "")
	return true
}

// inbound handles a stanza from the bound client: namespace stripped,
// 'from' stamped, 'to' checked, then the router.
func (s *Session) inbound(el *wire.Element) {
	if s.smEnabled {
		s.inH++
	}
	s.srv.d.Metrics.in(el.Name)
	if el.NS() == wire.NSClient {
		el.RemoveAttr("xmlns")
	}
	full := s.JID().String()
	el.SetAttr("from", full)
	if to := el.To(); to != "" {
		if _, err := wire.ParseJID(to); err != nil {
			if !el.IsError() && !(el.Name == "iq" && el.Type() == "result") {
				reply := wire.ErrorReply(el, wire.ErrJIDMalformed)
				reply.SetAttr("from", s.srv.d.Domain)
				s.enqueue(reply)
			}
			return
		}
	}
	if el.Name == "presence" && el.To() == "" && el.Type() == "" {
		s.noteCaps(el)
	}
	if el.Name == "presence" && !knownPresenceType(el.Type()) {
		// RFC 6121 §4.7.1: an unknown presence type gets bad-request.
		reply := wire.ErrorReply(el, wire.ErrBadRequest)
		if reply.From() == "" {
			reply.RemoveAttr("from")
		}
		s.enqueue(reply)
		return
	}
	if el.Name == "iq" {
		if se := iqSyntaxError(el); se != nil {
			if t := el.Type(); t != "result" && t != "error" {
				reply := wire.ErrorReply(el, se)
				if reply.From() == "" {
					reply.RemoveAttr("from")
				}
				s.enqueue(reply)
			}
			return
		}
		switch el.Type() {
		case "result", "error":
			if s.isPingReply(el) {
				return
			}
		case "set":
			if el.To() == "" || el.To() == s.srv.d.Domain {
				if el.Child("session", wire.NSSession) != nil {
					s.enqueue(wire.New("iq", "type", "result", "id", el.ID(), "to", full))
					return
				}
				if el.Child("bind", wire.NSBind) != nil {
					r := wire.ErrorReply(el, wire.ErrNotAllowed)
					r.RemoveAttr("from")
					s.enqueue(r)
					return
				}
			}
		}
	}
	s.srv.d.Router.FromClient(s.routeCtx, s, el)
}

func (s *Session) isPingReply(el *wire.Element) bool {
	if to := el.To(); to != "" && to != s.srv.d.Domain {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pingID != "" && el.ID() == s.pingID
}

// iqSyntaxError checks RFC 6120 §8.2.3: an IQ has an id and one of the
// four types, and a get or set carries exactly one payload element. A
// malformed IQ gets bad-request (§8.3.3.1).
func iqSyntaxError(el *wire.Element) *wire.StanzaError {
	switch el.Type() {
	case "get", "set":
		if el.ID() == "" || len(el.Children) != 1 {
			return wire.ErrBadRequest
		}
	case "result", "error":
		if el.ID() == "" {
			return wire.ErrBadRequest
		}
	default:
		return wire.ErrBadRequest
	}
	return nil
}

func knownPresenceType(t string) bool {
	switch t {
	case "", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error":
		return true
	}
	return false
}
