package link

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Links are TLS 1.3 unless Options.Plaintext. Both ends prove knowledge of
// the cluster secret by the key they present: an Ed25519 key derived from
// the secret (HKDF-SHA256), the same on every node, checked by public key
// rather than by a certificate authority. Every connection still gets
// fresh ephemeral keys, so a recorded link cannot be decrypted later even
// with the secret. The secret handshake of handshake.go then runs inside
// TLS and binds the connection to the two node names.

// alpn names the link protocol, so that a future version can be told
// apart during a rolling upgrade.
const alpn = "aviary-link/1"

// errWrongKey means the peer's TLS key is not derived from our secret.
var errWrongKey = errors.New("peer's TLS key is not derived from the cluster secret")

// linkTLS returns the server and client TLS configurations for secret.
func linkTLS(secret []byte) (server, client *tls.Config, err error) {
	seed, err := hkdf.Key(sha256.New, secret, nil, "aviary cluster link tls key v1", ed25519.SeedSize)
	if err != nil {
		return nil, nil, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "aviary cluster link"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(100, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("link: tls certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errWrongKey
		}
		c, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("%w: %v", errWrongKey, err)
		}
		if k, ok := c.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(k, pub) {
			return errWrongKey
		}
		return nil
	}
	base := tls.Config{
		Certificates:          []tls.Certificate{cert},
		MinVersion:            tls.VersionTLS13,
		NextProtos:            []string{alpn},
		InsecureSkipVerify:    true, // no CA: VerifyPeerCertificate checks the key
		VerifyPeerCertificate: verify,
		ServerName:            "aviary-cluster-link",
	}
	server, client = base.Clone(), base.Clone()
	server.ClientAuth = tls.RequireAnyClientCert
	return server, client, nil
}

// tlsAuthError reports a TLS handshake failure that means the two ends do
// not share the secret (or one end does not speak TLS on its links).
func tlsAuthError(err error) error {
	var ae tls.AlertError
	var re tls.RecordHeaderError
	if errors.As(err, &re) {
		return fmt.Errorf("%w: the peer does not speak TLS on its links (is cluster.plaintext_links the same on every node?): %v", ErrAuth, err)
	}
	if errors.Is(err, errWrongKey) || errors.As(err, &ae) {
		return fmt.Errorf("%w: tls: %v", ErrAuth, err)
	}
	return err
}
