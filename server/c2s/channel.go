package c2s

import (
	"crypto/tls"

	"github.com/aviary-im/aviary/server/auth"
)

// Channel binding (XEP-0440, RFC 5929, RFC 9266): the SASL layer needs
// the binding data of the TLS connection this server terminated for the
// stream. tls-exporter and tls-unique come from the connection state;
// tls-server-end-point needs the certificate the server presented, which
// crypto/tls does not report on the server side. recordingTLS wraps the
// node's TLS configuration so that the certificate it chooses for a
// connection is written on that connection's recordConn (the net.Conn
// handed to tls.Server, which crypto/tls passes back in ClientHelloInfo).

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

// certRecorder is what the certificate chosen for a connection is
// written to (recordConn).
type certRecorder interface{ recordServed(*tls.Certificate) }

// recordingTLS returns a copy of base whose certificate selection
// records the certificate chosen on the connection, when it is a
// certRecorder. The copy has no Certificates of its own (crypto/tls would
// otherwise skip GetCertificate when the client sends no SNI) and chooses
// as crypto/tls would: base's GetCertificate first, then the only
// certificate, then the first one the client supports.
func recordingTLS(base *tls.Config) *tls.Config {
	if base == nil {
		return nil
	}
	cfg := base.Clone()
	cfg.Certificates = nil
	cfg.GetCertificate = recordingChooser(base)
	if base.GetConfigForClient != nil {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := base.GetConfigForClient(hello)
			if c == nil || err != nil {
				return c, err
			}
			c = c.Clone()
			c.GetCertificate, c.Certificates = recordingChooser(c), nil
			return c, nil
		}
	}
	return cfg
}

func recordingChooser(base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certs, get := base.Certificates, base.GetCertificate
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert, err := chooseCertificate(certs, get, hello)
		if r, ok := hello.Conn.(certRecorder); ok && cert != nil {
			r.recordServed(cert)
		}
		return cert, err
	}
}

func chooseCertificate(certs []tls.Certificate, get func(*tls.ClientHelloInfo) (*tls.Certificate, error), hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if get != nil && (len(certs) == 0 || hello.ServerName != "") {
		if c, err := get(hello); c != nil || err != nil {
			return c, err
		}
	}
	switch len(certs) {
	case 0:
		return nil, ErrNoTLS
	case 1:
		return &certs[0], nil
	}
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	return &certs[0], nil
}

// onlyCertificate is the node's certificate when it has exactly one and
// no dynamic choice, so that what any of its TLS listeners presented is
// known; nil otherwise.
func onlyCertificate(cfg *tls.Config) *tls.Certificate {
	if cfg == nil || cfg.GetCertificate != nil || cfg.GetConfigForClient != nil || len(cfg.Certificates) != 1 {
		return nil
	}
	return &cfg.Certificates[0]
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
		served = onlyCertificate(s.srv.baseTLS)
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
