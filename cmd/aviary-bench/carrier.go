package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// Transports a session can use (-transports).
const (
	transportTCP       = "tcp"       // STARTTLS on the c2s port
	transportWebSocket = "websocket" // RFC 7395 on the HTTP listener, /xmpp-websocket
	transportBOSH      = "bosh"      // XEP-0124/0206 on the HTTP listener, /http-bind
)

// carrier carries one XMPP stream: TCP with STARTTLS, a WebSocket or a
// BOSH session. The XMPP above it (SASL, bind, stream management) is the
// same for all three.
type carrier interface {
	// header waits for the server's stream header (TCP), <open/>
	// (WebSocket) or session creation answer (BOSH).
	header() error
	// next returns the next top-level element the server sent.
	next() (*wire.Element, error)
	// restart opens a new stream on the same carrier after SASL success;
	// header is next.
	restart(domain string) error
	// write sends raw XML: one or more complete top-level elements. Safe
	// for concurrent use; bounded by the carrier's write timeout.
	write(b []byte) error
	// end closes the stream cleanly, then the carrier, without waiting.
	end()
	// abort closes at once; a blocked next returns.
	abort()
	// setDeadline bounds reads and writes until cleared (zero time).
	setDeadline(t time.Time)
}

// tcpCarrier is a TCP connection after STARTTLS.
type tcpCarrier struct {
	raw     net.Conn
	tls     *tls.Conn
	r       *wire.Reader
	timeout time.Duration
	wmu     sync.Mutex
}

func (c *tcpCarrier) header() error {
	_, err := c.r.Header()
	return err
}

func (c *tcpCarrier) next() (*wire.Element, error) { return c.r.Next() }

func (c *tcpCarrier) restart(domain string) error {
	c.r.Restart()
	return c.write([]byte(streamHeader(domain)))
}

func (c *tcpCarrier) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.timeout > 0 {
		c.tls.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	_, err := c.tls.Write(b)
	return err
}

func (c *tcpCarrier) end() {
	c.wmu.Lock()
	c.tls.SetWriteDeadline(time.Now().Add(time.Second))
	c.tls.Write([]byte("</stream:stream>"))
	c.wmu.Unlock()
	c.raw.Close()
}

func (c *tcpCarrier) abort()                  { c.raw.Close() }
func (c *tcpCarrier) setDeadline(t time.Time) { c.raw.SetDeadline(t) }

// dialTLS opens a TCP stream, negotiates STARTTLS and reads the features
// of the encrypted stream.
func dialTLS(ctx context.Context, o dialOptions) (*conn, error) {
	// No TCP keepalive: a benchmark connection lives for one run, and
	// turning it on costs three setsockopt calls per connection.
	d := net.Dialer{Timeout: o.Timeout, KeepAlive: -1}
	raw, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	tc := &tcpCarrier{raw: raw, timeout: o.Timeout}
	c := &conn{car: tc, transport: transportTCP}
	ok := false
	defer func() {
		if !ok {
			raw.Close()
		}
	}()
	if dl, has := ctx.Deadline(); has {
		raw.SetDeadline(dl)
	}
	if _, err := raw.Write([]byte(streamHeader(o.Domain))); err != nil {
		return nil, fmt.Errorf("stream header: %w", err)
	}
	tc.r = wire.NewReader(raw, wire.Limits{})
	if err := c.readFeatures(); err != nil {
		return nil, err
	}
	if c.features.Child("starttls", nsTLS) == nil {
		return nil, errNoTLS
	}
	if _, err := raw.Write([]byte("<starttls xmlns='" + nsTLS + "'/>")); err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	el, err := tc.r.Next()
	if err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	if el.LocalName() != "proceed" {
		return nil, fmt.Errorf("starttls: got <%s/>", el.Name)
	}
	tc.tls = tls.Client(raw, clientTLSConfig(o))
	if err := tc.tls.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if tc.tls.ConnectionState().DidResume {
		tlsResumed.Add(1)
	}
	tc.r = wire.NewReader(tc.tls, wire.Limits{})
	if err := c.restart(o.Domain); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// ready is called once the session is logged in and has its stream
// set up: a BOSH session starts pausing between polls (-bosh-pause).
func (c *conn) ready(cfg *Config) {
	if b, ok := c.car.(*boshCarrier); ok && cfg.BOSHPause > 0 {
		b.setPause(cfg.BOSHPause)
	}
}

// dial opens a stream over the transport o names, up to the features of
// a stream ready for authentication.
func dial(ctx context.Context, o dialOptions) (*conn, error) {
	switch o.Transport {
	case transportWebSocket:
		return dialWebSocket(ctx, o)
	case transportBOSH:
		return dialBOSH(ctx, o)
	}
	return dialTLS(ctx, o)
}

// splitElements returns the top-level elements in b (raw XML the tool
// wrote), each on its own and with stanzas in jabber:client: a WebSocket
// message carries exactly one element (RFC 7395 §3.3.3), and a BOSH body's
// children would otherwise be in its namespace.
func splitElements(b []byte) ([][]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("<x xmlns='jabber:client'>")
	buf.Write(b)
	buf.WriteString("</x>")
	root, err := wire.Parse(buf.Bytes(), wire.Limits{})
	if err != nil {
		return nil, fmt.Errorf("aviary-bench: cannot split what it writes: %w", err)
	}
	out := make([][]byte, 0, len(root.Children))
	for _, el := range root.Children {
		if el.Attr("xmlns") == "" {
			switch el.Name {
			case "message", "presence", "iq":
				el.SetAttr("xmlns", "jabber:client")
			}
		}
		out = append(out, el.Bytes())
	}
	return out, nil
}

// httpBase turns a dispatcher or -http entry into a base URL.
func httpBase(s string) string {
	s = strings.TrimRight(s, "/")
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return s
}
