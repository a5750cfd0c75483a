package s2s

import (
	"crypto/tls"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// rawPeer is a hand-driven s2s peer: it sends XML and reads elements.
type rawPeer struct {
	t    *testing.T
	conn net.Conn
	rd   *wire.Reader
	hdr  *wire.Element
}

func dialRaw(t *testing.T, addr string) *rawPeer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return &rawPeer{t: t, conn: conn}
}

func (p *rawPeer) send(s string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// open sends a stream header and reads the answer and the features.
func (p *rawPeer) open(from, to string) *wire.Element {
	p.t.Helper()
	p.send(string(streamHeader(from, to, "")))
	p.rd = wire.NewReader(p.conn, wire.Limits{})
	hdr, err := p.rd.Header()
	if err != nil {
		p.t.Fatal(err)
	}
	p.hdr = hdr
	return p.next()
}

func (p *rawPeer) next() *wire.Element {
	p.t.Helper()
	el, err := p.rd.Next()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return el
}

// starttls upgrades the connection, presenting cert (may be nil).
func (p *rawPeer) starttls(cert *issued) {
	p.t.Helper()
	p.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if el := p.next(); el.LocalName() != "proceed" {
		p.t.Fatalf("got %s", el)
	}
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.tls}
	}
	tc := tls.Client(p.conn, cfg)
	if err := tc.Handshake(); err != nil {
		p.t.Fatal(err)
	}
	p.conn = tc
}

// expectStreamError reads until a stream error and checks its condition.
func (p *rawPeer) expectStreamError(cond string) {
	p.t.Helper()
	for {
		el, err := p.rd.Next()
		if err != nil {
			p.t.Fatalf("no stream error %s: %v", cond, err)
		}
		if el.Name == "stream:error" {
			if got := streamErrorCondition(el); got != cond {
				p.t.Fatalf("stream error %s, want %s", got, cond)
			}
			return
		}
	}
}

func TestIncomingStreamRules(t *testing.T) {
	ca := newTestCA(t)
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath, secret: "b-secret"})
	aCert := domainCert(t, ca, "a.test")

	t.Run("features before TLS offer only required starttls", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		f := p.open("a.test", "b.test")
		st := f.Child("starttls", wire.NSTLS)
		if st == nil || st.Child("required", "") == nil || len(f.Children) != 1 {
			t.Fatalf("features %s", f)
		}
		if p.hdr.ID() == "" || p.hdr.From() != "b.test" {
			t.Fatalf("header %s", p.hdr)
		}
	})
	t.Run("stanza before TLS", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		p.open("a.test", "b.test")
		p.send(msg("x@a.test", "bob@b.test", "plain").String())
		p.expectStreamError("policy-violation")
	})
	t.Run("unknown host", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		p.send(string(streamHeader("a.test", "c.test", "")))
		p.rd = wire.NewReader(p.conn, wire.Limits{})
		if _, err := p.rd.Header(); err != nil {
			t.Fatal(err)
		}
		p.expectStreamError("host-unknown")
	})
	t.Run("stanza too large", func(t *testing.T) {
		// After TLS, so that a small stanza would get not-authorized.
		p := dialRaw(t, b.addr())
		p.open("a.test", "b.test")
		p.starttls(aCert)
		p.open("a.test", "b.test")
		// Written alongside the read: the server stops reading at the
		// limit, answers and closes, so the rest of the write may be cut
		// off (a reset), which is the point, not a failure.
		big := msg("x@a.test", "bob@b.test", strings.Repeat("x", b.cfg.C2S.MaxStanzaBytes+10)).String()
		go func() { _, _ = p.conn.Write([]byte(big)) }()
		p.expectStreamError("policy-violation")
	})
	t.Run("stanza before authentication", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		p.open("a.test", "b.test")
		p.starttls(aCert)
		p.open("a.test", "b.test")
		p.send(msg("x@a.test", "bob@b.test", "early").String())
		p.expectStreamError("not-authorized")
	})
	t.Run("EXTERNAL offered for a valid certificate and then spoofing", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		p.open("a.test", "b.test")
		p.starttls(aCert)
		f := p.open("a.test", "b.test")
		if !hasMechanism(f, "EXTERNAL") {
			t.Fatalf("no EXTERNAL in %s", f)
		}
		p.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte("a.test")) + `</auth>`)
		if el := p.next(); el.LocalName() != "success" {
			t.Fatalf("got %s", el)
		}
		p.rd.Restart()
		p.send(string(streamHeader("a.test", "b.test", "")))
		if _, err := p.rd.Header(); err != nil {
			t.Fatal(err)
		}
		p.next() // features
		p.send(msg("alice@a.test", "bob@b.test", "legit").String())
		b.expect(isBody("legit"), "legit stanza")
		p.send(msg("mallory@evil.test", "bob@b.test", "spoof").String())
		p.expectStreamError("invalid-from")
		b.expectNone()
	})
	t.Run("EXTERNAL refused for another domain", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		p.open("c.test", "b.test")
		p.starttls(aCert)
		f := p.open("c.test", "b.test")
		if hasMechanism(f, "EXTERNAL") {
			t.Fatalf("EXTERNAL offered for a certificate naming another domain: %s", f)
		}
		p.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>`)
		if el := p.next(); el.LocalName() != "failure" || el.Child("not-authorized", "") == nil {
			t.Fatalf("got %s", el)
		}
	})
	t.Run("db:verify answers with the shared secret", func(t *testing.T) {
		p := dialRaw(t, b.addr())
		p.open("c.test", "b.test")
		p.starttls(nil)
		p.open("c.test", "b.test")
		good := dialbackKey("b-secret", "c.test", "b.test", "sid1")
		for _, tc := range []struct{ key, want string }{{good, "valid"}, {good + "0", "invalid"}} {
			p.send(`<db:verify from='c.test' to='b.test' id='sid1'>` + tc.key + `</db:verify>`)
			el := p.next()
			if el.Name != "db:verify" || el.Type() != tc.want || el.ID() != "sid1" || el.From() != "b.test" || el.To() != "c.test" {
				t.Fatalf("got %s, want type %s", el, tc.want)
			}
		}
	})
}

// TestDirectTLS: a "tls://" static entry dials TLS from the first byte
// (XEP-0368) and the listener recognises the ClientHello.
func TestDirectTLS(t *testing.T) {
	ca := newTestCA(t)
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath,
		hosts: map[string]string{"b.test": "tls://" + b.addr()}})
	b.cfg.S2S.Hosts["a.test"] = a.addr()
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "direct"))
	b.expect(isBody("direct"), "direct TLS message")
}

// TestDialbackAuthoritativeSilent: when the authoritative server of the
// claimed domain cannot be reached, the db:result is answered with an
// error, and stanzas from that domain stay refused.
func TestDialbackAuthoritativeSilent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			defer c.Close()
		}
	}()
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"),
		hosts: map[string]string{"c.test": ln.Addr().String()}, connectTimeout: 300 * time.Millisecond})
	p := dialRaw(t, b.addr())
	p.open("c.test", "b.test")
	p.starttls(domainCert(t, nil, "c.test"))
	f := p.open("c.test", "b.test")
	if f.Child("dialback", nsDialbackFeature) == nil || hasMechanism(f, "EXTERNAL") {
		t.Fatalf("features %s", f)
	}
	p.send(`<db:result from='c.test' to='b.test'>` + dialbackKey("x", "b.test", "c.test", p.hdr.ID()) + `</db:result>`)
	el := p.next()
	if el.Name != "db:result" || el.Type() != "error" || el.To() != "c.test" {
		t.Fatalf("got %s", el)
	}
	p.send(msg("x@c.test", "bob@b.test", "unverified").String())
	p.expectStreamError("not-authorized")
	b.expectNone()
}
