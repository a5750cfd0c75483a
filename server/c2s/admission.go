package c2s

import (
	"net"

	"github.com/aviary-im/aviary/wire"
)

// Admission decides whether this node serves a new client stream. The
// core asks it once per transport, after it has sent its stream header and
// before the features (RFC 6120 §4.9.3.19: a redirect comes before any
// negotiation). It returns nil to serve the stream, or the <stream:error/>
// to close it with: see-other-host naming another node, resource-constraint
// when no node can take it, system-shutdown when the node is going away.
// It must not block; it runs on the session's reader.
type Admission func(t Transport) *wire.Element

// SetAdmission installs fn (nil removes it). Without one, only
// c2s.max_sessions is enforced, with resource-constraint.
func (srv *Server) SetAdmission(fn Admission) {
	if fn == nil {
		srv.admission.Store(nil)
		return
	}
	srv.admission.Store(&fn)
}

// admit runs the installed Admission, if any.
func (srv *Server) admit(t Transport) *wire.Element {
	p := srv.admission.Load()
	if p == nil {
		return nil
	}
	return (*p)(t)
}

// SeeOtherHost returns the RFC 6120 §4.9.3.19 stream error naming host
// (host, host:port, or for WebSocket a ws:// or wss:// URI, which the
// WebSocket connector turns into <close see-other-uri=.../>).
func SeeOtherHost(host string) *wire.Element {
	e := wire.New("stream:error")
	e.Append(wire.NewNS("see-other-host", wire.NSStreams).SetText(host))
	return e
}

// Transport returns the transport the session currently runs on.
func (s *Session) Transport() Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t
}

// Redirect ends the session's stream with streamErr (typically
// SeeOtherHost), as Close does: it never blocks. When the node is
// clustered, a session with stream-management resumption stays detached
// for up to redirectResumeWindow so that its client resumes it on the node
// it was sent to (handover.go), losing nothing and receiving nothing
// twice. Otherwise, or when that window passes, what the client never
// received or never acknowledged is handed to the router's Unbind, which
// re-routes it (other resources, offline storage), so nothing is lost. The
// close reason is ReasonRedirected.
func (s *Session) Redirect(streamErr *wire.Element) {
	s.mu.Lock()
	if s.detached {
		if s.srv.canHandOver() && s.resumeTimer != nil {
			// Its client may still resume it on another node: leave it
			// the same short window as a session sent away now.
			s.resumeTimer.Reset(min(s.resumeFor, redirectResumeWindow))
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		go s.expire(ReasonRedirected)
		return
	}
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closeLocked(ReasonRedirected, "", "")
	s.closeErr = streamErr
	s.mu.Unlock()
}

// LocalAddr is the address of the listener socket the client connected
// to (which listener took it: STARTTLS or direct TLS).
func (t *TCPTransport) LocalAddr() net.Addr { return t.raw.LocalAddr() }
