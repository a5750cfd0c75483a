package c2s

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// DefaultWriteTimeout bounds one batch written to a TCP client.
const DefaultWriteTimeout = 30 * time.Second

// writeChunk is the size at which a batch is split into another buffer of
// the writev.
const writeChunk = 32 << 10

// TCPTransport is the Transport of a TCP client stream, with STARTTLS or
// direct TLS (XEP-0368).
type TCPTransport struct {
	raw    net.Conn
	conn   net.Conn // raw, or the tls.Conn over it
	secure bool
	direct bool // accepted on the direct-TLS listener
	lim    wire.Limits
	rd     *wire.Reader
	onAct  func()

	writeTimeout time.Duration
	headerSent   bool
	// header holds our stream header from OpenStream until the Write that
	// follows it (the features) or Close, so both leave in one TCP write:
	// two writes, and two reads by the client, fewer per login.
	header *bytes.Buffer
	// tlsFresh is true from the TLS handshake until the first stream
	// header after it, which is written on its own (see OpenStream).
	tlsFresh bool
	// idleWait: ReadElement parks shallowly when nothing is buffered (see
	// idlewait.go); set once the session is bound.
	idleWait bool
	peeked   [1]byte // a byte read while waiting idle, not yet parsed
	hasPeek  bool
	// rec is under the tls.Conn (nil on a plaintext stream); tlsDrained
	// is true when crypto/tls's plaintext buffer is known to be empty:
	// its last Read returned less than asked for.
	rec        *recordConn
	tlsDrained bool
	closeOnce  sync.Once
	bufs       net.Buffers
	chunks     []*bytes.Buffer
}

var _ Transport = (*TCPTransport)(nil)

// NewTCPTransport wraps an accepted connection. secure is true for a
// direct-TLS connection (conn is then a *tls.Conn, handshake done or not).
func NewTCPTransport(conn net.Conn, secure bool, lim wire.Limits) *TCPTransport {
	t := &TCPTransport{raw: conn, conn: conn, secure: secure, direct: secure, lim: lim, writeTimeout: DefaultWriteTimeout}
	t.newReader()
	return t
}

func (t *TCPTransport) newReader() {
	t.hasPeek = false
	t.rd = wire.NewReader(peekReader{t}, t.lim)
	t.rd.SetOnFill(t.activity)
}

// peekReader feeds the XML reader: first the byte ReadElement waited for,
// then the connection.
type peekReader struct{ t *TCPTransport }

func (p peekReader) Read(b []byte) (int, error) {
	if p.t.hasPeek && len(b) > 0 {
		b[0] = p.t.peeked[0]
		p.t.hasPeek = false
		return 1, nil
	}
	n, err := p.t.conn.Read(b)
	p.t.tlsDrained = n < len(b)
	return n, err
}

func (t *TCPTransport) activity() {
	if t.onAct != nil {
		t.onAct()
	}
}

func (t *TCPTransport) setIdleWait(on bool) { t.idleWait = on }

// SetActivityHook implements Transport.
func (t *TCPTransport) SetActivityHook(fn func()) { t.onAct = fn }

// ReadHeader implements Transport.
func (t *TCPTransport) ReadHeader() (*wire.Element, error) { return t.rd.Header() }

// ReadElement implements Transport.
//
// Once the session is bound (setIdleWait), when nothing is buffered
// anywhere above the socket it first waits for the socket to become
// readable, a few frames deep instead of deep inside crypto/tls and
// encoding/xml, so that the garbage collector can shrink an idle
// session's reader stack (see idlewait.go). When crypto/tls may still
// hold plaintext it waits for one byte outside the XML parser instead.
func (t *TCPTransport) ReadElement() (*wire.Element, error) {
	if t.idleWait && !t.hasPeek && t.rd.Buffered() == 0 {
		if t.socketIsAll() {
			waitReadable(t.raw)
			return t.rd.Next()
		}
		n, err := t.conn.Read(t.peeked[:])
		if n == 1 {
			t.hasPeek = true
		} else if err != nil {
			return nil, err
		}
	}
	return t.rd.Next()
}

// socketIsAll reports whether every byte the client sent that was read is
// parsed: the next byte can only come from the socket.
func (t *TCPTransport) socketIsAll() bool {
	if t.conn == t.raw {
		return true
	}
	return t.rec != nil && t.tlsDrained && t.rec.drained()
}

// SetMaxStanzaBytes bounds the elements read from now on (see
// stanzaLimiter), also on the reader made after STARTTLS.
func (t *TCPTransport) SetMaxStanzaBytes(n int) {
	t.lim.MaxStanzaBytes = n
	t.rd.SetMaxStanzaBytes(n)
}

// Restart implements Transport.
func (t *TCPTransport) Restart() { t.rd.Restart() }

// Secure implements Transport.
func (t *TCPTransport) Secure() bool { return t.secure }

// CanStartTLS implements Transport.
func (t *TCPTransport) CanStartTLS() bool { return !t.secure }

// StartTLS implements Transport.
func (t *TCPTransport) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if cfg == nil {
		return ErrNoTLS
	}
	// White space may follow <starttls/> (go-xmpp sends a newline): it
	// lies between elements. Any other byte is data the client sent
	// before the handshake (RFC 6120 §5.4.3.3). White space that arrives
	// after this read is dropped by recordConn.
	if t.rd.SkipSpace() > 0 {
		return ErrBufferedBeforeTLS
	}
	rec := &recordConn{Conn: t.raw, leadingSpace: true}
	tc := tls.Server(rec, cfg)
	if err := handshake(ctx, tc); err != nil {
		return err
	}
	t.conn, t.rec, t.tlsDrained = tc, rec, true
	t.secure = true
	t.headerSent = false
	t.tlsFresh = true
	t.newReader()
	return nil
}

// RemoteAddr implements Transport: the IP address without the port.
func (t *TCPTransport) RemoteAddr() string {
	a := t.raw.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return a
}

// Conn returns the current connection (the tls.Conn once encrypted).
func (t *TCPTransport) Conn() net.Conn { return t.conn }

// OpenStream implements Transport. The header waits for the next Write
// or Close, except the first one after a TLS handshake: Smack 4.5's NIO
// client (ModularXmppClientToServerConnection) can leave the first record
// after the handshake unprocessed until more data arrives, and stalled
// waiting for the features in about half of the full SINT runs when
// header and features came in that one record.
func (t *TCPTransport) OpenStream(h StreamHeader) error {
	if t.tlsFresh {
		t.tlsFresh = false
		buf := wire.GetBuffer()
		defer wire.PutBuffer(buf)
		writeHeader(buf, h)
		t.headerSent = true
		return t.writeBuffers(net.Buffers{buf.Bytes()})
	}
	if t.header == nil {
		t.header = wire.GetBuffer()
	}
	t.header.Reset()
	writeHeader(t.header, h)
	t.headerSent = true
	return nil
}

// takeHeader returns the header OpenStream left for the next write, or nil.
func (t *TCPTransport) takeHeader() *bytes.Buffer {
	h := t.header
	t.header = nil
	return h
}

func writeHeader(buf *bytes.Buffer, h StreamHeader) {
	buf.WriteString("<?xml version='1.0'?><stream:stream xmlns='" + wire.NSClient +
		"' xmlns:stream='" + wire.NSStream + "'")
	for _, a := range [...][2]string{{"id", h.ID}, {"from", h.From}, {"version", h.Version}, {"xml:lang", h.Lang}, {"to", h.To}} {
		if a[1] == "" {
			continue
		}
		buf.WriteString(" " + a[0] + "='")
		wire.EscapeAttr(buf, a[1])
		buf.WriteByte('\'')
	}
	buf.WriteByte('>')
}

// Write implements Transport: the batch is serialized into pooled chunks
// and written with one writev (one TLS write per chunk when encrypted).
func (t *TCPTransport) Write(els []*wire.Element) error {
	if len(els) == 0 && t.header == nil {
		return nil
	}
	cur := t.takeHeader()
	if cur == nil {
		cur = wire.GetBuffer()
	}
	t.chunks = append(t.chunks[:0], cur)
	for _, el := range els {
		if cur.Len() >= writeChunk {
			cur = wire.GetBuffer()
			t.chunks = append(t.chunks, cur)
		}
		el.WriteTo(cur)
	}
	t.bufs = t.bufs[:0]
	for _, c := range t.chunks {
		t.bufs = append(t.bufs, c.Bytes())
	}
	err := t.writeBuffers(t.bufs)
	for i, c := range t.chunks {
		wire.PutBuffer(c)
		t.chunks[i] = nil
	}
	clear(t.bufs)
	t.chunks, t.bufs = t.chunks[:0], t.bufs[:0]
	if cap(t.chunks) > 8 {
		t.chunks, t.bufs = nil, nil
	}
	return err
}

func (t *TCPTransport) writeBuffers(b net.Buffers) error {
	if err := t.conn.SetWriteDeadline(time.Now().Add(t.writeTimeout)); err != nil {
		return err
	}
	_, err := b.WriteTo(t.conn)
	return err
}

// Close implements Transport.
func (t *TCPTransport) Close(streamErr *wire.Element) error {
	var err error
	t.closeOnce.Do(func() {
		buf := t.takeHeader()
		if buf == nil {
			buf = wire.GetBuffer()
		}
		if !t.headerSent && streamErr != nil {
			writeHeader(buf, StreamHeader{Version: "1.0", ID: randomID(8)})
		}
		if streamErr != nil {
			streamErr.WriteTo(buf)
		}
		buf.WriteString("</stream:stream>")
		_ = t.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = t.conn.Write(buf.Bytes())
		wire.PutBuffer(buf)
		if tc, ok := t.conn.(*tls.Conn); ok {
			// Skip the close_notify wait: the deadline above bounds it.
			err = tc.Close()
		} else {
			err = t.conn.Close()
		}
		_ = t.raw.Close()
	})
	return err
}
