package s2s

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// acceptLoop accepts s2s connections until the listener closes.
func (s *Service) acceptLoop(ln net.Listener) {
	delay := time.Duration(0)
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if stopped || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, NATS style.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.log.Warn("s2s: accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		s.inAccepted.Add(1)
		in := s.createIn(conn)
		if in == nil {
			_ = conn.Close()
			continue
		}
		s.goroutine(in.run)
	}
}

// inStream is one incoming stream: a peer that sends us stanzas for the
// domains it authenticated. One goroutine reads; writes (features,
// negotiation answers, dialback results, stream errors) are serialized by
// wmu, since an incoming stream carries no stanzas from us.
type inStream struct {
	s   *Service
	log *slog.Logger

	wmu    sync.Mutex // serializes writes; a leaf lock
	conn   net.Conn   // current transport; replaced by STARTTLS (reader goroutine)
	closed bool       // guarded by wmu

	mu      sync.Mutex
	authed  map[string]bool // remote domains authenticated on this stream
	pending map[string]bool // remote domains whose dialback is being verified
	method  string          // how the last domain authenticated
	addr    string
	created time.Time

	// Reader goroutine state.
	rd        *wire.Reader
	hdr       *wire.Element
	id        string
	secure    bool
	saslDone  bool
	from      string // the domain in the peer's stream header
	peerCerts []*x509.Certificate
	certOK    map[string]error
}

// createIn registers a new incoming stream; nil when stopping.
func (s *Service) createIn(conn net.Conn) *inStream {
	in := &inStream{
		s:       s,
		conn:    conn,
		log:     s.log.With("dir", "in", "peer", conn.RemoteAddr().String()),
		authed:  map[string]bool{},
		pending: map[string]bool{},
		certOK:  map[string]error{},
		addr:    conn.RemoteAddr().String(),
		created: time.Now(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.in[in] = struct{}{}
	return in
}

func (s *Service) removeIn(in *inStream) {
	s.mu.Lock()
	delete(s.in, in)
	s.mu.Unlock()
}

// peekConn lets us look at the first byte (a TLS ClientHello means direct
// TLS, XEP-0368) without losing it.
type peekConn struct {
	net.Conn
	br *bufio.Reader
}

func (p *peekConn) Read(b []byte) (int, error) { return p.br.Read(b) }

func (in *inStream) run() {
	reason, err := in.processInHandshake()
	in.close(reason, err)
	in.s.removeIn(in)
	in.s.countClose(reason)
}

// processInHandshake runs the receiving side: stream headers, STARTTLS,
// SASL EXTERNAL, dialback and then stanzas, until the stream ends.
func (in *inStream) processInHandshake() (closeReason, error) {
	_ = in.conn.SetDeadline(time.Now().Add(in.s.setupTimeout()))
	pc := &peekConn{Conn: in.conn, br: bufio.NewReader(in.conn)}
	first, err := pc.br.Peek(1)
	if err != nil {
		return closeReadError, err
	}
	in.wmu.Lock()
	in.conn = pc
	in.wmu.Unlock()
	if first[0] == 0x16 { // TLS handshake record: direct TLS
		if err := in.startTLS(); err != nil {
			return closeBadStream, err
		}
	}
	in.rd = wire.NewReader(in.conn, in.s.limits)
	for {
		restart, reason, err := in.openStream()
		if !restart {
			return reason, err
		}
		restart, reason, err = in.readElements()
		if !restart {
			return reason, err
		}
	}
}

// openStream reads the peer's header and answers with ours and features.
func (in *inStream) openStream() (bool, closeReason, error) {
	hdr, err := in.rd.Header()
	if err != nil {
		if wire.StreamErrorFor(err) != "" {
			// Not a stream header (the reader checks its namespace and
			// name): RFC 6120 §4.9.1.1, our header goes out before the error.
			_ = in.write(streamHeader(in.s.domain, "", newStreamID()))
		}
		return in.readFailed(err)
	}
	in.hdr = hdr
	in.id = newStreamID()
	if d := domainOf(hdr.From()); d != "" {
		in.from = d
	}
	// Answer as the domain the peer asked for when it is one of ours (a
	// service domain's stream), else as the node's domain.
	local := in.s.domain
	if to := domainOf(hdr.To()); in.s.ours(to) {
		local = to
	}
	if err := in.write(streamHeader(local, hdr.From(), in.id)); err != nil {
		return false, closeWriteError, err
	}
	if cond := checkHeader(hdr); cond != "" {
		in.streamError(cond, "")
		return false, closeBadStream, fmt.Errorf("%w: header: %s", ErrBadStream, cond)
	}
	if to := domainOf(hdr.To()); to != "" && !in.s.ours(to) {
		in.streamError("host-unknown", "")
		return false, closeHostUnknown, fmt.Errorf("%w: to %s", ErrBadStream, to)
	}
	if err := in.writeEl(in.features()); err != nil {
		return false, closeWriteError, err
	}
	if in.secure {
		// Past the setup phase the stream may stay silent up to IdleTimeout.
		_ = in.conn.SetWriteDeadline(time.Time{})
		in.extendRead()
		in.rd.SetOnFill(in.extendRead)
	}
	return true, 0, nil
}

func (in *inStream) extendRead() {
	_ = in.conn.SetReadDeadline(time.Now().Add(in.s.idleTimeout()))
}

// features lists what the peer may do next on this stream.
func (in *inStream) features() *wire.Element {
	f := wire.New("stream:features")
	if !in.secure {
		return f.Append(wire.NewNS("starttls", wire.NSTLS).Append(wire.New("required")))
	}
	if !in.saslDone && in.from != "" && !in.s.ours(in.from) && in.certFor(in.from) == nil {
		f.Append(wire.NewNS("mechanisms", wire.NSSASL).Append(wire.New("mechanism").SetText("EXTERNAL")))
	}
	if !in.saslDone && !in.s.cfg.RequireValidCerts {
		f.Append(wire.NewNS("dialback", nsDialbackFeature).Append(wire.New("errors")))
	}
	return f
}

// certFor reports (cached) whether the peer's certificate authenticates domain.
func (in *inStream) certFor(domain string) error {
	if err, ok := in.certOK[domain]; ok {
		return err
	}
	err := in.s.certs.verify(in.peerCerts, domain)
	in.certOK[domain] = err
	return err
}

// readElements handles top-level elements until the stream ends or must
// restart (after STARTTLS or SASL success: restart is true).
func (in *inStream) readElements() (bool, closeReason, error) {
	for {
		el, err := in.rd.Next()
		if err != nil {
			return in.readFailed(err)
		}
		ns, local := qname(el, in.hdr)
		switch {
		case ns == wire.NSStream && local == "error":
			return false, closeStreamError, fmt.Errorf("%w: %s %s", ErrStreamError, streamErrorCondition(el), streamErrorText(el))
		case ns == wire.NSTLS && local == "starttls" && !in.secure:
			if err := in.write([]byte(`<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)); err != nil {
				return false, closeWriteError, err
			}
			if in.rd.Buffered() > 0 {
				return false, closeBadStream, fmt.Errorf("%w: data after starttls", ErrBadStream)
			}
			if err := in.startTLS(); err != nil {
				return false, closeBadStream, err
			}
			in.rd = wire.NewReader(in.conn, in.s.limits)
			return true, 0, nil
		case !in.secure:
			in.streamError("policy-violation", "STARTTLS is required")
			return false, closePolicy, fmt.Errorf("s2s: <%s/> before starttls", el.Name)
		case ns == wire.NSSASL && local == "auth":
			if in.saslExternal(el) {
				in.rd.Restart()
				return true, 0, nil
			}
		case ns == nsDialback && (local == "result" || local == "verify") && el.Type() != "":
			return false, closeUnsolicited, in.unsolicitedDialback(el)
		case ns == nsDialback && local == "result":
			in.dialbackResult(el)
		case ns == nsDialback && local == "verify":
			in.dialbackVerify(el)
		case el.IsStanza() && (ns == wire.NSServer || ns == ""):
			if reason, err := in.stanza(el); err != nil {
				return false, reason, err
			}
		default:
			in.log.Debug("s2s: ignoring element", "name", el.Name, "ns", ns)
		}
	}
}

// readFailed maps a reader error to the stream error to send and a reason.
func (in *inStream) readFailed(err error) (bool, closeReason, error) {
	if errors.Is(err, wire.ErrStreamEnd) {
		return false, closePeerClosed, nil
	}
	if cond := wire.StreamErrorFor(err); cond != "" {
		in.streamError(cond, "")
		return false, closePolicy, err
	}
	if isTimeout(err) {
		if in.secure {
			in.streamError("connection-timeout", "")
			return false, closeIdle, err
		}
		return false, closeTimeout, err
	}
	return false, closeReadError, err
}

// startTLS runs the server side of TLS and keeps the peer's chain.
func (in *inStream) startTLS() error {
	tc := tls.Server(in.conn, in.s.serverTLS)
	ctx, cancel := context.WithTimeout(in.s.ctx, in.s.setupTimeout())
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("s2s: tls handshake: %w", err)
	}
	in.wmu.Lock()
	in.conn = tc
	in.wmu.Unlock()
	in.secure = true
	in.peerCerts = tc.ConnectionState().PeerCertificates
	in.certOK = map[string]error{}
	return nil
}

// saslExternal answers <auth mechanism='EXTERNAL'/>: the authorization
// identity (or the stream's from) must be named by a valid certificate.
func (in *inStream) saslExternal(el *wire.Element) bool {
	fail := func(cond, why string) bool {
		in.log.Info("s2s: SASL EXTERNAL refused", "why", why)
		_ = in.writeEl(wire.NewNS("failure", wire.NSSASL).Append(wire.New(cond)))
		return false
	}
	if in.saslDone || el.Attr("mechanism") != "EXTERNAL" {
		return fail("invalid-mechanism", "mechanism "+el.Attr("mechanism"))
	}
	authzid := ""
	if t := strings.TrimSpace(el.AllText()); t != "" && t != "=" {
		b, err := base64.StdEncoding.DecodeString(t)
		if err != nil {
			return fail("incorrect-encoding", err.Error())
		}
		authzid = domainOf(string(b))
	}
	id := authzid
	if id == "" {
		id = in.from
	}
	if id == "" || (in.from != "" && id != in.from) {
		return fail("invalid-authzid", "authzid "+authzid+" for stream from "+in.from)
	}
	if in.s.ours(id) {
		// Only this server is its own domain (and its service domains); a
		// certificate naming it (a sibling's wildcard, a stolen key) must
		// not let a peer send as our users or services.
		return fail("not-authorized", "a peer cannot authenticate as our own domain")
	}
	if err := in.certFor(id); err != nil {
		return fail("not-authorized", err.Error())
	}
	if err := in.write([]byte(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)); err != nil {
		return false
	}
	in.saslDone = true
	in.authorize(id, "sasl-external")
	return true
}

func (in *inStream) authorize(domain, how string) {
	in.mu.Lock()
	in.authed[domain] = true
	in.method = how
	in.mu.Unlock()
	in.log.Info("s2s: peer authenticated", "domain", domain, "method", how)
}

func (in *inStream) isAuthed(domain string) (yes, any bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.authed[domain], len(in.authed) > 0
}

// maxPendingDialback bounds the dialback verifications one incoming stream
// may have under way: each costs us an outgoing connection to a domain the
// peer names. XEP-0220 multiplexing needs a few, not thousands.
const maxPendingDialback = 16

// dialbackResult handles a <db:result/> request from an initiating server
// (XEP-0220 §2.1.2): a valid certificate for the domain settles it at once;
// otherwise we ask the domain's authoritative server over our own
// outgoing stream, without blocking this reader. Only that stream's answer
// to that exact request can authenticate the domain (see verifyAnswer).
func (in *inStream) dialbackResult(el *wire.Element) {
	from, to := domainOf(el.From()), domainOf(el.To())
	key := strings.TrimSpace(el.AllText())
	reply := func(typ string, se *wire.StanzaError) {
		r := wire.New("db:result", "from", to, "to", from, "type", typ)
		if se != nil {
			r.Append(se.Element())
		}
		_ = in.writeEl(r)
	}
	switch {
	case key == "" || from == "":
		reply("error", wire.ErrBadRequest)
		return
	case !in.s.ours(to):
		reply("error", wire.ErrItemNotFound)
		return
	case in.s.ours(from):
		in.log.Warn("s2s: dialback refused: a peer claims our own domain")
		reply("error", wire.ErrNotAcceptable.WithText("a peer cannot authenticate as this server's own domain"))
		return
	}
	if yes, _ := in.isAuthed(from); yes {
		reply("valid", nil) // nothing new to verify on this stream
		return
	}
	if in.certFor(from) == nil {
		in.authorize(from, "dialback+certificate")
		reply("valid", nil)
		return
	}
	if in.s.cfg.RequireValidCerts {
		in.log.Warn("s2s: dialback refused: a valid certificate is required", "domain", from, "err", in.certFor(from))
		reply("error", wire.ErrNotAuthorized.WithText("a valid certificate is required"))
		return
	}
	if se := in.startPending(from); se != nil {
		in.log.Info("s2s: dialback request refused", "domain", from, "why", se.Text)
		reply("error", se)
		return
	}
	id := in.id
	in.s.goroutine(func() {
		defer in.endPending(from)
		ctx, cancel := context.WithTimeout(in.s.ctx, in.s.setupTimeout())
		defer cancel()
		valid, err := in.s.requestVerify(ctx, to, from, id, key)
		switch {
		case err != nil:
			in.log.Warn("s2s: dialback verification failed", "domain", from, "err", err)
			reply("error", wire.ErrRemoteServerNotFound)
		case valid:
			in.authorize(from, "dialback")
			reply("valid", nil)
		default:
			in.log.Warn("s2s: dialback key invalid", "domain", from)
			reply("invalid", nil)
			in.streamError("not-authorized", "dialback key invalid")
			in.closeConn()
		}
	})
}

// startPending records a verification under way for domain, or returns
// the dialback error refusing it: the same domain twice at once, or more
// than maxPendingDialback domains.
func (in *inStream) startPending(domain string) *wire.StanzaError {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.pending[domain]:
		return wire.ErrConflict.WithText("a dialback request for this domain is already being verified")
	case len(in.pending) >= maxPendingDialback:
		return wire.ErrResourceConstraint.WithText("too many dialback requests under way on this stream")
	}
	in.pending[domain] = true
	return nil
}

func (in *inStream) endPending(domain string) {
	in.mu.Lock()
	delete(in.pending, domain)
	in.mu.Unlock()
}

// dialbackVerify answers a <db:verify/> request from a receiving server
// asking us, as the authoritative server, whether a key is ours (XEP-0220
// §2.1.3). The key is stateless (XEP-0185): any node of the cluster made it
// with the shared secret, so there is no record of the stream ID to check;
// a key for another receiving server, another originating domain or
// another stream ID does not match.
func (in *inStream) dialbackVerify(el *wire.Element) {
	receiving, originating := domainOf(el.From()), domainOf(el.To())
	answer := wire.New("db:verify", "from", originating, "to", receiving, "id", el.ID())
	if !in.s.ours(originating) {
		// A dialback error, not a stream error (XEP-0220 §2.4): the
		// stream may carry other requests.
		_ = in.writeEl(answer.SetAttr("type", "error").Append(wire.ErrItemNotFound.Element()))
		return
	}
	key := strings.TrimSpace(el.AllText())
	typ := "invalid"
	if el.ID() != "" && checkDialbackKey(in.s.secret, receiving, originating, el.ID(), key) {
		typ = "valid"
	}
	in.log.Debug("s2s: answered dialback verify", "receiving", receiving, "result", typ)
	_ = in.writeEl(answer.SetAttr("type", typ))
}

// unsolicitedDialback ends the stream on a dialback answer (a <db:result/>
// or <db:verify/> with a type) arriving on an incoming stream. We send our
// requests only on our own outgoing streams and do not offer XEP-0288
// bidirectional streams, so no honest peer sends an answer here: it is the
// forgery XEP-0220 §4.1 describes (a verify "answer" for a stream the
// attacker opened, hoping to authenticate it). XEP-0220 asks that such
// responses be rejected; we end the stream rather than ignore the element,
// so the attempt is logged and counted and the attacker cannot keep
// probing on the same connection.
func (in *inStream) unsolicitedDialback(el *wire.Element) error {
	in.log.Warn("s2s: unsolicited dialback answer on an incoming stream; closing it",
		"element", el.LocalName(), "from", el.From(), "to", el.To(), "id", el.ID(), "type", el.Type())
	in.streamError("not-authorized", "dialback answers are accepted only on the stream that asked")
	return fmt.Errorf("s2s: unsolicited <%s type='%s'/> from %q", el.Name, el.Type(), el.From())
}

// stanza accepts a stanza only from a domain this stream authenticated
// and only to our domain or one of our service domains.
func (in *inStream) stanza(el *wire.Element) (closeReason, error) {
	from, to := domainOf(el.From()), domainOf(el.To())
	ok, any := in.isAuthed(from)
	if !ok {
		if !any {
			in.streamError("not-authorized", "")
			return closeAuthFailed, fmt.Errorf("s2s: stanza before authentication")
		}
		in.log.Warn("s2s: spoofed from, closing stream", "from", el.From(), "to", el.To())
		in.streamError("invalid-from", "")
		return closeInvalidFrom, fmt.Errorf("s2s: stanza from unauthenticated domain %q", from)
	}
	if !in.s.ours(to) {
		in.streamError("host-unknown", "")
		return closeHostUnknown, fmt.Errorf("s2s: stanza to foreign domain %q", to)
	}
	if el.NS() == wire.NSServer {
		el.RemoveAttr("xmlns")
	}
	if in.s.deliver != nil {
		in.s.deliver(in.s.ctx, el)
	}
	return 0, nil
}

// write sends bytes with a write deadline, serialized with other writers.
func (in *inStream) write(b []byte) error {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	if in.closed {
		return net.ErrClosed
	}
	_ = in.conn.SetWriteDeadline(time.Now().Add(in.s.writeTimeout()))
	_, err := in.conn.Write(b)
	return err
}

func (in *inStream) writeEl(el *wire.Element) error {
	return in.write(el.Bytes())
}

// streamError sends a stream error and the close tag (RFC 6120 §4.9).
func (in *inStream) streamError(cond, text string) {
	b := wire.StreamError(cond, text).Bytes()
	_ = in.write(append(b, streamClose...))
	in.wmu.Lock()
	in.closed = true
	in.wmu.Unlock()
}

// closeConn closes the transport; the reader then ends.
func (in *inStream) closeConn() {
	in.wmu.Lock()
	in.closed = true
	conn := in.conn
	in.wmu.Unlock()
	_ = conn.Close()
}

// close ends the stream once, with its reason logged.
func (in *inStream) close(reason closeReason, err error) {
	in.wmu.Lock()
	if !in.closed && reason == closePeerClosed {
		_ = in.conn.SetWriteDeadline(time.Now().Add(in.s.writeTimeout()))
		_, _ = in.conn.Write([]byte(streamClose))
	}
	in.closed = true
	conn := in.conn
	in.wmu.Unlock()
	_ = conn.Close()
	level := slog.LevelInfo
	if reason == closeInvalidFrom || reason == closePolicy || reason == closeUnsolicited {
		level = slog.LevelWarn
	}
	in.log.Log(context.Background(), level, "s2s: incoming stream closed", "reason", reason.String(), "err", err)
}

// shutdown closes the stream for Stop.
func (in *inStream) shutdown() {
	in.streamError("system-shutdown", "")
	in.closeConn()
}
