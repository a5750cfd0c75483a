// Package c2s is the client-to-server stream layer: the session core that
// negotiates a stream (STARTTLS, SASL, resource binding, stream management)
// and then shuttles stanzas between one client and the router, holding
// back what can wait while the client says it is inactive (csi.go), plus
// the TCP connector (STARTTLS on one listener, direct TLS on another).
//
// The core does not know what carries the XML. A connector implements
// Transport and calls Server.Serve; TCP (this package), BOSH
// (server/bosh) and WebSocket (server/websocket) all get the same kind of
// session: SASL, binding, stream management and every plugin.
package c2s

import (
	"context"
	"crypto/tls"

	"github.com/aviary-im/aviary/wire"
)

// Transport is what a connector implements to carry one client stream.
//
// Concurrency: ReadHeader, ReadElement, Restart, StartTLS and
// SetActivityHook are called only from the goroutine running Server.Serve
// (the session's reader). OpenStream, Write and Close are called from the
// session's writer (a goroutine that runs only while there is something to
// write, so successive calls may come from different goroutines) or, for
// Close, from the reader once the writer has stopped; these three are
// never called concurrently with each other, and never while StartTLS runs
// (the core pauses its writer around the upgrade). Close may run while a
// read is blocked and must make that read return.
//
// Framing differences the connector hides:
//   - TCP: the stream header is <stream:stream>, closed by </stream:stream>;
//     after STARTTLS and after SASL success the client sends a new header on
//     the same connection.
//   - WebSocket (RFC 7395): the header is <open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>,
//     the end is <close/>; every frame is one element, so outgoing top-level
//     elements need their namespace declarations (xmlns='jabber:client' on
//     stanzas that have none, xmlns:stream on stream:features and
//     stream:error) — the connector adds them in Write.
//   - BOSH (XEP-0124/0206): elements travel inside <body/>; the session
//     creation request stands for the first header and a body with
//     xmpp:restart='true' for the header after SASL; a body with
//     type='terminate' ends the stream.
type Transport interface {
	// ReadHeader blocks until the client opens a stream (the first time,
	// after StartTLS, and after Restart) and returns the opening element
	// without children. The core reads its 'to', 'version' and 'xml:lang'
	// attributes and, on TCP, checks the namespaces: a connector whose
	// framing has no <stream:stream> returns an element named "open" (or
	// whatever it received) and the core does not check stream namespaces
	// for it; it should set 'version' to "1.0" when the framing implies it.
	ReadHeader() (*wire.Element, error)

	// ReadElement returns the next top-level element of the stream (a
	// stanza, or a nonza such as <auth/>, <starttls/>, <r/>, <enable/>).
	// It returns wire.ErrStreamEnd when the client closed the stream, a
	// wire error (wire.ErrNotWellFormed, wire.ErrStanzaTooLarge...) for bad
	// input — the core maps it with wire.StreamErrorFor — and any other
	// error for a transport failure (the core then closes without a
	// stream error). Connectors enforce Limits while reading.
	ReadElement() (*wire.Element, error)

	// Restart makes the next ReadHeader wait for a new stream header on the
	// same transport, as after SASL success (RFC 6120 §6.4.6). TCP restarts
	// its XML reader; BOSH and WebSocket usually have nothing to do.
	Restart()

	// Secure reports whether the transport is encrypted (TLS in place, or
	// HTTPS for BOSH/WebSocket). PLAIN is offered only on secure transports
	// and the RequireTLS policy is checked against it.
	Secure() bool

	// CanStartTLS reports whether <starttls/> may be offered: true only on
	// a TCP stream that is not yet encrypted.
	CanStartTLS() bool

	// StartTLS upgrades the transport after the core has written <proceed/>
	// (and the writer has flushed it). The connector runs the TLS server
	// handshake with cfg and builds a new XML reader on the encrypted
	// connection; the next ReadHeader reads the new stream header. Only
	// called when CanStartTLS was true.
	StartTLS(ctx context.Context, cfg *tls.Config) error

	// OpenStream writes the server's stream header (TCP: the XML
	// declaration and <stream:stream ...>; WebSocket: <open .../>; BOSH:
	// remembered for the session-creation or restart response). It is
	// followed by a Write carrying <stream:features/> (or by Close with a
	// stream error); a connector may hold the header back until then, so
	// that both leave in one write.
	OpenStream(h StreamHeader) error

	// Write sends a batch of top-level elements in one go (TCP: one
	// net.Buffers write with a deadline). The core does not modify the
	// elements afterwards, but the connector must not keep them once Write
	// returns, unless it implements UndeliveredReporter. An error means
	// the transport is broken.
	Write(els []*wire.Element) error

	// Close ends the stream: it writes streamErr (a <stream:error/> element,
	// or nil for a clean close), then the framing's end (</stream:stream>,
	// <close/>, a terminate body), and releases the transport. When no
	// header was written yet, a TCP connector writes one first, as RFC 6120
	// §4.9.1.1 requires. Close is called once; a connector should still
	// tolerate a second call.
	Close(streamErr *wire.Element) error

	// RemoteAddr is the client's address as a string without the port
	// where possible (for authentication throttling and logs). Behind a
	// proxy a connector may return the forwarded address.
	RemoteAddr() string

	// SetActivityHook installs fn, which the connector calls whenever bytes
	// arrive from the client (TCP: after every read from the socket, so
	// whitespace keepalives count; WebSocket: every frame; BOSH: every
	// request). The core uses it for its idle and ping timers. fn is cheap
	// and safe to call from any goroutine.
	SetActivityHook(fn func())
}

// UndeliveredReporter is implemented by a transport whose Write only
// queues elements for the client to fetch later (BOSH: a response to the
// client's next HTTP request), so that a successful Write does not mean
// the client got them. Once the core has closed the transport it asks for
// the stanzas the client is not known to have, and re-routes them with
// the session's other unsent stanzas (Router.Unbind: the user's other
// resources, offline storage), or, for a session waiting for a
// stream-management resumption, sends them again after it. The transport
// returns elements the core passed to Write (it keeps them, unmodified,
// until then), oldest first, each once. A write the connector cannot
// confirm (BOSH without an acknowledgement from a later request) counts
// as not received: a stanza may arrive twice, never not at all.
//
// With stream management (XEP-0198) the core counts every stanza it
// writes after <enabled/> or <resumed/> and keeps it until the client
// acknowledges it (re-routing or re-sending it itself otherwise), so the
// transport leaves those out: the writer calls StreamAcks just before the
// Write that carries <enabled/> or <resumed/>, and Undelivered returns
// only stanzas written before that call. Otherwise a stanza the client
// acknowledged would be routed again because the connector could not
// confirm it.
type UndeliveredReporter interface {
	Undelivered() []*wire.Element
	StreamAcks()
}

// StreamHeader is what the server's opening stream header carries.
type StreamHeader struct {
	// From is the domain the server speaks for.
	From string
	// To echoes the client's 'from' when it sent one (RFC 6120 §4.7.2).
	To string
	// ID is the stream ID, new for every header.
	ID string
	// Version is "1.0".
	Version string
	// Lang is the stream's default language (xml:lang).
	Lang string
}

// Element returns the header as a childless <stream:stream> element with
// the stream namespaces declared; TCP connectors serialize its start tag.
func (h StreamHeader) Element() *wire.Element {
	el := wire.New("stream:stream",
		"xmlns", wire.NSClient,
		"xmlns:stream", wire.NSStream,
		"id", h.ID,
		"from", h.From,
		"version", h.Version,
		"xml:lang", h.Lang)
	if h.To != "" {
		el.SetAttr("to", h.To)
	}
	return el
}

// Serve is the entry point connectors call: it runs one client stream on
// t until the stream ends, from negotiation through binding and stream
// management to the final Unbind, and returns when the session's reader is
// done. The caller's goroutine is the session's reader; Serve starts the
// writer itself. ctx cancels the session (as with system-shutdown).
//
// It is a method of Server (see server.go), the per-node value holding the
// configuration, router, authenticator and plugin manager:
//
//	srv := c2s.NewServer(c2s.Deps{...})
//	go srv.Serve(ctx, myTransport)
var _ = (*Server).Serve
