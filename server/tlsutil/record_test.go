package tlsutil

import (
	"context"
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

// handshakeServed accepts one connection through RecordingListener and a
// Recording configuration, the client asking for serverName, and returns
// what the server side recorded (by Served and, as an HTTP server's
// handler would find it, by ServedFor) and what the client received.
func handshakeServed(t *testing.T, base *tls.Config, serverName string) (served, viaCtx *tls.Certificate, peer *x509.Certificate) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := tls.NewListener(RecordingListener(raw), Recording(base))
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
		}
		accepted <- result{c, err}
	}()
	cli, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: serverName})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r := <-accepted
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	return Served(r.c), ServedFor(ConnContext(context.Background(), r.c)), cli.ConnectionState().PeerCertificates[0]
}

// The certificate crypto/tls chose for a connection is recorded on it,
// whether the node has one certificate, several (chosen by SNI), or
// chooses in GetCertificate (as the ACME manager does), and it is the one
// the client received.
func TestRecordingRecordsTheServedCertificate(t *testing.T) {
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
		{"GetConfigForClient declining", &tls.Config{Certificates: []tls.Certificate{one},
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }}, "x.example", &one},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served, viaCtx, peer := handshakeServed(t, tc.base, tc.serverName)
			want := string(tc.want.Certificate[0])
			if served == nil || string(served.Certificate[0]) != want || viaCtx != served {
				t.Fatalf("recorded %v (context %v), want the configured certificate", served, viaCtx)
			}
			if string(peer.Raw) != want {
				t.Errorf("the client received another certificate than the one recorded")
			}
		})
	}
	if OnlyCertificate(&tls.Config{Certificates: []tls.Certificate{one}}) == nil ||
		OnlyCertificate(&tls.Config{Certificates: []tls.Certificate{one, other}}) != nil ||
		OnlyCertificate(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &one, nil }}) != nil {
		t.Error("OnlyCertificate")
	}
}
