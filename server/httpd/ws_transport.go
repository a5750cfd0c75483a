package httpd

import (
	"context"
	"crypto/tls"
	"errors"

	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/websocket"
	"github.com/aviary-im/aviary/wire"
)

var _ c2s.Transport = (*WSTransport)(nil)

// WSTransport carries one c2s stream over an RFC 7395 WebSocket.
type WSTransport struct {
	c *websocket.Conn
}

// NewWSTransport wraps a connection for c2s.Server.Serve.
func NewWSTransport(c *websocket.Conn) *WSTransport { return &WSTransport{c: c} }

// ReadHeader returns the client's <open/>.
func (t *WSTransport) ReadHeader() (*wire.Element, error) { return t.c.ReadOpen() }

// ReadElement returns the next element; <close/> is wire.ErrStreamEnd.
func (t *WSTransport) ReadElement() (*wire.Element, error) { return t.c.ReadElement() }

// SetMaxStanzaBytes bounds the messages read from now on.
func (t *WSTransport) SetMaxStanzaBytes(n int) { t.c.SetMaxStanzaBytes(n) }

// Restart has nothing to do: the client's next message is a new <open/>.
func (t *WSTransport) Restart() {}

// Secure reports whether the connection counts as encrypted.
func (t *WSTransport) Secure() bool { return t.c.Secure() }

// CanStartTLS is false: TLS is the HTTP layer's business.
func (t *WSTransport) CanStartTLS() bool { return false }

// StartTLS is never called.
func (t *WSTransport) StartTLS(ctx context.Context, cfg *tls.Config) error {
	return errors.New("httpd: STARTTLS is not available over WebSocket")
}

// OpenStream writes <open/>.
func (t *WSTransport) OpenStream(h c2s.StreamHeader) error {
	return t.c.WriteOpen(h.From, h.ID, h.Version, h.Lang, h.To)
}

// Write sends each element as its own message.
func (t *WSTransport) Write(els []*wire.Element) error { return t.c.Write(els) }

// Close writes the stream error (or see-other-uri) and <close/>, and
// closes the WebSocket.
func (t *WSTransport) Close(streamErr *wire.Element) error { return t.c.Close(streamErr) }

// Kind is c2s.TransportWebSocket.
func (t *WSTransport) Kind() string { return c2s.TransportWebSocket }

// RemoteAddr is the client's address without the port.
func (t *WSTransport) RemoteAddr() string { return t.c.RemoteHost() }

// SetActivityHook installs fn, called for every message.
func (t *WSTransport) SetActivityHook(fn func()) { t.c.SetActivityHook(fn) }

var _ c2s.TLSStater = (*WSTransport)(nil)

// TLSState implements c2s.TLSStater with the TLS connection of the https
// listener the WebSocket came on (nil behind a proxy), and the
// certificate the listener recorded for it.
func (t *WSTransport) TLSState() (*tls.ConnectionState, *tls.Certificate) {
	return t.c.TLSState(), t.c.ServedCertificate()
}
