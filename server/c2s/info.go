package c2s

import (
	"time"

	"github.com/aviary-im/aviary/wire"
)

// Transport kinds: what SessionInfo.Transport and the transport label of
// aviary_c2s_sessions_by_transport say.
const (
	TransportTCP       = "tcp"       // the STARTTLS listener (c2s.listen)
	TransportTLS       = "tls"       // the direct-TLS listener (c2s.tls_listen, XEP-0368)
	TransportBOSH      = "bosh"      // XEP-0124/0206
	TransportWebSocket = "websocket" // RFC 7395
)

// Transports lists the kinds, for metrics present at zero.
var Transports = []string{TransportTCP, TransportTLS, TransportBOSH, TransportWebSocket}

// KindReporter is implemented by a transport that says which kind it is
// (TransportTCP...); the core counts and shows others as "other".
type KindReporter interface {
	Kind() string
}

func transportKind(t Transport) string {
	if k, ok := t.(KindReporter); ok {
		return k.Kind()
	}
	return "other"
}

// Kind is TransportTLS for a direct-TLS connection, else TransportTCP
// (STARTTLS or not yet).
func (t *TCPTransport) Kind() string {
	if t.direct {
		return TransportTLS
	}
	return TransportTCP
}

// SessionInfo is what an administrator sees of one session (the admin
// console's session details). Nothing in it is asked of the client: the
// client software is what it volunteered (XEP-0388 user agent, XEP-0386
// tag, XEP-0115 caps node in its presence).
type SessionInfo struct {
	JID       string
	Transport string // TransportTCP...
	Addr      string // the client's address, without the port
	// Since is when the session's first stream opened; a stream-management
	// resumption keeps it.
	Since time.Time
	// Stream management (XEP-0198): enabled, resumable, and whether the
	// session waits for its client to resume it (no transport).
	SM, Resumable, Detached bool
	// Inactive: the client said it is in the background (XEP-0352).
	Inactive bool
	// Software and Device come from the XEP-0388 <user-agent/>, Tag from
	// the XEP-0386 <bind><tag/>, Caps from the node of the XEP-0115 <c/>
	// of the client's presence (a URI naming the client).
	Software, Device, Tag, Caps string
	// Unacked is how many stanzas the client has not acknowledged yet.
	Unacked int
}

// clientInfo is what the client said about itself, kept by the reader.
type clientInfo struct {
	software, device, tag, caps string
}

// Info describes the session. It is safe to call from any goroutine.
func (s *Session) Info() SessionInfo {
	in := SessionInfo{JID: s.JID().String(), Since: s.started}
	if c := s.client.Load(); c != nil {
		in.Software, in.Device, in.Tag, in.Caps = c.software, c.device, c.tag, c.caps
	}
	s.mu.Lock()
	in.Transport, in.Addr = s.kind, s.remote
	in.SM, in.Resumable, in.Detached = s.smOn, s.smResume, s.detached
	in.Inactive = s.inactive
	in.Unacked = len(s.unacked)
	s.mu.Unlock()
	return in
}

// nsCaps is XEP-0115's namespace.
const nsCaps = "http://jabber.org/protocol/caps"

// clientFieldBytes bounds each string a client says about itself.
const clientFieldBytes = 128

// noteUserAgent records the XEP-0388 user agent and the XEP-0386 tag of an
// <authenticate/> (reader goroutine).
func (s *Session) noteUserAgent(auth, bind *wire.Element) {
	c := s.clientSnapshot()
	if ua := auth.Child("user-agent", ""); ua != nil {
		c.software = clip(ua.ChildText("software", ""))
		c.device = clip(ua.ChildText("device", ""))
	}
	if bind != nil {
		c.tag = clip(bind.ChildText("tag", ""))
	}
	s.client.Store(&c)
}

// noteCaps records the caps node of the client's broadcast presence
// (reader goroutine); it costs a look at the presence's children.
func (s *Session) noteCaps(presence *wire.Element) {
	c := presence.Child("c", nsCaps)
	if c == nil {
		return
	}
	node := clip(c.Attr("node"))
	if old := s.client.Load(); old != nil && old.caps == node {
		return
	}
	ci := s.clientSnapshot()
	ci.caps = node
	s.client.Store(&ci)
}

func (s *Session) clientSnapshot() clientInfo {
	if c := s.client.Load(); c != nil {
		return *c
	}
	return clientInfo{}
}

func clip(v string) string {
	if len(v) > clientFieldBytes {
		v = v[:clientFieldBytes]
	}
	return v
}
