package component

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/wire"
)

const (
	// queueLen bounds stanzas waiting for one connection's writer; past
	// it a stanza is bounced with resource-constraint.
	queueLen = 4096
	// writeTimeout bounds one write to a component.
	writeTimeout = 30 * time.Second
)

// conn is one authenticated component connection. Its reader (serve)
// routes what the component sends; its writer (writeLoop) is the only
// one to write to the socket after the handshake.
type conn struct {
	p      *Plugin
	nc     net.Conn
	domain string
	out    chan *wire.Element

	mu     sync.Mutex // guards closed and sending on out
	closed bool
	done   chan struct{} // closed by close: the writer stops

	writerDone chan struct{} // closed when the writer has returned
}

func (p *Plugin) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("component: accept", "err", err)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(nc)
		}()
	}
}

// serve runs one connection: the handshake, then the reader loop.
func (p *Plugin) serve(nc net.Conn) {
	defer nc.Close()
	log := p.log.With("remote", nc.RemoteAddr().String())
	_ = nc.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	rd := wire.NewReader(nc, wire.Limits{MaxStanzaBytes: p.host.Config().C2S.MaxStanzaBytes})
	fail := func(header bool, cond, why string) {
		log.Info("component: refused", "reason", why)
		var b strings.Builder
		if header {
			b.WriteString(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='` + NS + `' id='x'>`)
		}
		b.WriteString(wire.StreamError(cond, "").String())
		b.WriteString(`</stream:stream>`)
		_, _ = nc.Write([]byte(b.String()))
	}
	hdr, err := rd.Header()
	if err != nil {
		if cond := wire.StreamErrorFor(err); cond != "" {
			fail(true, cond, err.Error())
		}
		return
	}
	if hdr.Attr("xmlns") != NS {
		fail(true, "invalid-namespace", fmt.Sprintf("stream namespace %q", hdr.Attr("xmlns")))
		return
	}
	domain := wire.JIDOf(hdr.To()).String()
	secret, ok := p.cfg.Secrets[domain]
	if !ok {
		fail(true, "host-unknown", fmt.Sprintf("no component %q", hdr.To()))
		return
	}
	log = log.With("component", domain)
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	var hb strings.Builder
	hb.WriteString(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='` + NS + `' from='`)
	hb.WriteString(domain)
	hb.WriteString(`' id='` + id + `'>`)
	if _, err := nc.Write([]byte(hb.String())); err != nil {
		return
	}
	el, err := rd.Next()
	if err != nil {
		if cond := wire.StreamErrorFor(err); cond != "" {
			fail(false, cond, err.Error())
		}
		return
	}
	if el.Name != "handshake" {
		fail(false, "not-authorized", "first element is <"+el.Name+">, not <handshake/>")
		return
	}
	if !Handshake(id, secret, el.AllText()) {
		fail(false, "not-authorized", "wrong handshake")
		return
	}
	if _, err := nc.Write([]byte("<handshake/>")); err != nil {
		return
	}
	_ = nc.SetDeadline(time.Time{})
	c := &conn{p: p, nc: nc, domain: domain, out: make(chan *wire.Element, queueLen),
		done: make(chan struct{}), writerDone: make(chan struct{})}
	if !p.register(c) {
		fail(false, "system-shutdown", "stopping")
		return
	}
	log.Info("component connected")
	p.wg.Add(1)
	go c.writeLoop()
	reason := c.readLoop(rd)
	c.close(reason)
	p.unregister(c)
	log.Info("component disconnected", "reason", reason)
}

// Digest is the XEP-0114 handshake for a stream id and secret:
// hex(SHA-1(id + secret)).
func Digest(id, secret string) string {
	sum := sha1.Sum([]byte(id + secret))
	return hex.EncodeToString(sum[:])
}

// Handshake reports whether digest is Digest(id, secret), in either case.
func Handshake(id, secret, digest string) bool {
	want := Digest(id, secret)
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(strings.TrimSpace(digest)))) == 1
}

// readLoop routes the component's stanzas until the stream ends; it
// returns why.
func (c *conn) readLoop(rd *wire.Reader) string {
	ctx := context.Background()
	for {
		el, err := rd.Next()
		if err != nil {
			if errors.Is(err, wire.ErrStreamEnd) {
				c.writeRaw("</stream:stream>")
				return "closed by the component"
			}
			if cond := wire.StreamErrorFor(err); cond != "" {
				c.streamError(cond)
				return cond
			}
			return "connection lost: " + err.Error()
		}
		if !el.IsStanza() {
			c.streamError("unsupported-stanza-type")
			return "unsupported-stanza-type <" + el.Name + ">"
		}
		if el.NS() == NS {
			el.RemoveAttr("xmlns")
		}
		from := el.From()
		if from == "" {
			el.SetAttr("from", c.domain)
		} else if f := wire.JIDOf(from).Bare(); f != c.domain && !strings.HasSuffix(f, "@"+c.domain) {
			c.streamError("invalid-from")
			return "invalid-from " + from
		}
		if el.To() == "" {
			c.streamError("improper-addressing")
			return "stanza without to"
		}
		c.p.stats.received.Add(1)
		c.p.host.Route(ctx, el)
	}
}

// queue hands el to the writer.
func (c *conn) queue(el *wire.Element) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return wire.ErrRemoteServerTimeout
	}
	select {
	case c.out <- el:
		return nil
	default:
		return wire.ErrResourceConstraint
	}
}

// close stops the writer, which bounces what it did not write.
func (c *conn) close(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.done)
	_ = c.nc.SetReadDeadline(time.Now()) // ends the reader when we close first
}

func (c *conn) writeLoop() {
	defer c.p.wg.Done()
	defer close(c.writerDone)
	bw := bufio.NewWriter(c.nc)
	var batch []*wire.Element
	for {
		select {
		case el := <-c.out:
			batch = append(batch[:0], el)
			for len(batch) < 256 && len(c.out) > 0 { // what is queued goes out in one write
				batch = append(batch, <-c.out)
			}
			_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
			var err error
			for _, el := range batch {
				if err = wire.WriteElement(bw, el); err != nil {
					break
				}
			}
			if err == nil {
				err = bw.Flush()
			}
			if err == nil {
				c.p.stats.sent.Add(int64(len(batch)))
			}
			if err != nil {
				// The batch may be partly written: its senders hear that
				// it did not arrive, and the connection ends.
				c.p.log.Info("component: write failed", "component", c.domain, "err", err)
				for _, el := range batch {
					c.p.bounce(context.Background(), el, wire.ErrRemoteServerTimeout)
				}
				c.close("write failed")
				_ = c.nc.Close()
			}
		case <-c.done:
			// Nothing is queued after closed is set: bounce the rest.
			for {
				select {
				case el := <-c.out:
					c.p.bounce(context.Background(), el, wire.ErrRemoteServerTimeout)
				default:
					return
				}
			}
		}
	}
}

// writeRaw ends the connection with s: it stops the writer, waits until
// it has finished, then writes.
func (c *conn) writeRaw(s string) {
	c.close("ending")
	<-c.writerDone
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.nc.Write([]byte(s))
}

func (c *conn) streamError(cond string) {
	c.writeRaw(wire.StreamError(cond, "").String() + "</stream:stream>")
}
