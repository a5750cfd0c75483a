package c2s

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/wire"
)

// Listener accepts TCP client connections for a Server: STARTTLS streams,
// or direct TLS (XEP-0368) when DirectTLS is set.
type Listener struct {
	srv       *Server
	ln        net.Listener
	directTLS bool

	wg     sync.WaitGroup
	cancel context.CancelFunc
	ctx    context.Context
}

// Listen binds addr ("host:port"; port 0 or -1 picks a free port) and
// returns a listener that is not accepting yet; call Start.
func (srv *Server) Listen(addr string, directTLS bool) (*Listener, error) {
	if directTLS && srv.d.TLS == nil {
		return nil, ErrNoTLS
	}
	// No TCP keepalive: Go's default probes every idle connection every
	// 15 s, which wakes a phone's radio four times a minute for nothing.
	// A silent session is checked with an XMPP ping after
	// c2s.ping_interval instead, and closed after c2s.idle_timeout.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", conf.ListenAddr(addr))
	if err != nil {
		return nil, err
	}
	return &Listener{srv: srv, ln: ln, directTLS: directTLS}, nil
}

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Start runs the accept loop. Sessions get a context derived from ctx.
func (l *Listener) Start(ctx context.Context) {
	l.ctx, l.cancel = context.WithCancel(ctx)
	l.wg.Add(1)
	go l.acceptLoop()
}

// Stop closes the listener, ends every session it accepted with
// system-shutdown, and waits for them (until ctx ends).
func (l *Listener) Stop(ctx context.Context) error {
	_ = l.ln.Close()
	if l.cancel != nil {
		l.cancel()
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				return
			}
			// Temporary failure (out of file descriptors...): back off.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			l.srv.d.Logger.Warn("c2s: accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		l.wg.Add(1)
		go l.serveConn(conn)
	}
}

func (l *Listener) serveConn(conn net.Conn) {
	defer l.wg.Done()
	growStack()
	// The session's reader runs on this goroutine for as long as the
	// client stays: keep this frame small (setup holds the handshake's
	// locals) so an idle reader's stack can shrink to its minimum.
	if t := l.setup(conn); t != nil {
		_ = l.srv.Serve(l.ctx, t)
	}
}

// setup prepares a transport for an accepted connection; nil when the
// direct-TLS handshake failed.
//
//go:noinline
func (l *Listener) setup(conn net.Conn) *TCPTransport {
	lim := wire.Limits{MaxStanzaBytes: l.srv.d.C2S.MaxStanzaBytes}
	if !l.directTLS {
		return NewTCPTransport(conn, false, lim)
	}
	done, ok := l.srv.gate.acceptTLS(l.ctx, l.srv.d.Metrics)
	if !ok {
		// Shed before the handshake: nothing can be said to a client
		// that has not got TLS yet, so close as a full accept queue does.
		_ = conn.Close()
		return nil
	}
	rec := &recordConn{Conn: conn}
	tc := tls.Server(rec, l.srv.d.TLS)
	ctx, cancel := context.WithTimeout(l.ctx, l.srv.d.C2S.AuthTimeout)
	err := handshake(ctx, tc)
	cancel()
	done()
	if err != nil {
		l.srv.d.Logger.Debug("c2s: TLS handshake failed", "addr", conn.RemoteAddr().String(), "err", err)
		_ = conn.Close()
		return nil
	}
	t := NewTCPTransport(tc, true, lim)
	t.raw, t.rec, t.tlsDrained, t.tlsFresh = conn, rec, true, true
	return t
}

// handshake runs the TLS handshake on a short-lived goroutine: its deep
// crypto stack then dies with it instead of staying with the session's
// long-lived reader goroutine (stacks only shrink by halves, at GC).
func handshake(ctx context.Context, tc *tls.Conn) error {
	done := make(chan error, 1)
	go func() {
		growStack()
		done <- tc.HandshakeContext(ctx)
	}()
	return <-done
}
