package s2s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/wire"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemPath string
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Aviary test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(t.TempDir(), "ca.pem")
	writePEM(t, p, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, pemPath: p}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// certNames are the identities put into a test certificate.
type certNames struct {
	dns      []string
	xmppAddr []string
	srv      []string
}

// sanExtension builds a subjectAltName with dNSName and XMPP otherNames.
func sanExtension(t testing.TB, n certNames) pkix.Extension {
	t.Helper()
	var raw []asn1.RawValue
	for _, d := range n.dns {
		raw = append(raw, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	other := func(oid asn1.ObjectIdentifier, tag int, v string) asn1.RawValue {
		oidDER, err := asn1.Marshal(oid)
		if err != nil {
			t.Fatal(err)
		}
		inner, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		wrapped, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner})
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oidDER, wrapped...)}
	}
	for _, a := range n.xmppAddr {
		raw = append(raw, other(oidXMPPAddr, asn1.TagUTF8String, a))
	}
	for _, s := range n.srv {
		raw = append(raw, other(oidSRVName, asn1.TagIA5String, s))
	}
	val, err := asn1.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: val}
}

// issued is a leaf certificate with its key, also written as PEM files.
type issued struct {
	tls      tls.Certificate
	leaf     *x509.Certificate
	certPath string
	keyPath  string
}

// issue makes a leaf certificate for names, signed by ca (self-signed
// when ca is nil).
func issue(t testing.TB, ca *testCA, cn string, n certNames) *issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: cn},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{sanExtension(t, n)},
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	is := &issued{
		tls:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		leaf:     leaf,
		certPath: filepath.Join(dir, cn+".crt"),
		keyPath:  filepath.Join(dir, cn+".key"),
	}
	writePEM(t, is.certPath, "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, is.keyPath, "EC PRIVATE KEY", kder)
	return is
}

// domainCert is the usual certificate for a domain: DNS-ID and XmppAddr.
func domainCert(t testing.TB, ca *testCA, domain string) *issued {
	return issue(t, ca, domain, certNames{dns: []string{domain}, xmppAddr: []string{domain}})
}

// testNode is one Service with a stub router: every delivered stanza is
// collected; IQ gets are answered with a result carrying the same payload.
type testNode struct {
	t    testing.TB
	svc  *Service
	cfg  *conf.Config
	got  chan *wire.Element
	echo bool
}

type nodeOpts struct {
	domain         string
	cert           *issued
	caFile         string
	secret         string
	require        bool
	hosts          map[string]string
	connectTimeout time.Duration
	idleTimeout    time.Duration
	noListen       bool
	resolver       Resolver
	serves         []string // service domains besides domain (ServesDomain)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("AVIARY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startNode(t testing.TB, o nodeOpts) *testNode {
	t.Helper()
	cfg := conf.Default()
	cfg.Domain = o.domain
	cfg.S2S.Listen = "127.0.0.1:0"
	if o.noListen {
		cfg.S2S.Listen = ""
	}
	cfg.S2S.Hosts = o.hosts
	if cfg.S2S.Hosts == nil {
		cfg.S2S.Hosts = map[string]string{}
	}
	cfg.S2S.CAFile = o.caFile
	cfg.S2S.DialbackSecret = o.secret
	cfg.S2S.RequireValidCerts = o.require
	cfg.S2S.ConnectTimeout = 10 * time.Second
	if o.connectTimeout > 0 {
		cfg.S2S.ConnectTimeout = o.connectTimeout
	}
	cfg.S2S.IdleTimeout = time.Minute
	if o.idleTimeout > 0 {
		cfg.S2S.IdleTimeout = o.idleTimeout
	}
	n := &testNode{t: t, cfg: cfg, got: make(chan *wire.Element, 100), echo: true}
	tlsCfg := &tls.Config{}
	if o.cert != nil {
		tlsCfg.Certificates = []tls.Certificate{o.cert.tls}
	}
	n.svc = New(cfg.S2S, Deps{Domain: cfg.Domain, MaxStanzaBytes: cfg.C2S.MaxStanzaBytes, TLS: tlsCfg, Deliver: n.deliver, Logger: testLogger(t).With("node", o.domain)})
	n.svc.Resolver = failingResolver{}
	if o.resolver != nil {
		n.svc.Resolver = o.resolver
	}
	if o.serves != nil {
		n.svc.ServesDomain = func(d string) bool { return slices.Contains(o.serves, d) }
	}
	if err := n.svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.svc.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", o.domain, err)
		}
	})
	return n
}

// addr is the node's s2s listener as host:port.
func (n *testNode) addr() string { return n.svc.Addr().String() }

func (n *testNode) deliver(ctx context.Context, el *wire.Element) {
	if n.echo && el.Name == "iq" && el.Type() == "get" {
		n.svc.Send(ctx, wire.IQResult(el, el.FirstChild()))
		return
	}
	n.got <- el
}

// expect waits for a delivered stanza matching fn.
func (n *testNode) expect(fn func(*wire.Element) bool, what string) *wire.Element {
	n.t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case el := <-n.got:
			if fn(el) {
				return el
			}
			n.t.Logf("%s: skipping %s", n.cfg.Domain, el)
		case <-deadline:
			n.t.Fatalf("%s: timed out waiting for %s", n.cfg.Domain, what)
			return nil
		}
	}
}

// expectNone asserts nothing was delivered (after the caller synchronized).
func (n *testNode) expectNone() {
	n.t.Helper()
	select {
	case el := <-n.got:
		n.t.Fatalf("%s: unexpected delivery %s", n.cfg.Domain, el)
	default:
	}
}

// outConnFor returns the current outgoing stream for a pair, or nil.
func (n *testNode) outConnFor(local, remote string) *outConn {
	n.svc.mu.Lock()
	defer n.svc.mu.Unlock()
	return n.svc.out[pairKey{local, remote}]
}

func (n *testNode) numIn() int {
	n.svc.mu.Lock()
	defer n.svc.mu.Unlock()
	return len(n.svc.in)
}

// failingResolver answers every SRV lookup with NXDOMAIN, so tests never
// reach real DNS.
type failingResolver struct{}

func (failingResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func msg(from, to, body string) *wire.Element {
	return wire.New("message", "from", from, "to", to, "type", "chat", "id", "m-"+body).
		Append(wire.New("body").SetText(body))
}

func isBody(body string) func(*wire.Element) bool {
	return func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == body
	}
}

func isErrorCond(cond string) func(*wire.Element) bool {
	return func(el *wire.Element) bool {
		if !el.IsError() {
			return false
		}
		e := el.Child("error", "")
		return e != nil && e.Child(cond, wire.NSStanzas) != nil
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// fakePeer listens on loopback and hands every accepted connection to
// serve (which owns it); it returns the address.
func fakePeer(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// srvRecord is an SRV record pointing at a loopback address.
func srvRecord(addr string, priority uint16) *net.SRV {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := net.LookupPort("tcp", port)
	return &net.SRV{Target: host, Port: uint16(p), Priority: priority}
}
