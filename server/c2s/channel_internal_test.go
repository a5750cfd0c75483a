package c2s

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

func certFor(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// handshakeServed runs a handshake through recordingTLS(base) on a
// recordConn, with the client asking for serverName, and returns what the
// connection recorded and what the client saw.
func handshakeServed(t *testing.T, base *tls.Config, serverName string) (served *tls.Certificate, peer *x509.Certificate) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rec := &recordConn{Conn: a}
	srv := tls.Server(rec, recordingTLS(base))
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cli := tls.Client(b, &tls.Config{InsecureSkipVerify: true, ServerName: serverName})
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return rec.served, cli.ConnectionState().PeerCertificates[0]
}

// The certificate crypto/tls chose for a connection is recorded on it,
// whether the node has one certificate, several (chosen by SNI), or
// chooses in GetCertificate (as ACME does); and the choice is the one
// crypto/tls would have made itself.
func TestRecordingTLSRecordsTheServedCertificate(t *testing.T) {
	one, other := certFor(t, "one.example"), certFor(t, "other.example")
	for _, tc := range []struct {
		name       string
		base       *tls.Config
		serverName string
		want       *tls.Certificate
	}{
		{"one certificate, no SNI", &tls.Config{Certificates: []tls.Certificate{one}}, "", &one},
		{"several, chosen by SNI", &tls.Config{Certificates: []tls.Certificate{one, other}}, "other.example", &other},
		{"GetCertificate", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &other, nil }}, "x.example", &other},
		{"GetCertificate without SNI falls back to Certificates", &tls.Config{Certificates: []tls.Certificate{one},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &other, nil }}, "", &one},
		{"GetConfigForClient", &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{Certificates: []tls.Certificate{other}}, nil
		}}, "x.example", &other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served, peer := handshakeServed(t, tc.base, tc.serverName)
			if served == nil || string(served.Certificate[0]) != string(tc.want.Certificate[0]) {
				t.Fatalf("recorded %v, want the other certificate", served)
			}
			if string(peer.Raw) != string(tc.want.Certificate[0]) {
				t.Errorf("the client got another certificate than the one recorded")
			}
		})
	}
	if onlyCertificate(&tls.Config{Certificates: []tls.Certificate{one}}) == nil ||
		onlyCertificate(&tls.Config{Certificates: []tls.Certificate{one, other}}) != nil {
		t.Error("onlyCertificate")
	}
}
