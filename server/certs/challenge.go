package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Challenge types (RFC 8555 §8.3, RFC 8737).
const (
	acmeHTTP01    = "http-01"
	acmeTLSALPN01 = "tls-alpn-01"
)

// PathHTTP01 is where the CA fetches HTTP-01 answers.
const PathHTTP01 = "/.well-known/acme-challenge/"

// alpnProto is the ALPN protocol of TLS-ALPN-01 validation (RFC 8737 §6.2).
const alpnProto = "acme-tls/1"

// idPeACMEIdentifier is the critical extension of a TLS-ALPN-01 challenge
// certificate holding the SHA-256 of the key authorization (RFC 8737 §3).
var idPeACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// challengeTimeout bounds the store lookup behind one challenge answer.
const challengeTimeout = 5 * time.Second

// Store keys of pending challenges: the HTTP-01 key authorization by
// token, the TLS-ALPN-01 one by name.
func http01Key(token string) string   { return "challenge/http-01/" + token }
func tlsALPN01Key(name string) string { return "challenge/tls-alpn-01/" + name }

// validToken: a token is base64url (RFC 8555 §8.1); anything else is not
// looked up.
func validToken(tok string) bool {
	if tok == "" || len(tok) > 256 {
		return false
	}
	for _, r := range tok {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (m *Manager) serveHTTP01(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.URL.Path, PathHTTP01)
	if !ok || !validToken(tok) || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), challengeTimeout)
	defer cancel()
	keyAuth, err := m.o.Store.Get(ctx, http01Key(tok))
	if err != nil {
		m.log.Debug("certs: HTTP-01 request for an unknown token", "token", tok, "remote", r.RemoteAddr, "err", err)
		http.NotFound(w, r)
		return
	}
	m.log.Info("certs: answering HTTP-01 challenge", "token", tok, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(keyAuth)
}

// configForClient answers TLS-ALPN-01 validation: a ClientHello offering
// only acme-tls/1 gets the challenge certificate for its server name;
// every other handshake goes on with the listener's own configuration.
func (m *Manager) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if !slices.Contains(hello.SupportedProtos, alpnProto) {
		return nil, nil
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	parent := hello.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, challengeTimeout)
	defer cancel()
	keyAuth, err := m.o.Store.Get(ctx, tlsALPN01Key(name))
	if err != nil {
		m.log.Debug("certs: TLS-ALPN-01 handshake for a name without a challenge", "name", name, "err", err)
		return nil, fmt.Errorf("%w for %q", ErrNoChallenge, name)
	}
	cert, err := m.alpnCert(name, string(keyAuth))
	if err != nil {
		return nil, err
	}
	remote := ""
	if hello.Conn != nil {
		remote = hello.Conn.RemoteAddr().String()
	}
	m.log.Info("certs: answering TLS-ALPN-01 challenge", "name", name, "remote", remote)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{alpnProto},
		Certificates: []tls.Certificate{*cert},
	}, nil
}

type alpnCert struct {
	keyAuth string
	cert    *tls.Certificate
}

// alpnCert returns the challenge certificate for name and keyAuth, built
// once: the CA may connect several times, from several places.
func (m *Manager) alpnCert(name, keyAuth string) (*tls.Certificate, error) {
	m.alpnMu.Lock()
	defer m.alpnMu.Unlock()
	if c, ok := m.alpnCerts[name]; ok && c.keyAuth == keyAuth {
		return c.cert, nil
	}
	cert, err := TLSALPN01Cert(name, keyAuth)
	if err != nil {
		return nil, err
	}
	clear(m.alpnCerts) // one challenge per name at a time; old ones are done
	m.alpnCerts[name] = alpnCert{keyAuth, cert}
	return cert, nil
}

// TLSALPN01Cert builds the self-signed certificate that proves control of
// name for the key authorization keyAuth (RFC 8737 §3): for name alone,
// with the critical acmeIdentifier extension holding SHA-256(keyAuth).
func TLSALPN01Cert(name, keyAuth string) (*tls.Certificate, error) {
	if name == "" {
		return nil, errors.New("certs: TLS-ALPN-01 needs a server name")
	}
	sum := sha256.Sum256([]byte(keyAuth))
	ext, err := asn1.Marshal(sum[:])
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "ACME challenge"},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(24 * time.Hour),
		DNSNames:        []string{name},
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{{Id: idPeACMEIdentifier, Critical: true, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: TLS-ALPN-01 certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
