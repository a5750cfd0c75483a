package c2s

import (
	"crypto/tls"

	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/tlsutil"
)

// Channel binding (XEP-0440, RFC 5929, RFC 9266): the SASL layer needs
// the binding data of the TLS connection this server terminated for the
// stream. tls-exporter and tls-unique come from the connection state;
// tls-server-end-point needs the certificate the server presented, which
// crypto/tls does not report on the server side: the Server's TLS
// configuration is tlsutil.Recording's, which writes the certificate it
// chooses on the connection's recordConn (the net.Conn handed to
// tls.Server).

// TLSStater is implemented by a transport on TLS that the server itself
// terminates (TCP with STARTTLS or direct TLS, WebSocket on the https
// listener). A transport behind a TLS-terminating proxy, or BOSH (each
// request may come on another connection), does not implement it: it
// has no channel binding, and no -PLUS mechanism is offered.
type TLSStater interface {
	// TLSState returns the connection state once the handshake is done
	// (nil before, or without TLS) and the certificate the server
	// presented (nil when unknown: tls-server-end-point then comes from
	// the node's certificate if it has only one).
	TLSState() (*tls.ConnectionState, *tls.Certificate)
}

// TLSState implements TLSStater.
func (t *TCPTransport) TLSState() (*tls.ConnectionState, *tls.Certificate) {
	tc, ok := t.conn.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	cs := tc.ConnectionState()
	var served *tls.Certificate
	if t.rec != nil {
		served = t.rec.served
	}
	return &cs, served
}

// bindings returns the stream's channel bindings, computed once per TLS
// layer (startTLS forgets them).
func (s *Session) bindings() auth.Bindings {
	if s.cbKnown {
		return s.cb
	}
	s.cbKnown = true
	st, ok := s.t.(TLSStater)
	if !ok {
		return nil
	}
	cs, served := st.TLSState()
	if cs == nil {
		s.cbKnown = false // not encrypted yet
		return nil
	}
	if served == nil {
		served = tlsutil.OnlyCertificate(s.srv.baseTLS)
	}
	s.cb = auth.TLSBindings(cs, served)
	return s.cb
}

// authConn describes the stream to the SASL layer.
func (s *Session) authConn() auth.Conn {
	return auth.Conn{
		Secure:    s.t.Secure(),
		Addr:      s.t.RemoteAddr(),
		Bindings:  s.bindings(),
		UserAgent: s.userAgent,
		FAST:      s.fastUse,
	}
}

var _ tlsutil.CertRecorder = (*recordConn)(nil)
