package c2s

import (
	"crypto/tls"
	"net"
	"sync"
	"syscall"
)

// An idle client session is mostly memory that waits: its reader goroutine
// parked in a read. Parked inside crypto/tls and encoding/xml that
// goroutine keeps an 8 KiB stack; parked directly on the socket's poller
// it needs a few hundred bytes, and the garbage collector shrinks the
// stack to 4 KiB. The reader may only wait on the socket when no layer
// above it holds bytes it has already read: the XML reader's buffer,
// crypto/tls's plaintext buffer, and crypto/tls's buffer of raw records.
// recordConn keeps the last one empty between records, and the transport
// tracks the other two (see TCPTransport.ReadElement).

// maxTLSRecord is the largest TLS record on the wire: a 5-byte header and
// at most 2^14 + 256 bytes of ciphertext (RFC 8446 section 5.2; TLS 1.2
// allows 2^14 + 2048).
const maxTLSRecord = 5 + 1<<14 + 2048

var recordBufPool = sync.Pool{New: func() any { b := make([]byte, maxTLSRecord); return &b }}

// recordConn sits between the socket and crypto/tls and never hands
// crypto/tls more than the rest of the current TLS record, so that once
// crypto/tls has read a record it has nothing of the next one buffered.
// What one socket read returned beyond the record waits in a pooled
// buffer, returned to the pool as soon as it is empty: an idle session
// holds none.
type recordConn struct {
	net.Conn
	buf  *[]byte // pooled; nil when nothing is buffered
	r, w int     // unread bytes are (*buf)[r:w]
	// Position in the record stream: hdr bytes of the current record's
	// header handed on so far (0..5), then body bytes of its body still to
	// hand on. hdr == 0 && body == 0 is a record boundary.
	hdr  int
	hdrb [5]byte
	body int
	// leadingSpace drops white space before the first record: a client
	// may end the plaintext stream with white space after <starttls/>
	// (go-xmpp writes a newline) that arrives after the server read the
	// element. A TLS record never starts with white space.
	leadingSpace bool
	// served is the certificate the server presented in the handshake on
	// this connection (channel.go), for tls-server-end-point.
	served *tls.Certificate
}

// RecordServed implements tlsutil.CertRecorder. The handshake runs before
// the reader reads served (handshake waits for it).
func (c *recordConn) RecordServed(cert *tls.Certificate) { c.served = cert }

func (c *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for c.buf == nil {
		c.buf = recordBufPool.Get().(*[]byte)
		n, err := c.Conn.Read(*c.buf)
		if n <= 0 {
			c.release()
			return 0, err
		}
		c.r, c.w = 0, n
		if c.leadingSpace {
			c.skipSpace()
		}
	}
	n := c.take(p)
	if c.r == c.w {
		c.release()
	}
	return n, nil
}

// skipSpace drops leading white space from the buffer (releasing it when
// nothing else is there) until the first byte of a record.
func (c *recordConn) skipSpace() {
	for c.r < c.w {
		switch (*c.buf)[c.r] {
		case ' ', '\t', '\r', '\n':
			c.r++
		default:
			c.leadingSpace = false
			return
		}
	}
	c.release()
}

// take copies buffered bytes to p, up to the end of the current record.
func (c *recordConn) take(p []byte) int {
	avail := (*c.buf)[c.r:c.w]
	n := 0
	for n < len(p) && len(avail) > 0 {
		if c.hdr < 5 {
			// Header bytes: copy them and learn the body length once all
			// five are seen.
			b := avail[0]
			c.hdrb[c.hdr] = b
			c.hdr++
			p[n] = b
			n++
			avail = avail[1:]
			if c.hdr == 5 {
				c.body = int(c.hdrb[3])<<8 | int(c.hdrb[4])
				if c.body == 0 {
					c.hdr = 0
					break
				}
			}
			continue
		}
		k := min(len(p)-n, len(avail), c.body)
		copy(p[n:], avail[:k])
		n += k
		avail = avail[k:]
		c.body -= k
		if c.body == 0 {
			c.hdr = 0
			break // the record is complete: never hand on the next one
		}
	}
	c.r = c.w - len(avail)
	return n
}

func (c *recordConn) release() {
	if c.buf != nil {
		recordBufPool.Put(c.buf)
		c.buf = nil
	}
}

// drained reports whether crypto/tls has been handed exactly whole
// records and nothing is buffered here.
func (c *recordConn) drained() bool { return c.buf == nil && c.hdr == 0 && c.body == 0 }

// waitReadable parks until the socket has something to read (or is closed,
// at EOF, or past its read deadline), without reading it.
func waitReadable(conn net.Conn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(peekReady)
}

// idleWaiter is a transport that can park its reader shallowly between
// elements (TCPTransport). The session turns it on once bound: during
// negotiation the reader waits a few round trips for a client that is
// busy logging in, and a shallow wait there only let the collector shrink
// the stack that the next step (crypto/tls, SQLite) grew again at once —
// about 5% of the server's CPU per login went to that shrinking and
// regrowing.
type idleWaiter interface{ setIdleWait(on bool) }

// enterBound moves the session to stateBound (bound by RFC 6120, XEP-0386
// or a resumption) and lets an idle reader park shallowly from now on.
func (s *Session) enterBound() {
	s.state = stateBound
	if w, ok := s.t.(idleWaiter); ok {
		w.setIdleWait(true)
	}
}
