// Package websocket is the WebSocket connector: XMPP over WebSocket as
// RFC 7395 specifies. A Handler accepts connections that speak the "xmpp"
// subprotocol (others are refused before the upgrade) and hands each one,
// as a Conn, to the c2s core, which runs the same session as for TCP.
//
// Framing: the stream opens with <open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>
// and ends with <close/>; every WebSocket message carries exactly one
// complete top-level element. Incoming messages are parsed with wire.Parse
// under the stanza size limit; each outgoing element is written as its own
// text message with its namespaces declared (xmlns='jabber:client' on
// stanzas, xmlns:stream on stream:features and stream:error), because a
// message has no enclosing stream element to inherit them from.
package websocket

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/server/tlsutil"
	"github.com/aviary-im/aviary/wire"
	ws "github.com/coder/websocket"
)

// Subprotocol is the WebSocket subprotocol RFC 7395 registers.
const Subprotocol = "xmpp"

// Errors of this package.
var (
	// ErrClosed means the connection was closed.
	ErrClosed = errors.New("websocket: connection closed")
	// ErrUnexpectedOpen means an <open/> arrived where a stanza was due; it
	// wraps wire.ErrBadFormat, so the stream ends with bad-format.
	ErrUnexpectedOpen = fmt.Errorf("websocket: unexpected <open/>: %w", wire.ErrBadFormat)
)

// Options configure a Handler.
type Options struct {
	// Domain is the XMPP domain.
	Domain string
	// MaxStanzaBytes bounds one message; a bigger one ends the stream with
	// policy-violation. Default wire.DefaultMaxStanzaBytes.
	MaxStanzaBytes int
	// PingInterval is how often the server pings. Zero disables.
	PingInterval time.Duration
	// PongTimeout is how long a pong may take before the connection is
	// closed as dead. Default PingInterval.
	PongTimeout time.Duration
	// WriteTimeout bounds one message write. Default 10s.
	WriteTimeout time.Duration
	// CORSOrigins are the origins browsers may connect from ("*": any).
	// Empty means the Origin must match the Host, the library's default.
	CORSOrigins []string
	// OnConn runs the XMPP stream of a new connection and returns when it is
	// over (c2s.Server.Serve through an adapter).
	OnConn func(ctx context.Context, c *Conn)
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Handler serves the WebSocket endpoint.
type Handler struct {
	opts Options
	acc  *ws.AcceptOptions
}

// NewHandler returns a Handler.
func NewHandler(opts Options) *Handler {
	if opts.MaxStanzaBytes <= 0 {
		opts.MaxStanzaBytes = wire.DefaultMaxStanzaBytes
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.PongTimeout <= 0 {
		opts.PongTimeout = opts.PingInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	acc := &ws.AcceptOptions{Subprotocols: []string{Subprotocol}}
	for _, o := range opts.CORSOrigins {
		if o == "*" {
			acc.InsecureSkipVerify = true
			break
		}
		if u, err := url.Parse(o); err == nil && u.Host != "" {
			acc.OriginPatterns = append(acc.OriginPatterns, u.Host)
		}
	}
	return &Handler{opts: opts, acc: acc}
}

// OffersXMPP reports whether the request asks for the xmpp subprotocol.
func OffersXMPP(r *http.Request) bool {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if strings.TrimSpace(p) == Subprotocol {
				return true
			}
		}
	}
	return false
}

// ServeHTTP upgrades the request; secure is whether the connection counts
// as encrypted.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.ServeHTTPWith(w, r, r.TLS != nil, r.RemoteAddr)
}

// ServeHTTPWith is ServeHTTP with the security decision and the client's
// address decided by the caller (httpd trusts loopback or a proxy as
// configured, and reads X-Forwarded-For from a trusted proxy).
func (h *Handler) ServeHTTPWith(w http.ResponseWriter, r *http.Request, secure bool, remote string) {
	if !OffersXMPP(r) {
		// RFC 7395 §3.2: without the xmpp subprotocol there is no XMPP
		// connection; refuse before upgrading.
		http.Error(w, "the xmpp WebSocket subprotocol is required (RFC 7395)", http.StatusBadRequest)
		return
	}
	c, err := ws.Accept(w, r, h.acc)
	if err != nil {
		return // Accept has answered
	}
	if c.Subprotocol() != Subprotocol {
		c.Close(ws.StatusProtocolError, "xmpp subprotocol required")
		return
	}
	c.SetReadLimit(int64(h.opts.MaxStanzaBytes) + 1)
	scheme := "ws"
	if r.TLS != nil {
		scheme = "wss"
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn := &Conn{
		ws:      c,
		opts:    &h.opts,
		remote:  remote,
		secure:  secure,
		tls:     r.TLS,
		served:  tlsutil.ServedFor(r.Context()),
		ctx:     ctx,
		cancel:  cancel,
		baseURL: scheme + "://%s" + r.URL.Path,
	}
	if h.opts.PingInterval > 0 {
		go conn.pingLoop(h.opts.PingInterval)
	}
	if h.opts.OnConn != nil {
		h.opts.OnConn(ctx, conn)
	}
	conn.shutdown(ws.StatusNormalClosure, "")
}

// Conn is one XMPP-over-WebSocket connection. Reads come from one
// goroutine, writes from another (the c2s reader and writer).
type Conn struct {
	ws      *ws.Conn
	opts    *Options
	remote  string
	secure  bool
	tls     *tls.ConnectionState // nil unless this server terminated TLS
	served  *tls.Certificate     // what it presented, when recorded
	ctx     context.Context
	cancel  context.CancelFunc
	baseURL string // for see-other-uri: scheme://%s/path
	// maxStanza, when set below opts.MaxStanzaBytes, bounds messages
	// instead (SetMaxStanzaBytes); read and written by the reader only.
	maxStanza int

	mu       sync.Mutex
	activity func()
	closed   bool
}

// RemoteAddr is the client's address (host:port).
func (c *Conn) RemoteAddr() string { return c.remote }

// Secure reports whether the connection counts as encrypted.
func (c *Conn) Secure() bool { return c.secure }

// TLSState is the state of the TLS connection the upgrade came on, when
// this server terminated it (the https listener); nil behind a proxy or
// on plain HTTP. Its channel bindings (tls-exporter) are the WebSocket
// stream's: one TLS connection carries the whole stream.
func (c *Conn) TLSState() *tls.ConnectionState { return c.tls }

// ServedCertificate is the certificate the server presented on that TLS
// connection, when the listener recorded it (tlsutil.Recording); nil
// otherwise.
func (c *Conn) ServedCertificate() *tls.Certificate { return c.served }

// SetActivityHook installs fn, called for every message from the client.
func (c *Conn) SetActivityHook(fn func()) {
	c.mu.Lock()
	c.activity = fn
	c.mu.Unlock()
}

// readMessage reads one message, at most MaxStanzaBytes.
func (c *Conn) readMessage() ([]byte, error) {
	typ, r, err := c.ws.Reader(c.ctx)
	if err != nil {
		if ws.CloseStatus(err) == ws.StatusNormalClosure || ws.CloseStatus(err) == ws.StatusGoingAway {
			return nil, wire.ErrStreamEnd
		}
		return nil, err
	}
	c.mu.Lock()
	fn := c.activity
	c.mu.Unlock()
	if fn != nil {
		fn()
	}
	if typ != ws.MessageText {
		return nil, wire.ErrBadFormat // RFC 7395 §3.3.3: text frames only
	}
	max := c.maxStanzaBytes()
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, wire.ErrStanzaTooLarge
	}
	return data, nil
}

// readElement reads and parses one message.
func (c *Conn) readElement() (*wire.Element, error) {
	data, err := c.readMessage()
	if err != nil {
		return nil, err
	}
	return wire.ParseNS(data, wire.Limits{MaxStanzaBytes: c.maxStanzaBytes()})
}

// SetMaxStanzaBytes lowers (or restores) the bound on the messages read
// from now on, at most Options.MaxStanzaBytes: the c2s core holds an
// unauthenticated stream to a smaller one. Only the reader calls it.
func (c *Conn) SetMaxStanzaBytes(n int) { c.maxStanza = n }

func (c *Conn) maxStanzaBytes() int {
	if c.maxStanza > 0 && c.maxStanza < c.opts.MaxStanzaBytes {
		return c.maxStanza
	}
	return c.opts.MaxStanzaBytes
}

func isFraming(el *wire.Element, name string) bool {
	return el.Name == name && el.NS() == wire.NSFraming
}

// ReadOpen waits for the client's <open/> (the stream header) and returns
// it with version defaulted to "1.0". A <close/> instead is wire.ErrStreamEnd.
func (c *Conn) ReadOpen() (*wire.Element, error) {
	el, err := c.readElement()
	if err != nil {
		return nil, err
	}
	switch {
	case isFraming(el, "close"):
		return nil, wire.ErrStreamEnd
	case !isFraming(el, "open"):
		// RFC 7395 §3.3.1: the first element must be <open/>.
		return nil, wire.ErrBadFormat
	}
	el.Children = nil
	if el.Attr("version") == "" {
		el.SetAttr("version", "1.0")
	}
	return el, nil
}

// ReadElement returns the next top-level element; <close/> is
// wire.ErrStreamEnd. Stanzas lose their xmlns='jabber:client' declaration
// so that they look exactly as read from a TCP stream.
func (c *Conn) ReadElement() (*wire.Element, error) {
	el, err := c.readElement()
	if err != nil {
		return nil, err
	}
	switch {
	case isFraming(el, "close"):
		return nil, wire.ErrStreamEnd
	case isFraming(el, "open"):
		return nil, ErrUnexpectedOpen
	case wire.UndeclaresNamespace(el):
		return nil, wire.ErrInvalidNamespace
	}
	if el.IsStanza() && el.NS() == wire.NSClient {
		el.RemoveAttr("xmlns")
	}
	return el, nil
}

// WriteOpen writes the server's <open/> (RFC 7395 §3.3.2).
func (c *Conn) WriteOpen(from, id, version, lang, to string) error {
	el := wire.NewNS("open", wire.NSFraming)
	el.SetAttr("from", from)
	el.SetAttr("id", id)
	el.SetAttr("version", version)
	el.SetAttr("xml:lang", lang)
	el.SetAttr("to", to)
	return c.writeElement(el)
}

// Write sends each element as its own message.
func (c *Conn) Write(els []*wire.Element) error {
	for _, el := range els {
		if err := c.writeElement(el); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) writeElement(el *wire.Element) error {
	buf := wire.GetBuffer()
	defer wire.PutBuffer(buf)
	WriteFramed(buf, el)
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.WriteTimeout)
	defer cancel()
	return c.ws.Write(ctx, ws.MessageText, buf.Bytes())
}

// WriteFramed serializes one top-level element as a standalone document:
// stanzas that inherit their namespace get xmlns='jabber:client', and
// stream:* elements get the stream prefix declared. el is not modified.
func WriteFramed(buf *bytes.Buffer, el *wire.Element) {
	var extra wire.Attr
	switch {
	case el.IsStanza() && !el.HasAttr("xmlns"):
		extra = wire.Attr{Name: "xmlns", Value: wire.NSClient}
	case strings.HasPrefix(el.Name, "stream:") && !el.HasAttr("xmlns:stream"):
		extra = wire.Attr{Name: "xmlns:stream", Value: wire.NSStream}
	}
	if extra.Name == "" {
		el.WriteTo(buf)
		return
	}
	cp := *el
	cp.Attrs = make([]wire.Attr, 0, len(el.Attrs)+1)
	cp.Attrs = append(cp.Attrs, extra)
	cp.Attrs = append(cp.Attrs, el.Attrs...)
	cp.WriteTo(buf)
}

// Close ends the stream: the stream error (if any), then <close/>, then
// the WebSocket closing handshake. A see-other-host stream error becomes a
// <close see-other-uri='...'/> as RFC 7395 §3.6.1 specifies.
func (c *Conn) Close(streamErr *wire.Element) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	closeEl := wire.NewNS("close", wire.NSFraming)
	if streamErr != nil {
		if soh := streamErr.Child("see-other-host", wire.NSStreams); soh != nil {
			closeEl.SetAttr("see-other-uri", c.otherURI(strings.TrimSpace(soh.AllText())))
		} else {
			c.writeElement(streamErr)
		}
	}
	err := c.writeElement(closeEl)
	c.shutdown(ws.StatusNormalClosure, "")
	return err
}

// otherURI turns a see-other-host value into a WebSocket URI.
func (c *Conn) otherURI(host string) string {
	if strings.Contains(host, "://") {
		return host
	}
	return strings.Replace(c.baseURL, "%s", host, 1)
}

// shutdown closes the WebSocket (with the closing handshake) and unblocks
// readers.
func (c *Conn) shutdown(code ws.StatusCode, reason string) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.ws.Close(code, reason)
	c.cancel()
}

// pingLoop pings the client; a missing pong closes the connection.
func (c *Conn) pingLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.PongTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.opts.Logger.Debug("websocket: ping failed", "remote", c.remote, "err", err)
				c.ws.CloseNow()
				c.cancel()
			}
			return
		}
	}
}

// LocalAddr helper for logs: the host part of RemoteAddr.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// RemoteHost is the client's address without the port.
func (c *Conn) RemoteHost() string { return hostOnly(c.remote) }
