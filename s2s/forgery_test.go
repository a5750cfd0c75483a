package s2s

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// Attacks on Server Dialback (XEP-0220 §4.1, "unsolicited dialback"), each
// sent byte for byte over raw sockets to a running listener. Every test
// also runs a canary: a legitimate dialback-authenticated peer that must
// keep federating with the attacked node.

// gate is a TCP relay to a peer that holds every connection until
// released: the attacked node's outgoing stream to the claimed domain
// exists (its verification request is pending) but no answer can come back
// yet. dialed receives one value per connection accepted.
type gate struct {
	addr    string
	dialed  chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	target  string
}

func newGate(t *testing.T) *gate {
	g := &gate{dialed: make(chan struct{}, 16), release: make(chan struct{})}
	g.addr = fakePeer(t, func(c net.Conn) {
		defer c.Close()
		g.dialed <- struct{}{}
		<-g.release
		g.mu.Lock()
		target := g.target
		g.mu.Unlock()
		if target == "" {
			return // a silent authority: hang up once released
		}
		up, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
		<-done
	})
	t.Cleanup(g.open)
	return g
}

func (g *gate) relayTo(addr string) {
	g.mu.Lock()
	g.target = addr
	g.mu.Unlock()
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// waitDialed waits until the attacked node connected to the gate.
func (g *gate) waitDialed(t *testing.T) {
	t.Helper()
	select {
	case <-g.dialed:
	case <-time.After(10 * time.Second):
		t.Fatal("the attacked node never called the claimed domain back")
	}
}

// securedRaw opens a stream claiming from, upgrades it with STARTTLS
// (presenting cert, which may be nil) and reopens it; it returns the peer
// and the features of the secure stream.
func securedRaw(t *testing.T, addr, from, to string, cert *issued) (*rawPeer, *wire.Element) {
	t.Helper()
	p := dialRaw(t, addr)
	p.open(from, to)
	p.starttls(cert)
	f := p.open(from, to)
	return p, f
}

// expectDialbackResult reads the next element and checks it is a
// <db:result/> of type typ (and, for errors, of condition cond).
func (p *rawPeer) expectDialbackResult(typ, cond string) *wire.Element {
	p.t.Helper()
	el := p.next()
	if el.Name != "db:result" || el.Type() != typ {
		p.t.Fatalf("got %s, want <db:result type='%s'/>", el, typ)
	}
	if cond != "" {
		e := el.Child("error", "")
		if e == nil || e.Child(cond, wire.NSStanzas) == nil {
			p.t.Fatalf("got %s, want error condition %s", el, cond)
		}
	}
	return el
}

// forgeVerify runs the forged sequence of issue 16 against node b for the
// claimed domain: stream 1 claims the domain and sends a bogus key; once b
// called the claimed domain back (g saw the connection), a second,
// unauthenticated stream sends the authoritative server's answer itself.
// It returns stream 1 after checking that b ended stream 2.
func forgeVerify(t *testing.T, b *testNode, g *gate, claimed string) *rawPeer {
	t.Helper()
	p1, _ := securedRaw(t, b.addr(), claimed, "b.test", nil)
	streamID := p1.hdr.ID()
	p1.send(`<db:result from='` + claimed + `' to='b.test'>bogus</db:result>`)
	g.waitDialed(t) // b's verification request is pending now

	p2, _ := securedRaw(t, b.addr(), claimed, "b.test", nil)
	p2.send(`<db:verify from='` + claimed + `' to='b.test' id='` + streamID + `' type='valid'/>`)
	// A verification request right after it tells, by its answer, that b
	// read the forged answer and kept the stream.
	p2.send(`<db:verify from='` + claimed + `' to='b.test' id='sync'>00</db:verify>`)
	el := p2.next()
	if el.Name != "stream:error" {
		_ = p1.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, _ := p1.rd.Next()
		t.Fatalf("the forged <db:verify type='valid'/> on an incoming stream was accepted (stream 2 got %s; stream 1 then got %v)", el, got)
	}
	if cond := streamErrorCondition(el); cond != "not-authorized" {
		t.Fatalf("stream 2 ended with %s, want not-authorized", cond)
	}
	return p1
}

// sendAsClaimed has stream 1 send a stanza as a user of the claimed domain
// and checks b refuses it and delivers nothing.
func sendAsClaimed(t *testing.T, b *testNode, p1 *rawPeer, claimed string) {
	t.Helper()
	p1.send(msg("admin@"+claimed, "bob@b.test", "forged").String())
	p1.expectStreamError("not-authorized")
	b.expectNone()
}

// canary checks that a legitimate dialback peer (self-signed certificate,
// so no SASL EXTERNAL) still federates with b, and b with it.
func canary(t *testing.T, a, b *testNode, body string) {
	t.Helper()
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", body))
	b.expect(isBody(body), "canary message at b")
	b.svc.Send(t.Context(), msg("bob@b.test", "alice@a.test", body+" back"))
	a.expect(isBody(body+" back"), "canary answer at a")
	if c := a.outConnFor("a.test", "b.test"); c == nil || c.methodNow() != "dialback" {
		t.Fatal("the canary did not authenticate by dialback")
	}
}

func (c *outConn) methodNow() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.method
}

// TestForgedDialbackVerify: a <db:verify type='valid'/> sent by the
// attacker on an incoming stream must not authenticate the attacker's other
// stream, whether the claimed domain is slow to answer or is a live
// Aviary domain reached over a fresh outgoing stream.
func TestForgedDialbackVerify(t *testing.T) {
	t.Run("claimed domain silent", func(t *testing.T) {
		g := newGate(t) // trusted.example accepts and never answers
		b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"),
			hosts: map[string]string{"trusted.example": g.addr}})
		a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"),
			hosts: map[string]string{"b.test": b.addr()}})
		b.cfg.S2S.Hosts["a.test"] = a.addr()

		p1 := forgeVerify(t, b, g, "trusted.example")
		sendAsClaimed(t, b, p1, "trusted.example")
		canary(t, a, b, "canary after silent-domain forgery")
	})
	t.Run("claimed domain live", func(t *testing.T) {
		// b reaches a.test through the gate, so its verification request
		// is pending on a fresh outgoing stream while the forgery arrives.
		g := newGate(t)
		b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"),
			hosts: map[string]string{"a.test": g.addr}})
		a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"),
			hosts: map[string]string{"b.test": b.addr()}})
		g.relayTo(a.addr())

		p1 := forgeVerify(t, b, g, "a.test")
		g.open() // a.test now answers the real request: the key is bogus
		p1.expectDialbackResult("invalid", "")
		p1.expectStreamError("not-authorized")
		b.expectNone()
		canary(t, a, b, "canary after live-domain forgery")
	})
}

// TestUnsolicitedDialbackOnIncomingStream: dialback answers on an incoming
// stream (we never send requests there, and do not offer XEP-0288 bidi)
// end that stream; requests for a stream ID b never issued are answered
// invalid and authenticate nothing.
func TestUnsolicitedDialbackOnIncomingStream(t *testing.T) {
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"), secret: "b-secret"})
	for _, tc := range []struct{ name, answer string }{
		{"result valid", `<db:result from='trusted.example' to='b.test' type='valid'/>`},
		{"verify valid for no pending request", `<db:verify from='trusted.example' to='b.test' id='never-issued' type='valid'/>`},
		{"verify with another prefix", `<x:verify xmlns:x='jabber:server:dialback' from='trusted.example' to='b.test' id='never-issued' type='valid'/>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := securedRaw(t, b.addr(), "trusted.example", "b.test", nil)
			p.send(tc.answer)
			p.expectStreamError("not-authorized")
			b.expectNone()
		})
	}
	t.Run("verify request for a foreign target", func(t *testing.T) {
		p, _ := securedRaw(t, b.addr(), "c.test", "b.test", nil)
		key := dialbackKey("b-secret", "c.test", "other.test", "sid1")
		p.send(`<db:verify from='c.test' to='other.test' id='sid1'>` + key + `</db:verify>`)
		el := p.next()
		if el.Name != "db:verify" || el.Type() != "error" || el.Child("error", "").Child("item-not-found", wire.NSStanzas) == nil {
			t.Fatalf("got %s, want a dialback error item-not-found (XEP-0220 §2.4)", el)
		}
	})
}

// TestDialbackForOwnDomain: no peer authenticates as b's own domain, by
// dialback or by a certificate naming it (a wildcard certificate of a
// sibling domain, a stolen one), so stanzas from b's own users never come
// in over s2s.
func TestDialbackForOwnDomain(t *testing.T) {
	ca := newTestCA(t)
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	t.Run("dialback", func(t *testing.T) {
		p, _ := securedRaw(t, b.addr(), "b.test", "b.test", domainCert(t, ca, "b.test"))
		p.send(`<db:result from='b.test' to='b.test'>` + dialbackKey("x", "b.test", "b.test", p.hdr.ID()) + `</db:result>`)
		p.expectDialbackResult("error", "not-acceptable")
		p.send(msg("admin@b.test", "bob@b.test", "from ourselves").String())
		p.expectStreamError("not-authorized")
		b.expectNone()
		if c := b.outConnFor("b.test", "b.test"); c != nil {
			t.Fatal("b opened a stream to itself to verify the key")
		}
	})
	t.Run("SASL EXTERNAL", func(t *testing.T) {
		p, f := securedRaw(t, b.addr(), "b.test", "b.test", domainCert(t, ca, "b.test"))
		if hasMechanism(f, "EXTERNAL") {
			t.Errorf("EXTERNAL offered to a peer claiming our own domain: %s", f)
		}
		p.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte("b.test")) + `</auth>`)
		if el := p.next(); el.LocalName() != "failure" || el.Child("not-authorized", "") == nil {
			t.Fatalf("got %s, want <failure><not-authorized/></failure>", el)
		}
		p.send(msg("admin@b.test", "bob@b.test", "from ourselves").String())
		p.expectStreamError("not-authorized")
		b.expectNone()
	})
}

// blockingResolver never answers: a verification stays pending until its
// deadline.
type blockingResolver struct{}

func (blockingResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	<-ctx.Done()
	return "", nil, ctx.Err()
}

// TestDialbackPendingLimits: one stream cannot start the same verification
// twice, nor more than maxPendingDialback at once (each costs the node an
// outgoing connection to a domain the peer names).
func TestDialbackPendingLimits(t *testing.T) {
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"), resolver: blockingResolver{}})
	p, _ := securedRaw(t, b.addr(), "d0.test", "b.test", nil)
	p.send(`<db:result from='d0.test' to='b.test'>k</db:result>`)
	p.send(`<db:result from='d0.test' to='b.test'>k2</db:result>`)
	if el := p.expectDialbackResult("error", "conflict"); el.To() != "d0.test" {
		t.Fatalf("answer to %s", el.To())
	}
	for i := 1; i < maxPendingDialback; i++ {
		p.send(fmt.Sprintf(`<db:result from='d%d.test' to='b.test'>k</db:result>`, i))
	}
	p.send(`<db:result from='one-too-many.test' to='b.test'>k</db:result>`)
	if el := p.expectDialbackResult("error", "resource-constraint"); el.To() != "one-too-many.test" {
		t.Fatalf("answer to %s", el.To())
	}
}

// TestVerifyAnswerBeforeRequest: on b's outgoing stream, a verify answer
// counts only once b sent the request on the secure stream. Here the
// claimed domain's server (or anyone on the path) answers in the clear,
// before STARTTLS, with the ID it learnt from the attacker's stream.
func TestVerifyAnswerBeforeRequest(t *testing.T) {
	streamID := make(chan string, 1)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	authority := fakePeer(t, func(c net.Conn) {
		defer c.Close()
		rd := wire.NewReader(c, wire.Limits{})
		if _, err := rd.Header(); err != nil {
			return
		}
		id := <-streamID
		_, _ = c.Write(streamHeader("trusted.example", "b.test", "x"))
		_, _ = c.Write([]byte(`<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>`))
		_, _ = c.Write([]byte(`<db:verify from='trusted.example' to='b.test' id='` + id + `' type='valid'/>`))
		<-done
	})
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"),
		hosts: map[string]string{"trusted.example": authority}, connectTimeout: 2 * time.Second})
	p, _ := securedRaw(t, b.addr(), "trusted.example", "b.test", nil)
	streamID <- p.hdr.ID()
	p.send(`<db:result from='trusted.example' to='b.test'>bogus</db:result>`)
	el := p.next()
	if el.Name != "db:result" || el.Type() == "valid" {
		t.Fatalf("an answer sent before the request authenticated the stream: %s", el)
	}
	sendAsClaimed(t, b, p, "trusted.example")
}
