// Package link carries messages between the nodes of a cluster over
// direct TCP connections authenticated with the shared cluster secret.
//
// Each node dials its own outbound connection to every peer it sends to
// and accepts the peers' connections: the connection A→B carries A's Sends
// and Calls and B's replies, so no connection is shared in both directions
// and there is no dial race to settle.
//
// Outbound, one writer goroutine per peer drains a bounded queue and
// writes whatever has accumulated in one writev (net.Buffers); a full
// queue blocks Send until its context ends (back-pressure).
//
// Inbound, one reader goroutine per connection runs Send handlers in
// order, in the reader goroutine (so they must not block for long), and
// runs each Call handler in its own goroutine. Before it waits for more
// input it acknowledges how many frames it has handled (one small frame
// per read batch). The sender keeps written frames until they are
// acknowledged, and stops writing while 8192 are outstanding.
//
// So nothing is dropped silently: a Send that was queued but could not be
// written (after one redial), or written but not acknowledged when the
// connection died, is handed to Options.Undelivered for the caller to
// store or bounce. A Send handler that returns cluster.ErrHandBack (its
// node is stopping) makes the same happen on purpose: the connection is
// closed before that frame is acknowledged. A frame handled just before the connection died may be
// reported as well: a possible duplicate, never a loss. SendNotify
// reports each message's fate to its caller instead: handled (the
// acknowledgement covered it) or not (what Undelivered would have got);
// the router's crash safety waits for that report before it acknowledges
// a client's stanza (server/router/CRASHSAFETY.md).
package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
)

// Options configure a Node.
type Options struct {
	// Name is this node's name; peers must dial it by this name.
	Name string
	// Secret is the shared cluster secret.
	Secret []byte
	// Handler returns the handler for a message kind that none was
	// registered for with Node.Handle, or nil. Optional.
	Handler func(kind string) cluster.HandlerFunc
	// Undelivered receives Sends that were queued but could not be
	// written because the peer's connection failed, besides the functions
	// registered with Node.OnUndelivered. Optional.
	Undelivered func(node, kind string, payload []byte)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// QueueLen is the per-peer outbound queue, in frames. Default 4096.
	QueueLen int
	// DialTimeout bounds one dial plus handshake. Default 3s.
	DialTimeout time.Duration
	// MaxBackoff caps the wait between failed dials to one peer, during
	// which Send fails at once with ErrNodeGone. Default 5s.
	MaxBackoff time.Duration
	// WriteTimeout bounds one batch write. Default 10s.
	WriteTimeout time.Duration
	// Plaintext sends links unencrypted (still authenticated). The
	// default is TLS 1.3 keyed by the secret; see tls.go.
	Plaintext bool
}

// Node is this node's end of all links. Methods are safe for concurrent use.
type Node struct {
	o      Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ln      net.Listener
	peers   map[string]*peer
	inbound map[net.Conn]struct{}
	closed  bool

	// TLS configurations; nil with Options.Plaintext. tlsErr is why they
	// could not be built.
	serverTLS, clientTLS *tls.Config
	tlsErr               error

	hmu         sync.RWMutex
	handlers    map[string]cluster.HandlerFunc
	undelivered []func(node, kind string, payload []byte)

	// Traffic counters, see Stats.
	framesSent, framesRecv, bytesSent, bytesRecv, sendFailures atomic.Uint64
	handlingNanos, slowHandlings                               atomic.Uint64
	kindNanos                                                  sync.Map // kind → *atomic.Uint64
}

// New returns a Node. Call Listen to accept peers.
func New(o Options) *Node {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 4096
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 3 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		o: o, log: o.Logger.With("part", "cluster.link"), ctx: ctx, cancel: cancel,
		peers: map[string]*peer{}, inbound: map[net.Conn]struct{}{},
		handlers: map[string]cluster.HandlerFunc{},
	}
	if !o.Plaintext {
		n.serverTLS, n.clientTLS, n.tlsErr = linkTLS(o.Secret)
	}
	return n
}

// Handle registers the handler for a message kind, replacing any other.
// Handlers may be registered at any time; a frame of a kind without a
// handler is logged and acknowledged (Send) or answered with
// cluster.ErrNoHandler (Call).
func (n *Node) Handle(kind string, h cluster.HandlerFunc) {
	n.hmu.Lock()
	n.handlers[kind] = h
	n.hmu.Unlock()
}

// Handler returns the handler for kind, or nil.
func (n *Node) Handler(kind string) cluster.HandlerFunc {
	n.hmu.RLock()
	h := n.handlers[kind]
	n.hmu.RUnlock()
	if h == nil && n.o.Handler != nil {
		h = n.o.Handler(kind)
	}
	return h
}

// OnUndelivered registers fn, run for each Send that was queued but could
// not be written to its node, or written but not acknowledged when the
// link died (possibly handled: a duplicate, never a loss).
func (n *Node) OnUndelivered(fn func(node, kind string, payload []byte)) {
	n.hmu.Lock()
	n.undelivered = append(n.undelivered, fn)
	n.hmu.Unlock()
}

func (n *Node) reportUndelivered(node, kind string, payload []byte) {
	n.hmu.RLock()
	fns := n.undelivered
	n.hmu.RUnlock()
	if n.o.Undelivered != nil {
		n.o.Undelivered(node, kind, payload)
	}
	for _, fn := range fns {
		fn(node, kind, payload)
	}
}

// Name is this node's name, as peers must dial it.
func (n *Node) Name() string { return n.o.Name }

// Addr returns the listener's address, or nil before Listen.
func (n *Node) Addr() net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln == nil {
		return nil
	}
	return n.ln.Addr()
}

// FromConfig makes a node's links from its cluster configuration: named
// after cluster.node_name (the host name when empty), keyed by
// cluster.secret, TLS unless cluster.plaintext_links, each dial bounded by
// cluster.operation_timeout. The node owns them: the cluster
// implementation tells them whom they reach (cluster/hazelcast's
// Options.Links), and the node closes them after the cluster stopped.
func FromConfig(cc conf.ClusterConfig, logger *slog.Logger) *Node {
	if cc.NodeName == "" {
		cc.NodeName, _ = os.Hostname()
	}
	if cc.OperationTimeout <= 0 {
		cc.OperationTimeout = 5 * time.Second
	}
	return New(Options{
		Name:        cc.NodeName,
		Secret:      []byte(cc.Secret),
		Plaintext:   cc.PlaintextLinks,
		Logger:      logger,
		DialTimeout: cc.OperationTimeout,
	})
}

// Listen accepts peers on addr and returns the bound address.
func (n *Node) Listen(addr string) (net.Addr, error) {
	if n.tlsErr != nil {
		return nil, fmt.Errorf("link: tls: %w", n.tlsErr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("link: listen %s: %w", addr, err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ln.Close()
		return nil, net.ErrClosed
	}
	n.ln = ln
	n.mu.Unlock()
	n.goFunc(func() { n.acceptLoop(ln) })
	return ln.Addr(), nil
}

func (n *Node) goFunc(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Close stops listening, closes every link and waits for its goroutines.
// Queued Sends go to Options.Undelivered; pending Calls fail.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	if n.ln != nil {
		n.ln.Close()
	}
	peers := n.peers
	n.peers = map[string]*peer{}
	for c := range n.inbound {
		c.Close()
	}
	n.mu.Unlock()
	n.cancel()
	for _, p := range peers {
		p.close()
	}
	n.wg.Wait()
	return nil
}

// Flush waits until every frame queued to any peer before the call has
// been acknowledged or reported undelivered, or ctx ends. A node that stops
// calls it before Close, so that what its sessions handed to other nodes
// on the way out arrives instead of coming back as undelivered.
func (n *Node) Flush(ctx context.Context) error {
	n.mu.Lock()
	peers := make([]*peer, 0, len(n.peers))
	targets := make([]uint64, 0, len(n.peers))
	for _, p := range n.peers {
		peers = append(peers, p)
		targets = append(targets, p.queued.Load())
	}
	n.mu.Unlock()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for i, p := range peers {
		for p.finished.Load() < targets[i] {
			select {
			case <-ctx.Done():
				return fmt.Errorf("link: flushing %q: %w", p.name, ctx.Err())
			case <-p.done:
			case <-t.C:
				continue
			}
			break
		}
	}
	return nil
}

// Forget closes the link to node, for example because it left the
// cluster: queued Sends go to Options.Undelivered, pending Calls fail
// with ErrNodeGone.
func (n *Node) Forget(node string) {
	n.mu.Lock()
	p := n.peers[node]
	delete(n.peers, node)
	n.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// Send queues a one-way message for node, listening on addr. It returns
// cluster.ErrNodeGone when the node cannot be reached, and the context's
// error (wrapped) when the queue stays full until ctx ends.
func (n *Node) Send(ctx context.Context, node, addr, kind string, payload []byte) error {
	return n.send(ctx, node, addr, kind, payload, nil)
}

// SendNotify is Send with a report: done(true) runs once node has
// acknowledged handling the message, done(false) when it was not written,
// or written but not acknowledged, before the link failed (then
// Options.Undelivered does not get it: the caller falls back itself). done
// runs on a link goroutine and must not block; it never runs when
// SendNotify returns an error.
func (n *Node) SendNotify(ctx context.Context, node, addr, kind string, payload []byte, done func(handled bool)) error {
	return n.send(ctx, node, addr, kind, payload, done)
}

// send queues a one-way frame; done, when set, is the report SendNotify
// describes.
func (n *Node) send(ctx context.Context, node, addr, kind string, payload []byte, done func(handled bool)) error {
	p, err := n.peer(ctx, node, addr)
	if err != nil {
		n.sendFailures.Add(1)
		return err
	}
	b := getBuf()
	if b.b, err = encode(b.b[:0], frameSend, 0, kind, payload); err != nil {
		putBuf(b)
		n.sendFailures.Add(1)
		return err
	}
	b.done = done
	if err := p.enqueue(ctx, b); err != nil {
		n.sendFailures.Add(1)
		return err
	}
	return nil
}

// Call sends a request to node and waits for the reply until ctx ends.
func (n *Node) Call(ctx context.Context, node, addr, kind string, payload []byte) ([]byte, error) {
	p, err := n.peer(ctx, node, addr)
	if err != nil {
		n.sendFailures.Add(1)
		return nil, err
	}
	id, ch := p.newCall()
	defer p.endCall(id)
	b := getBuf()
	if b.b, err = encode(b.b[:0], frameCall, id, kind, payload); err != nil {
		putBuf(b)
		n.sendFailures.Add(1)
		return nil, err
	}
	if err := p.enqueue(ctx, b); err != nil {
		n.sendFailures.Add(1)
		return nil, err
	}
	select {
	case r := <-ch:
		return r.payload, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("link: call %s to %q: %w", kind, node, ctx.Err())
	}
}

// peer returns the connected peer for node, dialling if needed.
func (n *Node) peer(ctx context.Context, node, addr string) (*peer, error) {
	if addr == "" {
		return nil, fmt.Errorf("link: %q has no link address: %w", node, cluster.ErrNodeGone)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, fmt.Errorf("link: closed: %w", cluster.ErrNodeGone)
	}
	p := n.peers[node]
	var old *peer
	if p != nil && p.addr != addr {
		old, p = p, nil
	}
	if p == nil {
		p = newPeer(n, node, addr)
		n.peers[node] = p
		n.goFunc(p.writeLoop)
	}
	n.mu.Unlock()
	if old != nil {
		old.close()
	}
	if err := p.ensureConn(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (n *Node) acceptLoop(ln net.Listener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (EMFILE...): back off a little.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			n.log.Warn("link accept failed", "err", err)
			select {
			case <-time.After(delay):
			case <-n.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			c.Close()
			return
		}
		n.inbound[c] = struct{}{}
		n.mu.Unlock()
		n.goFunc(func() { n.serveConn(c) })
	}
}

// closeAfterAck ends an inbound connection whose last acknowledgement was
// just written, so that the sender reads it: closing a socket with unread
// input (the frames the sender kept writing) makes the kernel send a
// reset, and a reset can discard the acknowledgement before the sender
// reads it (it would take handled frames for lost). So: end our side
// (FIN, or TLS close_notify), then read and drop what comes until the
// sender, having read the acknowledgement and the end, closes its side,
// for at most handBackDrain.
func closeAfterAck(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(handBackDrain))
	_, _ = io.Copy(io.Discard, c)
}

// handBackDrain bounds closeAfterAck's wait for the sender to close.
const handBackDrain = 5 * time.Second

// serveConn authenticates an inbound connection and runs its handlers.
func (n *Node) serveConn(c net.Conn) {
	raw := c // c becomes the tls.Conn over it
	defer func() {
		raw.Close()
		n.mu.Lock()
		delete(n.inbound, raw)
		n.mu.Unlock()
	}()
	var err error
	if n.serverTLS != nil {
		tc := tls.Server(c, n.serverTLS)
		ctx, cancel := context.WithTimeout(n.ctx, handshakeTimeout)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			n.log.Warn("link handshake refused", "remote", c.RemoteAddr().String(), "err", tlsAuthError(err))
			return
		}
		c = tc
	}
	from, err := serverHandshake(c, n.o.Secret, n.o.Name)
	if err != nil {
		n.log.Warn("link handshake refused", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	n.log.Debug("link accepted", "from", from, "remote", c.RemoteAddr().String())
	in := &inConn{c: c}
	fr := &frameReader{r: newReader(c)}
	var calls sync.WaitGroup
	defer calls.Wait()
	var handled, acked uint64
	for {
		if handled != acked && fr.r.Buffered() == 0 {
			// About to wait for more: acknowledge what was handled, once
			// per read batch rather than per frame.
			if !n.ack(in, handled) {
				return
			}
			acked = handled
		}
		f, err := fr.next()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				n.log.Debug("link closed", "from", from, "err", err)
			}
			return
		}
		n.countRecv(f)
		switch f.typ {
		case frameSend:
			h := n.Handler(f.kind)
			if h == nil {
				n.log.Warn("link message without handler", "from", from, "kind", f.kind)
				handled++
				continue
			}
			start := time.Now()
			_, err := h(n.ctx, from, f.payload)
			n.countHandling(f.kind, time.Since(start))
			if err != nil {
				if errors.Is(err, cluster.ErrHandBack) {
					// Acknowledge what came before, then close: this
					// frame and every later one on the connection go
					// back to the sender as undelivered.
					if handled != acked {
						n.ack(in, handled)
					}
					n.log.Debug("link handed a message back", "from", from, "kind", f.kind)
					closeAfterAck(c)
					return
				}
				n.log.Debug("link send handler failed", "from", from, "kind", f.kind, "err", err)
			}
			handled++
		case frameCall:
			handled++
			calls.Add(1)
			go func() {
				defer calls.Done()
				n.answer(in, from, f)
			}()
		default:
			n.log.Warn("link unexpected frame", "from", from, "type", f.typ)
			return
		}
	}
}

func (n *Node) answer(in *inConn, from string, f frame) {
	var reply []byte
	var err error
	h := n.Handler(f.kind)
	if h == nil {
		err = cluster.ErrNoHandler
	} else {
		reply, err = h(n.ctx, from, f.payload)
	}
	b := getBuf()
	defer putBuf(b)
	if err != nil {
		code := codeHandler
		if errors.Is(err, cluster.ErrNoHandler) {
			code = codeNoHandler
		}
		b.b, _ = encode(b.b[:0], frameError, f.id, "", append([]byte{code}, err.Error()...))
	} else if b.b, err = encode(b.b[:0], frameReply, f.id, "", reply); err != nil {
		b.b, _ = encode(b.b[:0], frameError, f.id, "", append([]byte{codeHandler}, err.Error()...))
	}
	in.mu.Lock()
	_ = in.c.SetWriteDeadline(time.Now().Add(n.o.WriteTimeout))
	w, werr := in.c.Write(b.b)
	in.mu.Unlock()
	n.bytesSent.Add(uint64(w))
	if werr != nil {
		in.c.Close()
		return
	}
	n.framesSent.Add(1)
}

// ack tells the sender that count frames were handled.
func (n *Node) ack(in *inConn, count uint64) bool {
	var b [headerLen]byte
	enc, _ := encode(b[:0], frameAck, count, "", nil)
	in.mu.Lock()
	defer in.mu.Unlock()
	_ = in.c.SetWriteDeadline(time.Now().Add(n.o.WriteTimeout))
	w, err := in.c.Write(enc)
	n.bytesSent.Add(uint64(w))
	if err != nil {
		in.c.Close()
		return false
	}
	n.framesSent.Add(1)
	return true
}

type inConn struct {
	mu sync.Mutex // serializes reply writes
	c  net.Conn
}

// Stats are counters for one Node (see cluster.LinkStats).
type Stats = cluster.LinkStats

// Stats returns current counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	peers := len(n.peers)
	n.mu.Unlock()
	return Stats{
		Peers:          peers,
		FramesSent:     n.framesSent.Load(),
		BytesSent:      n.bytesSent.Load(),
		FramesReceived: n.framesRecv.Load(),
		BytesReceived:  n.bytesRecv.Load(),
		SendFailures:   n.sendFailures.Load(),

		HandlingSeconds: time.Duration(n.handlingNanos.Load()).Seconds(),
		SlowHandlings:   n.slowHandlings.Load(),
		HandlingByKind:  n.handlingByKind(),
	}
}

func (n *Node) handlingByKind() map[string]float64 {
	m := map[string]float64{}
	n.kindNanos.Range(func(k, v any) bool {
		m[k.(string)] = time.Duration(v.(*atomic.Uint64).Load()).Seconds()
		return true
	})
	return m
}

// slowHandling is how long a Send handler may run before it counts as
// slow in LinkStats.
const slowHandling = 100 * time.Millisecond

// countHandling counts the time one Send handler held its connection's
// reader. Only kinds with a handler get here: the set is bounded.
func (n *Node) countHandling(kind string, d time.Duration) {
	n.handlingNanos.Add(uint64(d))
	c, ok := n.kindNanos.Load(kind)
	if !ok {
		c, _ = n.kindNanos.LoadOrStore(kind, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(uint64(d))
	if d > slowHandling {
		n.slowHandlings.Add(1)
	}
}

// countRecv counts one frame read.
func (n *Node) countRecv(f frame) {
	n.framesRecv.Add(1)
	n.bytesRecv.Add(uint64(headerLen + len(f.kind) + len(f.payload)))
}
