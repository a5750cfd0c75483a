package s2s

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/wire"
)

type outState int

const (
	outConnecting outState = iota
	outReady
	outClosed
)

// outConn is one outgoing stream for a (local, remote) domain pair. Its
// run goroutine dials, negotiates and then reads; once TLS is up a writer
// goroutine (writeLoop) owns every write, fed by three bounded queues:
// control (negotiation), verifies (dialback requests, sent as soon as the
// stream is secure) and stanzas (sent once authenticated).
//
// The stream owns the dialback verifications it asks for (verifies): an
// answer counts only when it arrives on this stream, from the remote
// domain, for the exact (to, from, id) of a request this stream already
// sent on its secure transport (XEP-0220 §4.1, unsolicited dialback).
type outConn struct {
	s    *Service
	key  pairKey
	log  *slog.Logger
	kick chan struct{} // wakes the writer; capacity 1
	done chan struct{} // closed when the stream is finished

	mu         sync.Mutex
	state      outState
	closing    bool // idle close or shutdown under way; takes nothing new
	authed     bool // stanzas may be written
	verifyHold bool // verifies wait (during the SASL exchange)
	writer     bool // writeLoop running
	conn       net.Conn
	control    [][]byte
	verifies   map[verifyKey]*pendingVerify // requests made on this stream
	unsent     []verifyKey                  // of verifies, not yet written on conn, in order
	queue      []queued
	lastSent   time.Time
	method     string // how we authenticated: "sasl-external" or "dialback"
	created    time.Time
	err        error // why the stream ended
}

func newOutConn(s *Service, key pairKey) *outConn {
	return &outConn{
		s:        s,
		key:      key,
		log:      s.log.With("dir", "out", "local", key.local, "remote", key.remote),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		verifies: map[verifyKey]*pendingVerify{},
		created:  time.Now(),
	}
}

type enqueueResult int

const (
	enqueued         enqueueResult = iota
	enqueueClosed                  // the stream is closing: use a new one
	enqueueFull                    // the queue is at QueueLimit: bounce
	enqueueDuplicate               // the same verification is already pending
)

// enqueueStanza queues a stanza for the writer.
func (c *outConn) enqueueStanza(q queued) enqueueResult {
	c.mu.Lock()
	if c.state == outClosed || c.closing {
		c.mu.Unlock()
		return enqueueClosed
	}
	if len(c.queue) >= c.s.QueueLimit {
		c.mu.Unlock()
		return enqueueFull
	}
	c.queue = append(c.queue, q)
	c.mu.Unlock()
	c.wake()
	return enqueued
}

// pendingVerify is one <db:verify/> request of this stream.
type pendingVerify struct {
	req    *wire.Element
	sent   bool              // taken by the writer for the current transport
	answer chan verifyResult // capacity 1; receives exactly one result
}

// enqueueVerify queues a <db:verify/> request and returns the channel its
// answer (or the stream's failure) arrives on. vk.local and vk.remote are
// the stream's pair.
func (c *outConn) enqueueVerify(el *wire.Element, vk verifyKey) (<-chan verifyResult, enqueueResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == outClosed || c.closing:
		return nil, enqueueClosed
	case len(c.verifies) >= c.s.QueueLimit:
		return nil, enqueueFull
	case c.verifies[vk] != nil:
		return nil, enqueueDuplicate
	}
	pv := &pendingVerify{req: el, answer: make(chan verifyResult, 1)}
	c.verifies[vk] = pv
	c.unsent = append(c.unsent, vk)
	c.wake() // does not take c.mu
	return pv.answer, enqueued
}

// forgetVerify drops a request whose requester stopped waiting; a late
// answer to it is then ignored like any unsolicited one.
func (c *outConn) forgetVerify(vk verifyKey) {
	c.mu.Lock()
	delete(c.verifies, vk)
	c.mu.Unlock()
}

func (c *outConn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run is the stream's main goroutine: dial, handshake, then read.
func (c *outConn) run() {
	rd, hdr, err := c.dialOut()
	if err != nil {
		reason := closeConnectFailed
		if isTimeout(err) {
			reason = closeTimeout
		}
		c.fail(err, reason)
		return
	}
	c.s.clearFailure(c.key.remote)
	c.log.Info("s2s: outgoing stream ready")
	reason, err := c.readLoop(rd, hdr)
	c.fail(err, reason)
}

// dialOut connects to the first reachable target of the remote domain
// and runs the handshake, all within s2s.connect_timeout.
func (c *outConn) dialOut() (*wire.Reader, *wire.Element, error) {
	ctx, cancel := context.WithTimeout(c.s.ctx, c.s.setupTimeout())
	defer cancel()
	targets, err := c.s.targetsFor(ctx, c.key.remote)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%w: dns: %v", errHandshakeTimeout, err)
		}
		return nil, nil, fmt.Errorf("s2s: resolving %s: %w", c.key.remote, err)
	}
	var lastErr error
	for i, t := range targets {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", t.addr())
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if !c.useConn(conn) {
			return nil, nil, ErrStopped
		}
		rd, hdr, err := c.processOutHandshake(ctx, conn, t, false)
		if errors.Is(err, errExternalBroken) && ctx.Err() == nil {
			// Some servers drop the stream on SASL EXTERNAL instead of
			// answering <failure/> (ejabberd 23.01 with an XmppAddr in our
			// certificate): try once more with dialback only.
			c.log.Info("s2s: SASL EXTERNAL broke the stream; retrying with dialback", "err", err)
			c.mu.Lock()
			old := c.conn
			c.mu.Unlock()
			_ = old.Close()
			conn, derr := d.DialContext(ctx, "tcp", t.addr())
			if derr != nil {
				return nil, nil, fmt.Errorf("s2s: reconnecting to %s: %w", c.key.remote, derr)
			}
			if !c.useConn(conn) {
				return nil, nil, ErrStopped
			}
			rd, hdr, err = c.processOutHandshake(ctx, conn, t, true)
		}
		if err != nil && ctx.Err() == nil && i+1 < len(targets) && !errors.Is(err, ErrStopped) {
			// The host answered but the stream failed (TLS, stream
			// error, authentication): another SRV target may be a
			// healthy server of the same domain.
			c.log.Info("s2s: stream to one target failed; trying the next", "target", t.addr(), "err", err)
			c.mu.Lock()
			old := c.conn
			c.mu.Unlock()
			if old != nil {
				_ = old.Close()
			}
			lastErr = err
			continue
		}
		if err != nil && ctx.Err() != nil && !isTimeout(err) {
			err = fmt.Errorf("%w: %v", errHandshakeTimeout, err)
		}
		return rd, hdr, err
	}
	if lastErr == nil {
		lastErr = ErrNoTargets
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("%w: connecting to %s: %v", errHandshakeTimeout, c.key.remote, lastErr)
	}
	return nil, nil, fmt.Errorf("s2s: connecting to %s: %w", c.key.remote, lastErr)
}

// useConn makes conn the stream's transport, resetting what belonged to
// an earlier attempt (its writer exits when it sees the change).
func (c *outConn) useConn(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == outClosed {
		_ = conn.Close()
		return false
	}
	c.conn = conn
	c.writer = false
	c.control = nil
	c.verifyHold = false
	// Requests written on an earlier attempt's transport were lost with
	// it: send them again on this one (and until then, answers to them
	// do not count).
	c.unsent = c.unsent[:0]
	for vk, pv := range c.verifies {
		pv.sent = false
		c.unsent = append(c.unsent, vk)
	}
	return true
}

// errExternalBroken means the peer ended the stream in answer to SASL
// EXTERNAL rather than refusing it.
var errExternalBroken = errors.New("s2s: stream failed during SASL EXTERNAL")

// targetsFor returns where to connect for a domain: the static map entry,
// else the DNS targets.
func (s *Service) targetsFor(ctx context.Context, domain string) ([]target, error) {
	for d, hp := range s.cfg.Hosts {
		if strings.EqualFold(d, domain) {
			t, err := staticTarget(hp)
			if err != nil {
				return nil, fmt.Errorf("s2s: s2s.hosts.%s: %w", d, err)
			}
			return []target{t}, nil
		}
	}
	return lookupTargets(ctx, s.Resolver, domain)
}

// processOutHandshake negotiates the stream as the originating server:
// stream header, STARTTLS (or direct TLS), then SASL EXTERNAL when offered,
// else Server Dialback. It returns the reader and header of the
// authenticated stream.
func (c *outConn) processOutHandshake(ctx context.Context, conn net.Conn, t target, skipExternal bool) (*wire.Reader, *wire.Element, error) {
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	local, remote := c.key.local, c.key.remote
	secure := false
	if t.directTLS {
		tc, err := c.startTLS(ctx, conn)
		if err != nil {
			return nil, nil, err
		}
		conn, secure = tc, true
	}
	var rd *wire.Reader
	triedExternal, saslDone := skipExternal, false
	for range 4 { // each pass is one stream: plain, TLS, after SASL
		if err := c.writeOrQueue(conn, streamHeader(local, remote, "")); err != nil {
			return nil, nil, err
		}
		if rd == nil {
			rd = wire.NewReader(conn, c.s.limits)
		} else {
			rd.Restart()
		}
		hdr, err := rd.Header()
		if err != nil {
			return nil, nil, fmt.Errorf("s2s: reading stream header: %w", err)
		}
		if cond := checkHeader(hdr); cond != "" {
			return nil, nil, fmt.Errorf("%w: header: %s", ErrBadStream, cond)
		}
		features, err := c.next(rd, hdr)
		if err != nil {
			return nil, nil, err
		}
		if ns, local := qname(features, hdr); ns != wire.NSStream || local != "features" {
			return nil, nil, fmt.Errorf("%w: expected stream features, got <%s/>", ErrBadStream, features.Name)
		}
		if !secure {
			if featureHas(features, "starttls", wire.NSTLS) == nil {
				return nil, nil, ErrNoTLS
			}
			if err := c.writeOrQueue(conn, []byte(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)); err != nil {
				return nil, nil, err
			}
			el, err := c.next(rd, hdr)
			if err != nil {
				return nil, nil, err
			}
			if el.LocalName() != "proceed" {
				return nil, nil, fmt.Errorf("%w: starttls refused", ErrNoTLS)
			}
			if rd.Buffered() > 0 {
				return nil, nil, fmt.Errorf("%w: data after <proceed/>", ErrBadStream)
			}
			tc, err := c.startTLS(ctx, conn)
			if err != nil {
				return nil, nil, err
			}
			conn, secure, rd = tc, true, nil
			continue
		}
		if saslDone {
			return rd, hdr, nil
		}
		// Secure: from now on the writer owns the socket, and dialback
		// verifications for this domain may go out.
		c.startWriter(conn)
		if !triedExternal && hasMechanism(features, "EXTERNAL") {
			triedExternal = true
			ok, err := c.saslExternal(rd, hdr)
			if err != nil {
				if errors.Is(err, ErrBadStream) || errors.Is(err, ErrStreamError) || errors.Is(err, io.EOF) {
					return nil, nil, fmt.Errorf("%w: %v", errExternalBroken, err)
				}
				return nil, nil, err
			}
			if ok {
				saslDone = true
				c.setMethod("sasl-external")
				c.mu.Lock()
				c.verifyHold = true // until the new header is queued
				c.mu.Unlock()
				continue
			}
			c.log.Info("s2s: SASL EXTERNAL refused, trying dialback")
		}
		if err := c.dialback(rd, hdr); err != nil {
			return nil, nil, err
		}
		c.setMethod("dialback")
		return rd, hdr, nil
	}
	return nil, nil, fmt.Errorf("%w: too many stream restarts", ErrBadStream)
}

// startTLS runs the client side of TLS with the remote domain as SNI and
// checks the peer's certificate against the policy.
func (c *outConn) startTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	cfg := c.s.clientTLS.Clone()
	cfg.ServerName = c.key.remote
	cfg.NextProtos = []string{"xmpp-server"}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("s2s: tls handshake with %s: %w", c.key.remote, err)
	}
	c.mu.Lock()
	c.conn = tc
	c.mu.Unlock()
	certs := tc.ConnectionState().PeerCertificates
	if err := c.s.certs.verify(certs, c.key.remote); err != nil {
		if c.s.cfg.RequireValidCerts {
			return nil, fmt.Errorf("s2s: certificate of %s: %w", c.key.remote, err)
		}
		c.log.Info("s2s: peer certificate does not authenticate it; continuing (dialback policy)", "err", err)
	}
	return tc, nil
}

// saslExternal authenticates us with our certificate (RFC 6120 §6,
// XEP-0178). It reports false when the peer answered <failure/>.
func (c *outConn) saslExternal(rd *wire.Reader, hdr *wire.Element) (bool, error) {
	c.mu.Lock()
	c.verifyHold = true
	c.mu.Unlock()
	authzid := base64.StdEncoding.EncodeToString([]byte(c.key.local))
	c.queueControl([]byte(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + authzid + `</auth>`))
	el, err := c.next(rd, hdr)
	if err != nil {
		return false, err
	}
	switch el.LocalName() {
	case "success":
		return true, nil
	case "failure":
		c.mu.Lock()
		c.verifyHold = false
		c.mu.Unlock()
		c.wake()
		return false, nil
	}
	return false, fmt.Errorf("%w: unexpected <%s/> during SASL", ErrBadStream, el.Name)
}

// dialback authenticates us with a dialback key (XEP-0220 §2.1).
func (c *outConn) dialback(rd *wire.Reader, hdr *wire.Element) error {
	id := hdr.ID()
	if id == "" {
		return fmt.Errorf("%w: stream has no id for dialback", ErrBadStream)
	}
	key := dialbackKey(c.s.secret, c.key.remote, c.key.local, id)
	res := wire.New("db:result", "from", c.key.local, "to", c.key.remote).SetText(key)
	c.queueControl(res.Bytes())
	for {
		el, err := c.next(rd, hdr)
		if err != nil {
			return err
		}
		ns, local := qname(el, hdr)
		if ns != nsDialback || local != "result" {
			c.log.Debug("s2s: ignoring element while waiting for dialback", "name", el.Name)
			continue
		}
		if domainOf(el.From()) != c.key.remote || domainOf(el.To()) != c.key.local {
			continue
		}
		switch el.Type() {
		case "valid":
			return nil
		case "invalid":
			return fmt.Errorf("%w: dialback key rejected by %s", ErrAuthFailed, c.key.remote)
		default:
			cond := "undefined-condition"
			if e := el.Child("error", ""); e != nil && len(e.Children) > 0 {
				cond = e.Children[0].Name
			}
			return fmt.Errorf("%w: %s answered dialback with error %s", ErrDialbackRefused, c.key.remote, cond)
		}
	}
}

// next reads the next element during the handshake, handling dialback
// verification answers on the way and turning stream errors into errors.
func (c *outConn) next(rd *wire.Reader, hdr *wire.Element) (*wire.Element, error) {
	for {
		el, err := rd.Next()
		if err != nil {
			if errors.Is(err, wire.ErrStreamEnd) {
				return nil, fmt.Errorf("%w: peer closed the stream", ErrBadStream)
			}
			return nil, err
		}
		ns, local := qname(el, hdr)
		switch {
		case ns == wire.NSStream && local == "error":
			return nil, fmt.Errorf("%w: %s %s", ErrStreamError, streamErrorCondition(el), streamErrorText(el))
		case ns == nsDialback && local == "verify" && el.Type() != "":
			c.verifyAnswer(el)
			continue
		}
		return el, nil
	}
}

// verifyAnswer hands a <db:verify type='valid|invalid|error'/> to the
// request of this stream it answers. Anything else is ignored rather than
// ending the stream: the peer here is the server DNS named for the remote
// domain, and an answer arriving after its requester gave up (a timeout)
// is legitimate; what matters is that it authenticates nothing. An answer
// counts only once its request was handed to the writer on the current
// secure transport, so nothing injected before STARTTLS, or on an earlier
// attempt's connection, can answer it.
func (c *outConn) verifyAnswer(el *wire.Element) {
	vk := verifyKey{local: domainOf(el.To()), remote: domainOf(el.From()), id: el.ID()}
	c.mu.Lock()
	pv := c.verifies[vk]
	ours := pv != nil && pv.sent && vk.local == c.key.local && vk.remote == c.key.remote
	if ours {
		delete(c.verifies, vk)
	}
	c.mu.Unlock()
	if !ours {
		// Debug, not info: the peer chooses how many it sends.
		c.log.Debug("s2s: ignoring a dialback verify answer this stream did not ask for (or no longer waits for)",
			"from", el.From(), "to", el.To(), "id", vk.id, "type", el.Type())
		return
	}
	var r verifyResult
	switch el.Type() {
	case "valid":
		r.valid = true
	case "invalid":
	default:
		r.err = fmt.Errorf("%w: verify answered with error", ErrDialbackRefused)
	}
	pv.answer <- r // capacity 1, and removed from verifies above: never blocks
}

// readLoop reads the authenticated stream until it ends. Peers send us
// little on our outgoing stream: verify answers, keepalives, the close.
func (c *outConn) readLoop(rd *wire.Reader, hdr *wire.Element) (closeReason, error) {
	c.mu.Lock()
	conn := c.conn
	c.state = outReady
	c.authed = true
	c.verifyHold = false
	c.lastSent = time.Now()
	c.mu.Unlock()
	c.wake()
	_ = conn.SetReadDeadline(time.Time{})
	for {
		el, err := c.next(rd, hdr)
		if err != nil {
			switch {
			case errors.Is(err, ErrStreamError):
				return closeStreamError, err
			case c.isClosing():
				return closeIdle, ErrIdle
			case errors.Is(err, ErrBadStream):
				return closePeerClosed, err
			}
			return closeReadError, err
		}
		c.log.Debug("s2s: ignoring element on outgoing stream", "name", el.Name)
	}
}

func (c *outConn) setMethod(m string) {
	c.mu.Lock()
	c.method = m
	c.mu.Unlock()
}

func (c *outConn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// writeOrQueue writes directly before the writer runs, else queues.
func (c *outConn) writeOrQueue(conn net.Conn, b []byte) error {
	c.mu.Lock()
	w := c.writer
	c.mu.Unlock()
	if w {
		c.queueControl(b)
		return nil
	}
	_, err := conn.Write(b)
	return err
}

// queueControl queues negotiation bytes ahead of everything else.
func (c *outConn) queueControl(b []byte) {
	c.mu.Lock()
	c.control = append(c.control, b)
	if bytesHasStreamHeader(b) {
		c.verifyHold = false
	}
	c.mu.Unlock()
	c.wake()
}

func bytesHasStreamHeader(b []byte) bool {
	return len(b) > 14 && strings.HasPrefix(string(b[:14]), "<?xml version=")
}

func (c *outConn) startWriter(conn net.Conn) {
	c.mu.Lock()
	if c.writer {
		c.mu.Unlock()
		return
	}
	c.writer = true
	c.mu.Unlock()
	c.s.goroutine(func() { c.writeLoop(conn) })
}

// writeLoop is the stream's only writer once TLS is up. It writes each
// batch (control, then verifies, then stanzas when authenticated) in one
// write with a deadline, and closes the stream after IdleTimeout without
// stanzas.
func (c *outConn) writeLoop(conn net.Conn) {
	idle := c.s.idleTimeout()
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case <-c.kick:
		case <-timer.C:
			if !c.current(conn) {
				return
			}
			if left := c.idleLeft(idle); left > 0 {
				timer.Reset(left)
				continue
			}
			c.closeIdle(conn)
			return
		case <-c.done:
			return
		}
		c.mu.Lock()
		if c.conn != conn {
			c.mu.Unlock()
			c.wake() // the kick was meant for the current writer
			return   // an earlier attempt's writer
		}
		control := c.control
		c.control = nil
		var verifies []*wire.Element
		var stanzas []queued
		if !c.verifyHold {
			for _, vk := range c.unsent {
				if pv := c.verifies[vk]; pv != nil && !pv.sent {
					pv.sent = true // before the write: the answer may come back at once
					verifies = append(verifies, pv.req)
				}
			}
			c.unsent = c.unsent[:0]
		}
		if c.authed {
			stanzas = c.queue
			c.queue = nil
		}
		c.mu.Unlock()
		if len(control)+len(verifies)+len(stanzas) == 0 {
			continue
		}
		buf := wire.GetBuffer()
		for _, b := range control {
			buf.Write(b)
		}
		for _, el := range verifies {
			el.WriteTo(buf)
		}
		for _, q := range stanzas {
			q.el.WriteTo(buf)
		}
		_ = conn.SetWriteDeadline(time.Now().Add(c.s.writeTimeout()))
		_, err := conn.Write(buf.Bytes())
		wire.PutBuffer(buf)
		if err != nil {
			c.log.Info("s2s: write failed", "err", err)
			if len(stanzas) > 0 {
				// Put them back so fail() re-sends them on a new stream.
				c.mu.Lock()
				c.queue = append(stanzas, c.queue...)
				c.mu.Unlock()
			}
			_ = conn.Close()
			return
		}
		if len(stanzas) > 0 {
			c.mu.Lock()
			c.lastSent = time.Now()
			c.mu.Unlock()
			timer.Reset(idle)
			for _, q := range stanzas {
				q.settle()
			}
		}
	}
}

// current reports whether conn is still the stream's transport.
func (c *outConn) current(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn == conn
}

// idleLeft returns how long until the stream counts as idle; 0 or less
// means it is idle now, and it is then marked closing.
func (c *outConn) idleLeft(idle time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.authed || len(c.queue) > 0 || len(c.verifies) > 0 {
		return idle
	}
	left := idle - time.Since(c.lastSent)
	if left <= 0 {
		c.closing = true
	}
	return left
}

// closeIdle ends an idle stream politely: our close tag, then the reader
// waits a bounded time for the peer's.
func (c *outConn) closeIdle(conn net.Conn) {
	c.log.Info("s2s: closing idle outgoing stream", "reason", closeIdle.String())
	c.s.removeOut(c)
	_ = conn.SetWriteDeadline(time.Now().Add(c.s.writeTimeout()))
	_, _ = conn.Write([]byte(streamClose))
	_ = conn.SetReadDeadline(time.Now().Add(c.s.writeTimeout()))
}

// shutdown closes the stream for Stop.
func (c *outConn) shutdown() {
	c.fail(ErrStopped, closeShutdown)
}

// fail ends the stream once. Stanzas still queued on a stream that never
// became ready are bounced with the matching error; on a stream that was
// ready they are sent again through a new stream.
func (c *outConn) fail(err error, reason closeReason) {
	c.mu.Lock()
	if c.state == outClosed {
		c.mu.Unlock()
		return
	}
	wasReady := c.state == outReady
	c.state = outClosed
	c.err = err
	queue := c.queue
	c.queue = nil
	pending := c.verifies
	c.verifies = map[verifyKey]*pendingVerify{}
	c.unsent = nil
	conn := c.conn
	c.mu.Unlock()
	close(c.done)
	if conn != nil {
		_ = conn.Close()
	}
	c.s.removeOut(c)
	c.s.countClose(reason)
	for _, pv := range pending {
		pv.answer <- verifyResult{err: err}
	}
	level := slog.LevelInfo
	if !wasReady {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "s2s: outgoing stream closed", "reason", reason.String(), "err", err, "queued", len(queue))
	if !wasReady && !errors.Is(err, ErrStopped) && c.s.RetryBackoff > 0 {
		c.s.noteFailure(c.key.remote, err)
	}
	if !wasReady || errors.Is(err, ErrStopped) {
		se := bounceError(err)
		if errors.Is(err, ErrStopped) {
			se = wire.ErrRemoteServerNotFound.WithText(err.Error())
		}
		for _, q := range queue {
			c.s.bounce(q.el, se)
			q.settle()
		}
		return
	}
	for _, q := range queue {
		c.s.SendNotify(c.s.ctx, q.el, q.settled)
	}
}
