package httpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/wire"
)

var (
	_ c2s.Transport           = (*BOSHTransport)(nil)
	_ c2s.UndeliveredReporter = (*BOSHTransport)(nil)
)

// BOSHTransport carries one c2s stream over a BOSH session (XEP-0206): the
// session creation request stands for the first stream header, a body with
// xmpp:restart='true' for the header after SASL, and type='terminate' for
// the end of the stream.
type BOSHTransport struct {
	s      *bosh.Session
	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	headerRead bool // the current stream's header was returned
	restarted  bool // Restart was called: wait for xmpp:restart
}

// NewBOSHTransport wraps a session for c2s.Server.Serve.
func NewBOSHTransport(s *bosh.Session) *BOSHTransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &BOSHTransport{s: s, ctx: ctx, cancel: cancel}
}

// Session returns the BOSH session.
func (t *BOSHTransport) Session() *bosh.Session { return t.s }

// ReadHeader returns the header built from the session creation request,
// and after Restart waits for the client's restart request.
func (t *BOSHTransport) ReadHeader() (*wire.Element, error) {
	t.mu.Lock()
	restarted := t.restarted
	t.restarted = false
	t.headerRead = true
	t.mu.Unlock()
	if !restarted {
		return t.s.Header(), nil
	}
	for {
		el, err := t.s.Recv(t.ctx)
		switch {
		case err == bosh.ErrRestart:
			return t.s.Header(), nil
		case err != nil:
			return nil, t.mapErr(err)
		case el != nil:
			// A client that skips the restart body: take the element as the
			// first of the new stream rather than losing it.
			t.s.Unread(el)
			return t.s.Header(), nil
		}
	}
}

// ReadElement returns the next payload the client sent.
func (t *BOSHTransport) ReadElement() (*wire.Element, error) {
	for {
		el, err := t.s.Recv(t.ctx)
		if err == bosh.ErrRestart {
			continue // a restart nobody asked for changes nothing
		}
		if err != nil {
			return nil, t.mapErr(err)
		}
		if wire.UndeclaresNamespace(el) {
			return nil, wire.ErrInvalidNamespace // as on a TCP stream
		}
		return el, nil
	}
}

func (t *BOSHTransport) mapErr(err error) error {
	switch {
	case errors.Is(err, bosh.ErrTerminated):
		return wire.ErrStreamEnd
	case errors.Is(err, bosh.ErrInactive):
		return fmt.Errorf("%w (%w)", c2s.ErrInactive, err)
	case errors.Is(err, context.Canceled):
		return bosh.ErrClosed
	}
	return err
}

// Restart makes the next ReadHeader wait for xmpp:restart='true'.
func (t *BOSHTransport) Restart() {
	t.mu.Lock()
	t.restarted = true
	t.mu.Unlock()
}

// Secure reports whether the session was created over HTTPS or a trusted
// plain-HTTP path (http.plain_secure).
func (t *BOSHTransport) Secure() bool { return t.s.Secure() }

// CanStartTLS is false: TLS is the HTTP layer's business.
func (t *BOSHTransport) CanStartTLS() bool { return false }

// StartTLS is never called (CanStartTLS is false).
func (t *BOSHTransport) StartTLS(ctx context.Context, cfg *tls.Config) error {
	return errors.New("httpd: STARTTLS is not available over BOSH")
}

// OpenStream remembers the stream id for the authid attribute.
func (t *BOSHTransport) OpenStream(h c2s.StreamHeader) error {
	t.s.Open(h.ID)
	return nil
}

// Write queues elements for the client's requests. Like a socket write it
// waits while the client has not fetched what is queued (bosh.SendWait),
// so a slow client holds the c2s writer back, and the c2s session's own
// limit and pacing (offline messages handed over as the client reads)
// apply to BOSH as to TCP.
func (t *BOSHTransport) Write(els []*wire.Element) error {
	for _, el := range els {
		if !t.s.SendWait(t.ctx, el) {
			return bosh.ErrClosed
		}
	}
	return nil
}

// Close ends the session with a terminate body, carrying the stream error
// when there is one.
func (t *BOSHTransport) Close(streamErr *wire.Element) error {
	t.s.Close(streamErr)
	t.cancel()
	return nil
}

// RemoteAddr is the client's address without the port.
// Kind is c2s.TransportBOSH.
func (t *BOSHTransport) Kind() string { return c2s.TransportBOSH }

func (t *BOSHTransport) RemoteAddr() string {
	if h, _, err := net.SplitHostPort(t.s.RemoteAddr()); err == nil {
		return h
	}
	return t.s.RemoteAddr()
}

// SetActivityHook installs fn, called on every request of the session.
func (t *BOSHTransport) SetActivityHook(fn func()) { t.s.SetActivityHook(fn) }

// Undelivered returns, after Close, the stanzas the client is not known to
// have received (c2s.UndeliveredReporter): the core routes them again.
func (t *BOSHTransport) Undelivered() []*wire.Element { return t.s.Undelivered() }

// StreamAcks tells the session that stream management counts what is
// written from now on (c2s.UndeliveredReporter): Undelivered leaves it out.
func (t *BOSHTransport) StreamAcks() { t.s.StreamAcks() }
