package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"testing"
)

// countingStore counts Get calls.
type countingStore struct {
	*DBStore
	gets int
}

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets++
	return c.DBStore.Get(ctx, key)
}

func TestHTTP01Handler(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{DBStore: sqliteStore(t)}
	m, err := New(Options{Config: ConfigFrom(testConfig("chat.example")), Store: st, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, http01Key("tok_EN-1"), []byte("tok_EN-1.thumb")); err != nil {
		t.Fatal(err)
	}
	h := m.HTTPHandler()
	get := func(method, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code, rec.Body.String()
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", PathHTTP01+"tok_EN-1", nil))
	if rec.Code != 200 || rec.Body.String() != "tok_EN-1.thumb" || rec.Header().Get("Content-Type") != "text/plain" {
		t.Errorf("known token: %d %q %q", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"))
	}
	if code, _ := get("GET", PathHTTP01+"unknown"); code != 404 {
		t.Errorf("unknown token: %d, want 404", code)
	}
	before := st.gets
	for _, p := range []string{PathHTTP01 + "a.b", PathHTTP01 + "..%2Fcert%2Fx", PathHTTP01, PathHTTP01 + "x/y"} {
		if code, _ := get("GET", p); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	if code, _ := get("POST", PathHTTP01+"tok_EN-1"); code != 404 {
		t.Errorf("POST: %d, want 404", code)
	}
	if st.gets != before {
		t.Errorf("malformed tokens were looked up in the store (%d lookups)", st.gets-before)
	}
}

// TestTLSALPN01: a handshake offering acme-tls/1 for a name with a pending
// challenge gets the RFC 8737 certificate for that name; without the
// protocol, the ordinary certificate; for a name without a challenge, a
// failed handshake.
func TestTLSALPN01(t *testing.T) {
	ctx := context.Background()
	st := sqliteStore(t)
	ca := newTestCA(t)
	m, err := New(Options{Config: ConfigFrom(testConfig("chat.example")), Store: st, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	chain, key := ca.issue(t, []string{"chat.example"}, ca.cert.NotBefore, ca.cert.NotAfter)
	if _, err := Put(ctx, st, chain, key, SourceACME, "n1", ca.cert.NotBefore.Add(1)); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, tlsALPN01Key("chat.example"), []byte("token.thumbprint")); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	dial := func(sni string, protos ...string) (tls.ConnectionState, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: sni, NextProtos: protos, InsecureSkipVerify: true})
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}

	cs, err := dial("chat.example", alpnProto)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cs.PeerCertificates[0]
	if cs.NegotiatedProtocol != alpnProto || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "chat.example" {
		t.Fatalf("protocol %q names %v", cs.NegotiatedProtocol, leaf.DNSNames)
	}
	want := sha256.Sum256([]byte("token.thumbprint"))
	found := false
	for _, e := range leaf.Extensions {
		if e.Id.Equal(idPeACMEIdentifier) {
			var got []byte
			if _, err := asn1.Unmarshal(e.Value, &got); err != nil || !bytes.Equal(got, want[:]) || !e.Critical {
				t.Errorf("acmeIdentifier: critical %v value %x err %v; want critical %x", e.Critical, got, err, want)
			}
			found = true
		}
	}
	if !found {
		t.Error("no acmeIdentifier extension")
	}
	if cs, err := dial("chat.example", "xmpp-client"); err != nil || cs.PeerCertificates[0].SerialNumber.Cmp(mustLeaf(t, chain).SerialNumber) != 0 {
		t.Errorf("an ordinary handshake got %v (err %v), want the stored certificate", cs.PeerCertificates, err)
	}
	if _, err := dial("other.example", alpnProto); err == nil {
		t.Error("acme-tls/1 for a name without a challenge: handshake succeeded")
	}
	if _, err := m.configForClient(&tls.ClientHelloInfo{ServerName: "nobody.example", SupportedProtos: []string{alpnProto}}); !errors.Is(err, ErrNoChallenge) {
		t.Errorf("configForClient for a name without a challenge: %v", err)
	}
}

func mustLeaf(t *testing.T, chainPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(chainPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
