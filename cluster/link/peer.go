package link

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

const (
	maxBatchFrames = 256
	maxBatchBytes  = 1 << 20
)

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, 64<<10) }

type result struct {
	payload []byte
	err     error
}

// peer is the outbound side of the link to one node.
type peer struct {
	n          *Node
	name, addr string
	q          chan *buf
	done       chan struct{}
	closeOnce  sync.Once

	// qmu: enqueuers hold it shared, close takes it exclusively, so no
	// frame enters q after the writer's final drain.
	qmu    sync.RWMutex
	closed bool

	conn   atomic.Pointer[outConn]
	dialMu sync.Mutex // one dial at a time; guards downUntil, backoff

	downUntil time.Time
	backoff   time.Duration

	mu     sync.Mutex // guards calls
	calls  map[uint64]chan result
	nextID atomic.Uint64

	// queued counts frames ever queued, finished those acknowledged or
	// reported undelivered: Flush waits until finished reaches what queued
	// was when it started (later traffic does not hold it up).
	queued, finished atomic.Uint64
}

// outConn is one outbound connection. Written frames stay in unacked
// until the receiver acknowledges them; if the connection dies first they
// are reported undelivered (they may or may not have been handled: a
// possible duplicate, never a silent loss).
type outConn struct {
	p  *peer
	c  net.Conn
	bw *bufio.Writer // over c when it is TLS; nil writes v directly

	mu       sync.Mutex
	unacked  []*buf // written, not yet acknowledged, oldest first
	acked    uint64 // frames acknowledged so far
	failed   bool
	progress chan struct{} // signalled on each ack and on failure

	doneScratch []func(bool) // onAck's, reused (only readLoop calls it)
}

// maxUnacked bounds the frames written but not yet acknowledged; past it
// the writer waits for acks (flow control on top of TCP's).
const maxUnacked = 8192

func newPeer(n *Node, name, addr string) *peer {
	return &peer{
		n: n, name: name, addr: addr,
		q:     make(chan *buf, n.o.QueueLen),
		done:  make(chan struct{}),
		calls: map[uint64]chan result{},
	}
}

func (p *peer) gone(format string, args ...any) error {
	return fmt.Errorf("link: %q: %s: %w", p.name, fmt.Sprintf(format, args...), cluster.ErrNodeGone)
}

// ensureConn makes sure a connection is up, dialling when needed. While a
// failed dial's backoff lasts it fails at once.
func (p *peer) ensureConn(ctx context.Context) error {
	if p.conn.Load() != nil {
		return nil
	}
	select {
	case <-p.done:
		return p.gone("link closed")
	default:
	}
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	if p.conn.Load() != nil {
		return nil
	}
	if now := time.Now(); now.Before(p.downUntil) {
		return p.gone("unreachable for another %v", p.downUntil.Sub(now).Round(time.Millisecond))
	}
	return p.dialLocked(ctx)
}

// dialLocked dials and authenticates; p.dialMu must be held.
func (p *peer) dialLocked(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, p.n.o.DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", p.addr)
	if err == nil && p.n.clientTLS != nil {
		tc := tls.Client(c, p.n.clientTLS)
		if err = tc.HandshakeContext(dctx); err != nil {
			c.Close()
			err = tlsAuthError(err)
		} else {
			c = tc
		}
	} else if err == nil && p.n.tlsErr != nil {
		c.Close()
		err = fmt.Errorf("link: tls: %w", p.n.tlsErr)
	}
	if err == nil {
		if dl, ok := dctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		err = clientHandshake(c, p.n.o.Secret, p.n.o.Name, p.name)
		if err != nil {
			c.Close()
		} else {
			_ = c.SetDeadline(time.Time{})
		}
	}
	if err != nil {
		p.backoff = min(max(2*p.backoff, 100*time.Millisecond), p.n.o.MaxBackoff)
		p.downUntil = time.Now().Add(p.backoff)
		p.n.log.Warn("link dial failed", "node", p.name, "addr", p.addr, "retry_in", p.backoff, "err", err)
		if errors.Is(err, ErrAuth) {
			return fmt.Errorf("link: %q: %w: %w", p.name, cluster.ErrNodeGone, err)
		}
		return p.gone("dial %s: %v", p.addr, err)
	}
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlivePeriod(15 * time.Second)
	}
	p.backoff, p.downUntil = 0, time.Time{}
	oc := &outConn{p: p, c: c, progress: make(chan struct{}, 1)}
	if raw != c {
		// A batch's frames go into full TLS records, not one record and
		// one write per frame (net.Buffers only gathers on a socket).
		oc.bw = bufio.NewWriterSize(c, 64<<10)
	}
	p.conn.Store(oc)
	select {
	case <-p.done:
		// Closed while dialling: do not leak the connection.
		p.connFailed(oc)
		return p.gone("link closed")
	default:
	}
	p.n.goFunc(func() { p.readLoop(oc) })
	p.n.log.Debug("link up", "node", p.name, "addr", p.addr)
	return nil
}

func (p *peer) enqueue(ctx context.Context, b *buf) error {
	p.qmu.RLock()
	defer p.qmu.RUnlock()
	if p.closed {
		putBuf(b)
		return p.gone("link closed")
	}
	p.queued.Add(1) // before the writer can see it: finished never runs ahead
	select {
	case p.q <- b:
		return nil
	default:
	}
	select {
	case p.q <- b:
		return nil
	case <-ctx.Done():
		p.finished.Add(1)
		putBuf(b)
		return fmt.Errorf("link: queue to %q full: %w", p.name, ctx.Err())
	case <-p.done:
		p.finished.Add(1)
		putBuf(b)
		return p.gone("link closed")
	}
}

func (p *peer) close() {
	p.closeOnce.Do(func() {
		close(p.done)
		p.qmu.Lock()
		p.closed = true
		p.qmu.Unlock()
		if oc := p.conn.Load(); oc != nil {
			p.connFailed(oc)
		}
		p.failCalls()
	})
}

// writeLoop writes queued frames in batches until the peer is closed.
func (p *peer) writeLoop() {
	batch := make([]*buf, 0, maxBatchFrames)
	base := make(net.Buffers, 0, maxBatchFrames)
	defer func() {
		// Closed: whatever is still queued was never written.
		for {
			select {
			case b := <-p.q:
				batch = append(batch, b)
			default:
				p.undeliver(batch)
				return
			}
		}
	}()
	for {
		batch = batch[:0]
		select {
		case b := <-p.q:
			batch = append(batch, b)
		case <-p.done:
			return
		}
		size := len(batch[0].b)
	gather:
		for len(batch) < maxBatchFrames && size < maxBatchBytes {
			select {
			case b := <-p.q:
				batch = append(batch, b)
				size += len(b.b)
			default:
				break gather
			}
		}
		oc := p.conn.Load()
		if oc == nil {
			// The connection broke after these were queued: one redial.
			p.dialMu.Lock()
			if oc = p.conn.Load(); oc == nil {
				ctx, cancel := context.WithTimeout(p.n.ctx, p.n.o.DialTimeout)
				if p.dialLocked(ctx) == nil {
					oc = p.conn.Load()
				}
				cancel()
			}
			p.dialMu.Unlock()
		}
		if oc == nil {
			p.undeliver(batch)
			batch = batch[:0]
			p.failCalls()
			continue
		}
		if !p.waitAcks(oc) {
			p.undeliver(batch)
			continue
		}
		v := base[:0]
		for _, b := range batch {
			v = append(v, b.b)
		}
		// Count the batch as unacked before writing: an ack may come back
		// before WriteTo returns.
		oc.mu.Lock()
		failed := oc.failed
		if !failed {
			oc.unacked = append(oc.unacked, batch...)
		}
		oc.mu.Unlock()
		if failed {
			p.undeliver(batch)
			continue
		}
		_ = oc.c.SetWriteDeadline(time.Now().Add(p.n.o.WriteTimeout))
		w, err := oc.write(v)
		p.n.bytesSent.Add(uint64(w))
		if err == nil {
			p.n.framesSent.Add(uint64(len(batch)))
		}
		clear(base[:len(batch)])
		n := len(batch)
		clear(batch) // owned by oc.unacked now
		if err != nil {
			p.n.log.Warn("link write failed", "node", p.name, "frames", n, "err", err)
			p.connFailed(oc) // reports the unacked frames, this batch included
		}
	}
}

// waitAcks blocks while too many frames are unacknowledged. It gives up,
// failing the connection, when no ack arrives for WriteTimeout.
func (p *peer) waitAcks(oc *outConn) bool {
	for {
		oc.mu.Lock()
		n, failed := len(oc.unacked), oc.failed
		oc.mu.Unlock()
		if failed {
			return false
		}
		if n < maxUnacked {
			return true
		}
		t := time.NewTimer(p.n.o.WriteTimeout)
		select {
		case <-oc.progress:
			t.Stop()
		case <-t.C:
			p.n.log.Warn("link peer stopped acknowledging", "node", p.name, "unacked", n)
			p.connFailed(oc)
			return false
		case <-p.done:
			t.Stop()
			return false
		}
	}
}

// onAck releases the frames the receiver has handled.
func (oc *outConn) onAck(count uint64) {
	oc.mu.Lock()
	k := int(count - oc.acked)
	if count < oc.acked || k > len(oc.unacked) {
		k = len(oc.unacked) // cannot happen with a sane peer
	}
	done := oc.doneScratch[:0]
	for i := 0; i < k; i++ {
		if d := oc.unacked[i].done; d != nil {
			done = append(done, d)
		}
		putBuf(oc.unacked[i])
		oc.unacked[i] = nil
	}
	oc.unacked = oc.unacked[k:]
	oc.acked = count
	oc.mu.Unlock()
	for _, d := range done {
		d(true)
	}
	clear(done)
	oc.doneScratch = done[:0]
	if oc.p != nil {
		oc.p.finished.Add(uint64(k))
	}
	select {
	case oc.progress <- struct{}{}:
	default:
	}
}

// undeliver reports the Sends in batch (to their done function, or to
// Options.Undelivered) and recycles the buffers.
func (p *peer) undeliver(batch []*buf) {
	p.finished.Add(uint64(len(batch)))
	for i, b := range batch {
		if f, ok := parseEncoded(b.b); ok && f.typ == frameSend {
			p.n.sendFailures.Add(1)
			if b.done != nil {
				b.done(false)
			} else {
				p.n.reportUndelivered(p.name, f.kind, append([]byte(nil), f.payload...))
			}
		}
		putBuf(b)
		batch[i] = nil
	}
}

func parseEncoded(b []byte) (frame, bool) {
	if len(b) < headerLen {
		return frame{}, false
	}
	klen := int(b[13])
	if headerLen+klen > len(b) {
		return frame{}, false
	}
	return frame{typ: b[4], kind: string(b[headerLen : headerLen+klen]), payload: b[headerLen+klen:]}, true
}

// readLoop reads replies on an outbound connection.
func (p *peer) readLoop(oc *outConn) {
	fr := &frameReader{r: newReader(oc.c)}
	for {
		f, err := fr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.n.log.Debug("link read failed", "node", p.name, "err", err)
			}
			p.connFailed(oc)
			return
		}
		p.n.countRecv(f)
		var res result
		switch f.typ {
		case frameAck:
			oc.onAck(f.id)
			continue
		case frameReply:
			res.payload = f.payload
		case frameError:
			res.err = remoteError(p.name, f.payload)
		default:
			p.n.log.Warn("link unexpected frame", "node", p.name, "type", f.typ)
			p.connFailed(oc)
			return
		}
		p.mu.Lock()
		ch := p.calls[f.id]
		delete(p.calls, f.id)
		p.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	}
}

func remoteError(node string, payload []byte) error {
	if len(payload) > 0 && payload[0] == codeNoHandler {
		return fmt.Errorf("link: %q: %w", node, cluster.ErrNoHandler)
	}
	msg := ""
	if len(payload) > 1 {
		msg = string(payload[1:])
	}
	return &RemoteError{Node: node, Msg: msg}
}

// RemoteError is an error a Call handler returned on the other node.
type RemoteError struct {
	Node, Msg string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("link: node %q: %s", e.Node, e.Msg) }

// connFailed drops oc if it is still current, fails pending calls and
// reports the Sends it had written without acknowledgement.
func (p *peer) connFailed(oc *outConn) {
	if p.conn.CompareAndSwap(oc, nil) {
		p.failCalls()
	}
	oc.c.Close()
	oc.mu.Lock()
	lost := oc.unacked
	oc.unacked = nil
	oc.failed = true
	oc.mu.Unlock()
	select {
	case oc.progress <- struct{}{}:
	default:
	}
	p.undeliver(lost)
}

func (p *peer) newCall() (uint64, chan result) {
	id := p.nextID.Add(1)
	ch := make(chan result, 1)
	p.mu.Lock()
	p.calls[id] = ch
	p.mu.Unlock()
	return id, ch
}

func (p *peer) endCall(id uint64) {
	p.mu.Lock()
	delete(p.calls, id)
	p.mu.Unlock()
}

func (p *peer) failCalls() {
	p.mu.Lock()
	calls := p.calls
	p.calls = map[uint64]chan result{}
	p.mu.Unlock()
	for _, ch := range calls {
		ch <- result{err: p.gone("connection lost")}
	}
}

// write writes one batch: one writev on a plain socket, full TLS records
// through the buffer otherwise.
func (oc *outConn) write(v net.Buffers) (int64, error) {
	if oc.bw == nil {
		return v.WriteTo(oc.c)
	}
	var w int64
	for _, b := range v {
		n, err := oc.bw.Write(b)
		w += int64(n)
		if err != nil {
			return w, err
		}
	}
	return w, oc.bw.Flush()
}
