package s2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/wire"
)

// DefaultQueueLimit is how many stanzas may wait for one outgoing stream.
const DefaultQueueLimit = 1000

// DeliverFunc hands a stanza to the router: stanzas from peers, and error
// stanzas bouncing what could not be sent (addressed to the local sender).
type DeliverFunc func(ctx context.Context, el *wire.Element)

// pairKey names one outgoing stream: our domain and the remote one.
type pairKey struct{ local, remote string }

// verifyKey names one pending dialback verification we asked for.
type verifyKey struct{ local, remote, id string }

// Service is the federation service of one node: the s2s listener and the
// pool of outgoing streams. It implements router.Federation.
type Service struct {
	cfg     conf.S2SConfig
	domain  string
	deliver DeliverFunc
	log     *slog.Logger
	secret  string
	limits  wire.Limits

	// Resolver finds SRV records for domains missing from s2s.hosts.
	// Default net.DefaultResolver. Set before Start.
	Resolver Resolver
	// QueueLimit bounds the stanzas waiting for one outgoing stream.
	// Default DefaultQueueLimit. Set before Start.
	QueueLimit int
	// ServesDomain reports whether this server also serves domain besides
	// its own (Deps.Domain): the service domains plugins claimed
	// (conference.example.org). Stanzas may be sent from them and to them,
	// peers may open streams to them and authenticate them by dialback
	// with this server, and no peer may claim them. Optional; set before
	// Start.
	ServesDomain func(domain string) bool
	// RetryBackoff is how long stanzas to a domain bounce at once after
	// setting up a stream to it failed, before the next attempt; it doubles
	// per consecutive failure up to MaxRetryBackoff. Defaults 1s and 1m.
	// Set before Start.
	RetryBackoff, MaxRetryBackoff time.Duration

	serverTLS *tls.Config // incoming: our certificate, client cert requested
	clientTLS *tls.Config // outgoing: our certificate as client cert
	certs     *certVerifier

	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	inAccepted atomic.Int64 // incoming connections accepted, for tests and metrics

	mu       sync.Mutex
	ln       net.Listener
	stopped  bool
	out      map[pairKey]*outConn
	in       map[*inStream]struct{}
	failures map[string]*dialFailure // remote domain → last setup failure
	closed   map[closeReason]int64   // ended streams by reason
}

// dialFailure remembers a failed stream setup so that a dead domain is not
// redialled for every stanza (NATS-style reconnect backoff).
type dialFailure struct {
	until time.Time
	delay time.Duration
	err   error
}

type verifyResult struct {
	valid bool
	err   error
}

// Deps are what the federation service takes from its node.
type Deps struct {
	// Domain is the node's domain (domain).
	Domain string
	// MaxStanzaBytes bounds a stanza from a peer (c2s.max_stanza_bytes).
	MaxStanzaBytes int
	// TLS carries the domain's certificate (Certificates or
	// GetCertificate); it is cloned, not modified.
	TLS *tls.Config
	// Deliver receives every stanza for the router.
	Deliver DeliverFunc
	Logger  *slog.Logger
}

// New builds the federation service the s2s section describes for the
// node's domain. Call Start.
func New(cfg conf.S2SConfig, d Deps) *Service {
	logger := d.Logger
	if logger == nil {
		logger = slog.Default()
	}
	secret := cfg.DialbackSecret
	if secret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		secret = hex.EncodeToString(b[:])
	}
	s := &Service{
		cfg:        cfg,
		domain:     domainOf(d.Domain),
		deliver:    d.Deliver,
		log:        logger.With("part", "s2s"),
		secret:     secret,
		limits:     wire.Limits{MaxStanzaBytes: d.MaxStanzaBytes},
		Resolver:   net.DefaultResolver,
		QueueLimit: DefaultQueueLimit,
		failures:   map[string]*dialFailure{},
		closed:     map[closeReason]int64{},

		RetryBackoff:    time.Second,
		MaxRetryBackoff: time.Minute,
		out:             map[pairKey]*outConn{},
		in:              map[*inStream]struct{}{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.serverTLS, s.clientTLS = s2sTLSConfigs(d.TLS, s.domain)
	return s
}

// s2sTLSConfigs derives the server and client TLS configurations. Peer
// certificates are requested but verified by certVerifier, because an
// untrusted certificate is not fatal when dialback may authenticate.
func s2sTLSConfigs(base *tls.Config, domain string) (server, client *tls.Config) {
	if base == nil {
		base = &tls.Config{}
	}
	server = base.Clone()
	server.ClientAuth = tls.RequestClientCert
	server.NextProtos = []string{"xmpp-server"}
	if server.MinVersion == 0 {
		server.MinVersion = tls.VersionTLS12
	}

	client = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified by certVerifier after the handshake
		RootCAs:            base.RootCAs,
	}
	getCert := func() (*tls.Certificate, error) {
		if len(base.Certificates) > 0 {
			return &base.Certificates[0], nil
		}
		if base.GetCertificate != nil {
			return base.GetCertificate(&tls.ClientHelloInfo{ServerName: domain})
		}
		return &tls.Certificate{}, nil
	}
	client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return getCert()
	}
	return server, client
}

// Start loads the CA file and, when s2s.listen is set, opens the s2s
// listener (port 5269 when the address has none; port 0 or -1 picks a free
// one). Outgoing streams work without a listener, but then peers cannot
// verify our dialback keys.
func (s *Service) Start(ctx context.Context) error {
	v, err := newCertVerifier(s.cfg.CAFile)
	if err != nil {
		return err
	}
	s.certs = v
	if conf.Off(s.cfg.Listen) {
		return nil
	}
	addr := conf.ListenAddr(s.cfg.Listen)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, strconv.Itoa(DefaultPort))
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("s2s: listen %s: %w", addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.log.Info("s2s: listening", "addr", ln.Addr().String(), "domain", s.domain)
	s.goroutine(func() { s.acceptLoop(ln) })
	return nil
}

// Addr returns the listener's address, or nil when not listening.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Stop closes the listener and every stream, bounces what is still queued
// and waits for the goroutines (or ctx).
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	ln := s.ln
	outs := make([]*outConn, 0, len(s.out))
	for _, c := range s.out {
		outs = append(outs, c)
	}
	ins := make([]*inStream, 0, len(s.in))
	for in := range s.in {
		ins = append(ins, in)
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range outs {
		c.shutdown()
	}
	for _, in := range ins {
		in.shutdown()
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// goroutine starts fn tracked by the service's WaitGroup.
func (s *Service) goroutine(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Send queues a stanza for its remote domain and returns at once. When it
// cannot be delivered, an error stanza for the sender comes back through
// the deliver callback. Send takes ownership of el: it is serialized later
// by the stream's writer, so the caller must not modify it afterwards
// (copy first when the same element goes to several recipients).
func (s *Service) Send(ctx context.Context, el *wire.Element) {
	s.SendNotify(ctx, el, nil)
}

// SendNotify is Send with a report: settled, when not nil, runs once the
// stanza has left this node's hands — written to the remote domain's
// stream (a process that dies after that leaves it to the kernel, which
// sends what was written), or bounced to its sender. Until then only this
// process has it: the router holds the sender's stream-management
// acknowledgement on it (crash safety). settled must not block.
func (s *Service) SendNotify(ctx context.Context, el *wire.Element, settled func()) {
	local, remote := domainOf(el.From()), domainOf(el.To())
	if remote == "" || local == "" {
		s.bounceAsync(el, wire.ErrJIDMalformed, settled)
		return
	}
	if !s.ours(local) {
		s.bounceAsync(el, wire.ErrNotAllowed.WithText("sender is not of the local domain"), settled)
		return
	}
	if s.ours(remote) {
		s.bounceAsync(el, wire.ErrServiceUnavailable, settled)
		return
	}
	if el.NS() == wire.NSClient {
		el.RemoveAttr("xmlns")
	}
	q := queued{el: el, settled: settled}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.bounceAsync(el, wire.ErrRemoteServerNotFound.WithText("federation stopped"), settled)
		return
	}
	key := pairKey{local, remote}
	c := s.out[key]
	res := enqueueClosed
	if c != nil {
		res = c.enqueueStanza(q)
	}
	if res == enqueueClosed {
		if f := s.failures[remote]; f != nil && time.Now().Before(f.until) {
			s.mu.Unlock()
			s.bounceAsync(el, bounceError(f.err), settled)
			return
		}
		c = newOutConn(s, key)
		res = c.enqueueStanza(q) // before run starts, so a fast failure bounces it
		s.startOutLocked(c)
	}
	s.mu.Unlock()
	if res == enqueueFull {
		c.log.Warn("s2s: outgoing queue full, bouncing stanza", "limit", s.QueueLimit)
		s.bounceAsync(el, wire.ErrResourceConstraint.WithText(ErrQueueFull.Error()), settled)
	}
}

// queued is a stanza waiting for its outgoing stream, with SendNotify's
// report.
type queued struct {
	el      *wire.Element
	settled func()
}

// settle runs the report, once the stanza was written or bounced.
func (q queued) settle() {
	if q.settled != nil {
		q.settled()
	}
}

// ours reports whether domain is served here: the node's domain or one
// of its service domains (ServesDomain).
func (s *Service) ours(domain string) bool {
	return domain == s.domain || (domain != "" && s.ServesDomain != nil && s.ServesDomain(domain))
}

// startOutLocked registers and starts a new outgoing stream. Needs s.mu held.
func (s *Service) startOutLocked(c *outConn) {
	s.out[c.key] = c
	s.goroutine(c.run)
}

// sendVerify queues a <db:verify/> on the outgoing stream for a pair,
// creating the stream when needed. The answer arrives on the returned
// channel, from that stream only.
func (s *Service) sendVerify(key pairKey, el *wire.Element, vk verifyKey) (*outConn, <-chan verifyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, nil, ErrStopped
	}
	c := s.out[key]
	res := enqueueClosed
	var ch <-chan verifyResult
	if c != nil {
		ch, res = c.enqueueVerify(el, vk)
	}
	if res == enqueueClosed {
		c = newOutConn(s, key)
		ch, res = c.enqueueVerify(el, vk)
		s.startOutLocked(c)
	}
	switch res {
	case enqueueFull:
		return nil, nil, ErrQueueFull
	case enqueueDuplicate:
		return nil, nil, errVerifyPending
	}
	return c, ch, nil
}

// errVerifyPending means the same verification (domains and stream ID) is
// already waiting for its answer.
var errVerifyPending = errors.New("s2s: dialback verification already pending")

// removeOut forgets an outgoing stream if it is still the registered one.
func (s *Service) removeOut(c *outConn) {
	s.mu.Lock()
	if s.out[c.key] == c {
		delete(s.out, c.key)
	}
	s.mu.Unlock()
}

// noteFailure starts or extends the retry backoff for a remote domain.
func (s *Service) noteFailure(remote string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failures[remote]
	if f == nil {
		f = &dialFailure{delay: s.RetryBackoff}
		s.failures[remote] = f
	} else {
		f.delay = min(f.delay*2, s.MaxRetryBackoff)
	}
	f.err = err
	f.until = time.Now().Add(f.delay)
}

// clearFailure forgets the backoff after a stream came up.
func (s *Service) clearFailure(remote string) {
	s.mu.Lock()
	delete(s.failures, remote)
	s.mu.Unlock()
}

// bounce answers an undeliverable stanza with an error to its sender.
// Errors are never answered (RFC 6120 §8.3.1).
func (s *Service) bounce(el *wire.Element, se *wire.StanzaError) {
	if el.IsError() || s.deliver == nil {
		return
	}
	if el.Name == "iq" && el.Type() == "result" {
		return
	}
	reply := wire.ErrorReply(el, se)
	s.deliver(s.ctx, reply)
}

// bounceAsync bounces on its own goroutine, so that Send never calls back
// into the router, and then runs settled (nil: nothing). After Stop the
// goroutine is not tracked (Stop may be waiting already).
func (s *Service) bounceAsync(el *wire.Element, se *wire.StanzaError, settled func()) {
	q := queued{el: el, settled: settled}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		go func() {
			s.bounce(el, se)
			q.settle()
		}()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.bounce(el, se)
		q.settle()
	}()
}

// bounceError maps why an outgoing stream failed to the stanza error the
// queued stanzas get: remote-server-timeout for timeouts,
// remote-server-not-found for everything else (DNS, connection refused,
// TLS or authentication failure), as RFC 6120 §8.3.3.15/16 describe.
func bounceError(err error) *wire.StanzaError {
	if isTimeout(err) {
		return wire.ErrRemoteServerTimeout.WithText(err.Error())
	}
	return wire.ErrRemoteServerNotFound.WithText(err.Error())
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errHandshakeTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var errHandshakeTimeout = errors.New("s2s: timed out setting up the stream")

// requestVerify asks the authoritative server of remote whether key is
// valid for the stream id that remote opened to us (XEP-0220 §2.3), over
// our outgoing stream to remote.
func (s *Service) requestVerify(ctx context.Context, local, remote, id, key string) (bool, error) {
	vk := verifyKey{local, remote, id}
	el := wire.New("db:verify", "from", local, "to", remote, "id", id).SetText(key)
	c, ch, err := s.sendVerify(pairKey{local, remote}, el, vk)
	if err != nil {
		return false, err
	}
	defer c.forgetVerify(vk) // unanswered ones must not keep the stream busy
	select {
	case r := <-ch:
		return r.valid, r.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (s *Service) setupTimeout() time.Duration { return s.cfg.ConnectTimeout }

func (s *Service) idleTimeout() time.Duration { return s.cfg.IdleTimeout }

// writeTimeout bounds one write to a peer.
func (s *Service) writeTimeout() time.Duration {
	if t := s.cfg.ConnectTimeout; t > 0 {
		return t
	}
	return 15 * time.Second
}
