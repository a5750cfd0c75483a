// Package tlsticket lets every node of a cluster resume the TLS sessions
// the others started.
//
// A client that reconnects (a phone changing networks, every client of a
// node that died or drains) can resume its TLS session with a ticket the
// server gave it (RFC 8446 §2.2): the server skips the certificate and its
// signature, the client skips verifying the chain. crypto/tls seals
// tickets with keys of its own, random per process, so a ticket from one
// node is refused by every other and a cluster's reconnecting clients all
// pay the full handshake, on the survivors, at the worst moment. Measured
// (BenchmarkHandshake: server and client of one handshake on loopback,
// TLS 1.3): 1.08 ms in full against 0.82 ms resumed with the ECDSA P-256
// certificates Aviary generates and ACME orders, 2.45 ms against 0.87 ms
// with an RSA-2048 certificate.
//
// Install seals tickets with keys every node derives from the cluster
// secret (HKDF-SHA256, as the links' key is), a new key every Period, so
// any node opens a ticket any node sealed, with no coordination and
// nothing stored: the keys of the current period, the two before it (a
// ticket lives up to three periods) and the next (a node whose clock is
// ahead) open tickets; the current one seals.
//
// Only TLS 1.3 sessions travel between nodes. A TLS 1.3 resumption still
// runs an ephemeral key exchange (crypto/tls offers psk_dhe_ke only), so
// a ticket key learnt later does not decrypt a recorded connection; a
// TLS 1.2 ticket carries the session's master secret, so TLS 1.2
// sessions keep crypto/tls's own per-process keys and resume on the node
// that started them only.
//
// On a resumed session no certificate is presented, so the node cannot
// tell which one the client saw (nodes may serve different ones): c2s
// then offers the tls-exporter channel binding and not
// tls-server-end-point (server/c2s channel.go), as on a session resumed
// on its own node.
package tlsticket

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"
)

// Period is how long one ticket key seals new tickets.
const Period = 12 * time.Hour

// version is the first byte of a ticket sealed here; anything else is
// crypto/tls's own.
const version = 0xa1

// header is the version byte and the key's period number, both also
// authenticated as the AEAD's additional data.
const header = 1 + 8

// Sealer seals and opens tickets with keys derived from a secret.
type Sealer struct {
	secret []byte
	now    func() time.Time

	mu   sync.Mutex
	keys map[int64]cipher.AEAD // by period number; a few at a time
}

// New returns a Sealer for secret (the cluster secret; it must not be
// empty). now is the clock (nil: time.Now).
func New(secret string, now func() time.Time) (*Sealer, error) {
	if secret == "" {
		return nil, errors.New("tlsticket: empty secret")
	}
	if now == nil {
		now = time.Now
	}
	return &Sealer{secret: []byte(secret), now: now, keys: map[int64]cipher.AEAD{}}, nil
}

// Install makes cfg seal TLS 1.3 tickets with the cluster's keys and open
// them, and leaves TLS 1.2 tickets to cfg's own keys. Install before cfg
// is cloned for listeners: the clones share the callbacks.
func (s *Sealer) Install(cfg *tls.Config) {
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if cs.Version != tls.VersionTLS13 {
			return cfg.EncryptTicket(cs, ss)
		}
		b, err := ss.Bytes()
		if err != nil {
			return nil, err
		}
		return s.seal(b)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		if len(identity) == 0 || identity[0] != version {
			return cfg.DecryptTicket(identity, cs)
		}
		b, ok := s.open(identity)
		if !ok {
			// Expired, or crypto/tls's own whose first byte (random)
			// happened to be ours: it opens it or a full handshake runs.
			return cfg.DecryptTicket(identity, cs)
		}
		ss, err := tls.ParseSessionState(b)
		if err != nil {
			return nil, nil
		}
		return ss, nil
	}
}

func (s *Sealer) period(t time.Time) int64 { return t.Unix() / int64(Period/time.Second) }

// key returns the AEAD for period n, deriving it on first use.
func (s *Sealer) key(n int64) cipher.AEAD {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[n]; k != nil {
		return k
	}
	raw, err := hkdf.Key(sha256.New, s.secret, nil, "aviary tls session ticket key v1 "+strconv.FormatInt(n, 10), 32)
	if err != nil {
		return nil
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil
	}
	k, err := cipher.NewGCM(block)
	if err != nil {
		return nil
	}
	for old := range s.keys {
		if old < n-3 || old > n+3 {
			delete(s.keys, old) // a few periods' keys are all ever used
		}
	}
	s.keys[n] = k
	return k
}

func (s *Sealer) seal(plain []byte) ([]byte, error) {
	n := s.period(s.now())
	k := s.key(n)
	if k == nil {
		return nil, errors.New("tlsticket: no key")
	}
	out := make([]byte, header, header+k.NonceSize()+len(plain)+k.Overhead())
	out[0] = version
	binary.BigEndian.PutUint64(out[1:header], uint64(n))
	nonce := out[header : header+k.NonceSize()]
	out = out[:header+k.NonceSize()]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.Seal(out, nonce, plain, out[:header]), nil
}

func (s *Sealer) open(ticket []byte) ([]byte, bool) {
	if len(ticket) < header {
		return nil, false
	}
	n := int64(binary.BigEndian.Uint64(ticket[1:header]))
	now := s.period(s.now())
	if n < now-2 || n > now+1 {
		return nil, false
	}
	k := s.key(n)
	if k == nil || len(ticket) < header+k.NonceSize()+k.Overhead() {
		return nil, false
	}
	nonce := ticket[header : header+k.NonceSize()]
	plain, err := k.Open(nil, nonce, ticket[header+k.NonceSize():], ticket[:header])
	if err != nil {
		return nil, false
	}
	return plain, true
}
