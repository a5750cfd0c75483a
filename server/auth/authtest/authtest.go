// Package authtest holds client sides of SASL mechanisms for tests, where
// the test chooses what a real client library would not let it: the gs2
// channel-binding flag and the binding data of SCRAM (mellium.im/sasl
// knows tls-exporter and tls-unique only), and the HT mechanisms of
// XEP-0484 FAST. It is written from RFC 5802 and draft-schmaus-kitten-
// sasl-ht, not from the server's code, so that a shared mistake cannot
// make both ends agree.
package authtest

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SCRAM is the client side of one SCRAM exchange.
type SCRAM struct {
	Hash     func() hash.Hash
	User     string
	Password string
	// GS2Flag is "n", "y" or "p=<type>".
	GS2Flag string
	// CBData is the channel binding data sent with "p=".
	CBData []byte

	nonce       string
	firstBare   string
	serverFinal []byte
}

// First returns the client-first-message.
func (c *SCRAM) First() []byte {
	var b [12]byte
	_, _ = rand.Read(b[:])
	c.nonce = base64.RawStdEncoding.EncodeToString(b[:])
	c.firstBare = "n=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.User) + ",r=" + c.nonce
	return []byte(c.gs2Header() + c.firstBare)
}

func (c *SCRAM) gs2Header() string { return c.GS2Flag + ",," }

// Final answers the server-first-message with the client-final-message.
func (c *SCRAM) Final(serverFirst []byte) ([]byte, error) {
	attrs := map[string]string{}
	for _, a := range strings.Split(string(serverFirst), ",") {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("authtest: bad server-first %q", serverFirst)
		}
		attrs[k] = v
	}
	if !strings.HasPrefix(attrs["r"], c.nonce) {
		return nil, errors.New("authtest: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		return nil, err
	}
	iter, err := strconv.Atoi(attrs["i"])
	if err != nil {
		return nil, err
	}
	cbind := []byte(c.gs2Header())
	if strings.HasPrefix(c.GS2Flag, "p=") {
		cbind = append(cbind, c.CBData...)
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbind) + ",r=" + attrs["r"]
	authMessage := c.firstBare + "," + string(serverFirst) + "," + withoutProof
	salted, err := pbkdf2.Key(c.Hash, c.Password, salt, iter, c.Hash().Size())
	if err != nil {
		return nil, err
	}
	clientKey := mac(c.Hash, salted, "Client Key")
	h := c.Hash()
	h.Write(clientKey)
	sig := mac(c.Hash, h.Sum(nil), authMessage)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	c.serverFinal = []byte("v=" + base64.StdEncoding.EncodeToString(mac(c.Hash, mac(c.Hash, salted, "Server Key"), authMessage)))
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks the server-final-message (the server's signature).
func (c *SCRAM) Verify(serverFinal []byte) error {
	if !hmac.Equal(serverFinal, c.serverFinal) {
		return fmt.Errorf("authtest: server signature %q, want %q", serverFinal, c.serverFinal)
	}
	return nil
}

func mac(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// HT is the client side of an HT-SHA-256 mechanism (XEP-0484 FAST).
type HT struct {
	User  string
	Token string
	// CBData is the channel binding data (nil for -NONE).
	CBData []byte
}

// Initial returns the initial response: authcid NUL HMAC(token,
// "Initiator" || cb).
func (c HT) Initial() []byte {
	return append([]byte(c.User+"\x00"), mac(sha256.New, []byte(c.Token), "Initiator"+string(c.CBData))...)
}

// Verify checks the server's additional data: HMAC(token, "Responder" ||
// cb).
func (c HT) Verify(additional []byte) error {
	if !hmac.Equal(additional, mac(sha256.New, []byte(c.Token), "Responder"+string(c.CBData))) {
		return errors.New("authtest: wrong HT responder data")
	}
	return nil
}

// Exporter is the client's tls-exporter binding (RFC 9266).
func Exporter(cs tls.ConnectionState) []byte {
	b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		return nil
	}
	return b
}

// ServerEndPoint is the client's tls-server-end-point binding for a
// server certificate signed with SHA-256 (RFC 5929 §4.1); other
// algorithms are an error, so that a test never guesses.
func ServerEndPoint(cs tls.ConnectionState) ([]byte, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("authtest: no server certificate")
	}
	leaf := cs.PeerCertificates[0]
	switch leaf.SignatureAlgorithm {
	case x509.ECDSAWithSHA256, x509.SHA256WithRSA, x509.SHA256WithRSAPSS:
	default:
		return nil, fmt.Errorf("authtest: certificate signed with %v", leaf.SignatureAlgorithm)
	}
	sum := sha256.Sum256(leaf.Raw)
	return sum[:], nil
}
