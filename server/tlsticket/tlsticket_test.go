package tlsticket

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

func testCert(t testing.TB) tls.Certificate { return testutil.SelfSignedCert(t, "example.com") }

// node is a TLS server on loopback, as one node's listener.
type node struct {
	ln  net.Listener
	cfg *tls.Config
}

func newNode(t testing.TB, cert tls.Certificate, secret string, clock func() time.Time) *node {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if secret != "" {
		s, err := New(secret, clock)
		if err != nil {
			t.Fatal(err)
		}
		s.Install(cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// A listener clones the configuration, as c2s and HTTPS do.
	n := &node{ln: ln, cfg: cfg.Clone()}
	return n
}

// handshake connects a client with cache to n and reports whether the
// session was resumed, as both ends saw it. The server writes a byte, so
// the client reads the tickets that come before it.
func (n *node) handshake(t testing.TB, cache tls.ClientSessionCache, maxVersion uint16) bool {
	t.Helper()
	var wg sync.WaitGroup
	var serverResumed bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s := tls.Server(c, n.cfg)
		if s.Handshake() != nil {
			return
		}
		serverResumed = s.ConnectionState().DidResume
		_, _ = s.Write([]byte{1})
		_, _ = io.ReadFull(s, make([]byte, 1))
	}()
	c, err := net.Dial("tcp", n.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cl := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "example.com", ClientSessionCache: cache, MaxVersion: maxVersion})
	if err := cl.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(cl, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	_, _ = cl.Write([]byte{1})
	resumed := cl.ConnectionState().DidResume
	cl.Close()
	wg.Wait()
	if resumed != serverResumed {
		t.Fatalf("client says resumed %v, server %v", resumed, serverResumed)
	}
	return resumed
}

// A session started on one node resumes on another node with the same
// secret, not on one with another secret or none.
func TestResumeOnAnotherNode(t *testing.T) {
	cert := testCert(t)
	a := newNode(t, cert, "cluster secret", nil)
	b := newNode(t, cert, "cluster secret", nil)
	other := newNode(t, cert, "another cluster", nil)
	plain := newNode(t, cert, "", nil)

	cache := tls.NewLRUClientSessionCache(8)
	if a.handshake(t, cache, 0) {
		t.Fatal("the first handshake resumed")
	}
	if !b.handshake(t, cache, 0) {
		t.Fatal("a session from node a did not resume on node b")
	}
	if !a.handshake(t, cache, 0) {
		t.Fatal("a session from node b did not resume on node a")
	}
	for name, n := range map[string]*node{"another secret": other, "no secret": plain} {
		fresh := tls.NewLRUClientSessionCache(8)
		a.handshake(t, fresh, 0)
		if n.handshake(t, fresh, 0) {
			t.Errorf("a session from node a resumed on a node with %s", name)
		}
	}
}

// TLS 1.2 sessions resume on the node that started them only: their
// tickets carry the master secret and stay under crypto/tls's own keys.
func TestTLS12StaysOnItsNode(t *testing.T) {
	cert := testCert(t)
	a := newNode(t, cert, "cluster secret", nil)
	b := newNode(t, cert, "cluster secret", nil)
	cache := tls.NewLRUClientSessionCache(8)
	a.handshake(t, cache, tls.VersionTLS12)
	if b.handshake(t, cache, tls.VersionTLS12) {
		t.Fatal("a TLS 1.2 session resumed on another node")
	}
	if !b.handshake(t, cache, tls.VersionTLS12) {
		t.Fatal("a TLS 1.2 session did not resume on its own node")
	}
}

// A ticket opens for two periods after the one that sealed it (and on a
// node whose clock is a period behind), not later.
func TestKeyPeriods(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	now := base
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); now = base.Add(d); mu.Unlock() }
	s, err := New("cluster secret", clock)
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := s.seal([]byte("session"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {2 * Period, true}, {-Period, true}, {3 * Period, false}, {-2 * Period, false}} {
		set(c.at)
		if b, ok := s.open(ticket); ok != c.want || ok && string(b) != "session" {
			t.Errorf("at %v: opened %v (%q), want %v", c.at, ok, b, c.want)
		}
	}
	set(0)
	bad := append([]byte(nil), ticket...)
	bad[len(bad)-1] ^= 1
	if _, ok := s.open(bad); ok {
		t.Error("a changed ticket opened")
	}
	bad = append([]byte(nil), ticket...)
	bad[3] ^= 1 // the period number, which is authenticated
	if _, ok := s.open(bad); ok {
		t.Error("a ticket with another period number opened")
	}
	if _, err := New("", nil); err == nil {
		t.Error("an empty secret was taken")
	}
}

// rsaCert is a certificate with an RSA-2048 key, as operators' files
// often have.
func rsaCert(b testing.TB) tls.Certificate {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.com"},
		DNSNames: []string{"example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// BenchmarkHandshake: what a resumed session saves, server and client of
// one handshake together, with the certificate Aviary generates (ECDSA
// P-256) and with an RSA-2048 one.
func BenchmarkHandshake(b *testing.B) {
	for _, key := range []string{"ecdsa", "rsa"} {
		cert := testCert(b)
		if key == "rsa" {
			cert = rsaCert(b)
		}
		for _, resumed := range []bool{false, true} {
			name := key + "/full"
			if resumed {
				name = key + "/resumed"
			}
			b.Run(name, func(b *testing.B) {
				n := newNode(b, cert, "cluster secret", nil)
				var cache tls.ClientSessionCache
				if resumed {
					cache = tls.NewLRUClientSessionCache(8)
					n.handshake(b, cache, 0)
				}
				b.ResetTimer()
				for b.Loop() {
					if got := n.handshake(b, cache, 0); got != resumed {
						b.Fatalf("resumed %v", got)
					}
				}
			})
		}
	}
}
