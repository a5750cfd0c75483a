package tlsutil

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
)

// Which certificate did the server present on a connection? crypto/tls
// does not say on the server side, but the tls-server-end-point channel
// binding (RFC 5929) is a hash of it. Recording wraps a configuration so
// that the certificate it chooses is written on the connection handed to
// tls.Server (ClientHelloInfo.Conn) when that connection is a
// CertRecorder: c2s's own connections are, and RecordingListener wraps
// the HTTPS listener's. On a resumed TLS session nothing is chosen, and
// nothing recorded.

// CertRecorder is a connection that learns the certificate the server
// presented on it.
type CertRecorder interface{ RecordServed(*tls.Certificate) }

// Recording returns a copy of base whose certificate selection records
// the chosen certificate on the connection. The copy has no Certificates
// of its own (crypto/tls would otherwise skip GetCertificate when the
// client sends no SNI) and chooses as crypto/tls would: base's
// GetCertificate first, then the only certificate, then the first one the
// client supports. A configuration base's GetConfigForClient returns is
// wrapped the same way.
func Recording(base *tls.Config) *tls.Config {
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
		if r, ok := hello.Conn.(CertRecorder); ok && cert != nil {
			r.RecordServed(cert)
		}
		return cert, err
	}
}

var errNoCertificates = errors.New("tlsutil: no certificates configured")

func chooseCertificate(certs []tls.Certificate, get func(*tls.ClientHelloInfo) (*tls.Certificate, error), hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if get != nil && (len(certs) == 0 || hello.ServerName != "") {
		if c, err := get(hello); c != nil || err != nil {
			return c, err
		}
	}
	switch len(certs) {
	case 0:
		return nil, errNoCertificates
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

// OnlyCertificate is cfg's certificate when it has exactly one and no
// dynamic choice, so that what any connection was presented is known
// without recording; nil otherwise.
func OnlyCertificate(cfg *tls.Config) *tls.Certificate {
	if cfg == nil || cfg.GetCertificate != nil || cfg.GetConfigForClient != nil || len(cfg.Certificates) != 1 {
		return nil
	}
	return &cfg.Certificates[0]
}

// ServedConn is an accepted connection that remembers the certificate
// presented on it (a CertRecorder).
type ServedConn struct {
	net.Conn
	served atomic.Pointer[tls.Certificate]
}

// RecordServed implements CertRecorder.
func (c *ServedConn) RecordServed(cert *tls.Certificate) { c.served.Store(cert) }

// RecordingListener wraps every connection ln accepts in a ServedConn;
// put tls.NewListener with a Recording configuration over it.
func RecordingListener(ln net.Listener) net.Listener { return recordingListener{ln} }

type recordingListener struct{ net.Listener }

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &ServedConn{Conn: c}, nil
}

// Served returns the certificate presented on c, a *tls.Conn over a
// ServedConn; nil when unknown.
func Served(c net.Conn) *tls.Certificate {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	if sc, ok := tc.NetConn().(*ServedConn); ok {
		return sc.served.Load()
	}
	return nil
}

type connKey struct{}

// ConnContext is an http.Server.ConnContext that lets the server's
// handlers find their request's connection (ServedFor).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// ServedFor returns the certificate presented on the connection of a
// request context set up by ConnContext; nil when unknown.
func ServedFor(ctx context.Context) *tls.Certificate {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return Served(c)
}
