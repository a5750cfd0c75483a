package s2s

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/wire"
)

// pair starts two federating nodes, a.test and b.test, each knowing the
// other through the static map.
func pair(t *testing.T, aOpts, bOpts nodeOpts) (a, b *testNode) {
	t.Helper()
	if aOpts.domain == "" {
		aOpts.domain = "a.test"
	}
	if bOpts.domain == "" {
		bOpts.domain = "b.test"
	}
	b = startNode(t, bOpts)
	if aOpts.hosts == nil {
		aOpts.hosts = map[string]string{}
	}
	aOpts.hosts[bOpts.domain] = b.addr()
	a = startNode(t, aOpts)
	b.cfg.S2S.Hosts[aOpts.domain] = a.addr()
	return a, b
}

func TestFederationBothWays(t *testing.T) {
	ca := newTestCA(t)
	a, b := pair(t,
		nodeOpts{cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath},
		nodeOpts{cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})

	t.Run("message a to b", func(t *testing.T) {
		a.svc.Send(t.Context(), msg("alice@a.test/phone", "bob@b.test", "hello bob"))
		el := b.expect(isBody("hello bob"), "message at b")
		if el.From() != "alice@a.test/phone" || el.To() != "bob@b.test" {
			t.Fatalf("addresses changed: %s", el)
		}
		if el.HasAttr("xmlns") {
			t.Fatalf("stream namespace leaked into the stanza: %s", el)
		}
	})
	t.Run("message b to a", func(t *testing.T) {
		b.svc.Send(t.Context(), msg("bob@b.test/desk", "alice@a.test", "hello alice"))
		a.expect(isBody("hello alice"), "message at a")
	})
	t.Run("iq round trip", func(t *testing.T) {
		iq := wire.New("iq", "from", "alice@a.test/phone", "to", "b.test", "type", "get", "id", "ping1").
			Append(wire.NewNS("ping", wire.NSPing))
		a.svc.Send(t.Context(), iq)
		res := a.expect(func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "ping1" }, "iq result")
		if res.Type() != "result" || res.To() != "alice@a.test/phone" || res.From() != "b.test" {
			t.Fatalf("bad iq result %s", res)
		}
	})
	t.Run("presence", func(t *testing.T) {
		p := wire.New("presence", "from", "alice@a.test/phone", "to", "bob@b.test", "type", "subscribe")
		a.svc.Send(t.Context(), p)
		el := b.expect(func(el *wire.Element) bool { return el.Name == "presence" }, "presence at b")
		if el.Type() != "subscribe" {
			t.Fatalf("got %s", el)
		}
	})
	t.Run("authenticated with SASL EXTERNAL both ways", func(t *testing.T) {
		for _, c := range []*outConn{a.outConnFor("a.test", "b.test"), b.outConnFor("b.test", "a.test")} {
			if c == nil {
				t.Fatal("no outgoing stream")
			}
			c.mu.Lock()
			m := c.method
			c.mu.Unlock()
			if m != "sasl-external" {
				t.Fatalf("%s→%s authenticated by %q", c.key.local, c.key.remote, m)
			}
		}
	})
}

// TestCertificatePolicies covers valid, self-signed and misnamed peer
// certificates under both policies.
func TestCertificatePolicies(t *testing.T) {
	ca := newTestCA(t)
	otherCA := newTestCA(t)
	cases := []struct {
		name       string
		aCert      func() *issued
		require    bool
		wantMethod string // "" means refused
	}{
		{"valid cert, dialback allowed", func() *issued { return domainCert(t, ca, "a.test") }, false, "sasl-external"},
		{"valid cert, valid required", func() *issued { return domainCert(t, ca, "a.test") }, true, "sasl-external"},
		{"self-signed, dialback allowed", func() *issued { return domainCert(t, nil, "a.test") }, false, "dialback"},
		{"self-signed, valid required", func() *issued { return domainCert(t, nil, "a.test") }, true, ""},
		{"other CA, dialback allowed", func() *issued { return domainCert(t, otherCA, "a.test") }, false, "dialback"},
		{"other CA, valid required", func() *issued { return domainCert(t, otherCA, "a.test") }, true, ""},
		{"wrong name, dialback allowed", func() *issued { return domainCert(t, ca, "evil.test") }, false, "dialback"},
		{"wrong name, valid required", func() *issued { return domainCert(t, ca, "evil.test") }, true, ""},
		{"srv-id only, valid required", func() *issued {
			return issue(t, ca, "a.test", certNames{srv: []string{"_xmpp-server.a.test"}})
		}, true, "sasl-external"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// b judges a's certificate; a trusts b's (valid) certificate.
			a, b := pair(t,
				nodeOpts{cert: tc.aCert(), caFile: ca.pemPath, secret: "s"},
				nodeOpts{cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath, require: tc.require, secret: "t"})
			a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "hi"))
			if tc.wantMethod == "" {
				el := a.expect(isErrorCond("remote-server-not-found"), "bounce")
				if el.To() != "alice@a.test" || el.From() != "bob@b.test" {
					t.Fatalf("bounce misaddressed: %s", el)
				}
				b.expectNone()
				return
			}
			b.expect(isBody("hi"), "message at b")
			c := a.outConnFor("a.test", "b.test")
			if c == nil {
				t.Fatal("no outgoing stream")
			}
			c.mu.Lock()
			m := c.method
			c.mu.Unlock()
			if m != tc.wantMethod {
				t.Fatalf("authenticated by %q, want %q", m, tc.wantMethod)
			}
		})
	}
}

// TestOutgoingRequiresValidPeerCert: under RequireValidCerts the
// originating side also refuses a receiving server it cannot authenticate.
func TestOutgoingRequiresValidPeerCert(t *testing.T) {
	ca := newTestCA(t)
	a, b := pair(t,
		nodeOpts{cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath, require: true},
		nodeOpts{cert: domainCert(t, nil, "b.test"), caFile: ca.pemPath})
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "hi"))
	el := a.expect(isErrorCond("remote-server-not-found"), "bounce")
	if !strings.Contains(el.Child("error", "").ChildText("text", wire.NSStanzas), "certificate") {
		t.Fatalf("bounce text does not name the certificate: %s", el)
	}
	b.expectNone()
}

// TestDialbackSharedSecret: a key made by one node of a cluster verifies on
// another node with the same secret, and fails with a different one.
func TestDialbackSharedSecret(t *testing.T) {
	for _, tc := range []struct {
		name      string
		secretA2  string
		wantValid bool
	}{
		{"same secret", "cluster-secret", true},
		{"wrong secret", "other-secret", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// a1 and a2 serve a.test; b.test's callbacks go to a2.
			a2 := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"), secret: tc.secretA2})
			b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, nil, "b.test"),
				hosts: map[string]string{"a.test": a2.addr()}})
			a1 := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"), secret: "cluster-secret",
				hosts: map[string]string{"b.test": b.addr()}, noListen: true})
			a1.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "via dialback"))
			if tc.wantValid {
				b.expect(isBody("via dialback"), "message at b")
				return
			}
			el := a1.expect(isErrorCond("remote-server-not-found"), "bounce")
			if !strings.Contains(el.String(), "dialback") {
				t.Fatalf("bounce does not say dialback failed: %s", el)
			}
			b.expectNone()
		})
	}
}

// TestSpoofedFrom: a stanza whose from the stream did not authenticate
// closes the stream with <invalid-from/> and is not delivered.
func TestSpoofedFrom(t *testing.T) {
	ca := newTestCA(t)
	a, b := pair(t,
		nodeOpts{cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath},
		nodeOpts{cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "first"))
	b.expect(isBody("first"), "first message")
	c := a.outConnFor("a.test", "b.test")
	// Bypass Send's own check, as a malicious server would.
	c.enqueueStanza(queued{el: msg("mallory@evil.test", "bob@b.test", "spoofed")})
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.state != outClosed {
			return errors.New("stream still open")
		}
		if !errors.Is(c.err, ErrStreamError) || !strings.Contains(c.err.Error(), "invalid-from") {
			return fmt.Errorf("closed with %v", c.err)
		}
		return nil
	})
	b.expectNone()
}

// TestSilentPeer: a server that accepts and never answers makes queued
// stanzas bounce with remote-server-timeout after ConnectTimeout.
func TestSilentPeer(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	silent := fakePeer(t, func(c net.Conn) {
		<-done // hold it open, silent
		c.Close()
	})
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"),
		hosts: map[string]string{"silent.test": silent}, connectTimeout: 300 * time.Millisecond})
	a.svc.Send(t.Context(), msg("alice@a.test", "x@silent.test", "one"))
	a.svc.Send(t.Context(), msg("alice@a.test", "x@silent.test", "two"))
	for _, id := range []string{"m-one", "m-two"} {
		el := a.expect(isErrorCond("remote-server-timeout"), "timeout bounce")
		if el.ID() != id || el.To() != "alice@a.test" {
			t.Fatalf("bounce %s, want id %s", el, id)
		}
	}
}

// TestUnreachable: connection refused bounces with remote-server-not-found.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"),
		hosts: map[string]string{"gone.test": addr}})
	a.svc.Send(t.Context(), msg("alice@a.test", "x@gone.test", "hello?"))
	el := a.expect(isErrorCond("remote-server-not-found"), "bounce")
	if el.ID() != "m-hello?" || el.From() != "x@gone.test" {
		t.Fatalf("bounce %s", el)
	}
}

// TestConnectionReuse: stanzas to one domain share one stream.
func TestConnectionReuse(t *testing.T) {
	ca := newTestCA(t)
	a, b := pair(t,
		nodeOpts{cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath},
		nodeOpts{cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "one"))
	b.expect(isBody("one"), "first")
	first := a.outConnFor("a.test", "b.test")
	for i := range 20 {
		a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", fmt.Sprint("n", i)))
	}
	for i := range 20 {
		b.expect(isBody(fmt.Sprint("n", i)), "in order")
	}
	if got := a.outConnFor("a.test", "b.test"); got != first {
		t.Fatal("a second outgoing stream was created")
	}
	if n := b.svc.inAccepted.Load(); n != 1 {
		t.Fatalf("b accepted %d connections, want 1", n)
	}
}

// TestIdleClose: an outgoing stream without traffic closes after
// IdleTimeout, on both ends, and the next stanza opens a new one.
func TestIdleClose(t *testing.T) {
	ca := newTestCA(t)
	a, b := pair(t,
		nodeOpts{cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath, idleTimeout: 200 * time.Millisecond},
		nodeOpts{cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "one"))
	b.expect(isBody("one"), "first")
	first := a.outConnFor("a.test", "b.test")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if a.outConnFor("a.test", "b.test") != nil {
			return errors.New("outgoing stream still registered")
		}
		if n := b.numIn(); n != 0 {
			return fmt.Errorf("b still has %d incoming streams", n)
		}
		return nil
	})
	// The stream leaves the table (closeIdle) and b closes its end before
	// a's reader sees the close and records why: wait for that.
	select {
	case <-first.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle outgoing stream never finished closing")
	}
	first.mu.Lock()
	err := first.err
	first.mu.Unlock()
	if !errors.Is(err, ErrIdle) && !errors.Is(err, ErrBadStream) {
		t.Fatalf("closed with %v", err)
	}
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "two"))
	b.expect(isBody("two"), "after idle close")
	if n := b.svc.inAccepted.Load(); n != 2 {
		t.Fatalf("b accepted %d connections, want 2", n)
	}
}

// TestSendChecks: Send refuses what it must not federate.
func TestSendChecks(t *testing.T) {
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test")})
	cases := []struct {
		name string
		el   *wire.Element
		cond string
	}{
		{"foreign sender", msg("eve@evil.test", "bob@b.test", "x"), "not-allowed"},
		{"no recipient", msg("alice@a.test", "", "x"), "jid-malformed"},
		{"own domain", msg("alice@a.test", "bob@a.test", "x"), "service-unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a.svc.Send(t.Context(), tc.el)
			a.expect(isErrorCond(tc.cond), tc.cond)
		})
	}
}

// TestRetryBackoff: after a failed setup, stanzas to that domain bounce at
// once without a new connection until the backoff passes; then it redials.
func TestRetryBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepts := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts <- struct{}{}
			c.Close() // hang up at once
		}
	}()
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"),
		hosts: map[string]string{"flaky.test": ln.Addr().String()}})
	a.svc.mu.Lock()
	a.svc.RetryBackoff = time.Hour // no redial during the first part
	a.svc.mu.Unlock()
	a.svc.Send(t.Context(), msg("alice@a.test", "x@flaky.test", "one"))
	a.expect(isErrorCond("remote-server-not-found"), "first bounce")
	<-accepts
	a.svc.Send(t.Context(), msg("alice@a.test", "x@flaky.test", "two"))
	el := a.expect(isErrorCond("remote-server-not-found"), "bounce during backoff")
	if el.ID() != "m-two" {
		t.Fatalf("got %s", el)
	}
	select {
	case <-accepts:
		t.Fatal("redialled during the backoff")
	default:
	}
	// Backoff over: the next stanza dials again.
	a.svc.mu.Lock()
	a.svc.failures["flaky.test"].until = time.Now()
	a.svc.mu.Unlock()
	a.svc.Send(t.Context(), msg("alice@a.test", "x@flaky.test", "three"))
	a.expect(isErrorCond("remote-server-not-found"), "bounce after redial")
	select {
	case <-accepts:
	case <-time.After(10 * time.Second):
		t.Fatal("no redial after the backoff")
	}
}

// TestQueueLimit: stanzas past QueueLimit for one stream bounce with
// resource-constraint while the stream is still being set up.
func TestQueueLimit(t *testing.T) {
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
			defer c.Close() // silent: the stream never comes up
		}
	}()
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, nil, "a.test"),
		hosts: map[string]string{"slow.test": ln.Addr().String()}})
	a.svc.mu.Lock()
	a.svc.QueueLimit = 2
	a.svc.mu.Unlock()
	for _, b := range []string{"1", "2", "3"} {
		a.svc.Send(t.Context(), msg("alice@a.test", "x@slow.test", b))
	}
	el := a.expect(isErrorCond("resource-constraint"), "queue-full bounce")
	if el.ID() != "m-3" {
		t.Fatalf("bounced %s, want the third", el)
	}
}

// TestStats: the admin snapshot lists both ends of a federated pair and
// counts closes by reason.
func TestStats(t *testing.T) {
	ca := newTestCA(t)
	a, b := pair(t,
		nodeOpts{cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath},
		nodeOpts{cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "one"))
	b.expect(isBody("one"), "message")
	st := a.svc.Stats()
	if len(st.Streams) != 1 || st.Streams[0].Direction != "out" || st.Streams[0].Remote != "b.test" ||
		st.Streams[0].State != "ready" || st.Streams[0].Method != "sasl-external" {
		t.Fatalf("a: %+v", st.Streams)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		st := b.svc.Stats()
		if len(st.Streams) != 1 || st.Streams[0].Direction != "in" || st.Streams[0].Remote != "a.test" || st.Streams[0].Method != "sasl-external" {
			return fmt.Errorf("b: %+v", st.Streams)
		}
		return nil
	})
	c := a.outConnFor("a.test", "b.test")
	c.fail(ErrIdle, closeIdle)
	if n := a.svc.Stats().Closed["idle"]; n != 1 {
		t.Fatalf("closed counters %v", a.svc.Stats().Closed)
	}
}

// TestConcurrentSenders: many goroutines sending to two remote domains at
// once; every stanza arrives, in order per sender, over one stream per pair.
func TestConcurrentSenders(t *testing.T) {
	ca := newTestCA(t)
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	c := startNode(t, nodeOpts{domain: "c.test", cert: domainCert(t, ca, "c.test"), caFile: ca.pemPath})
	b.got = make(chan *wire.Element, 2000)
	c.got = make(chan *wire.Element, 2000)
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath,
		hosts: map[string]string{"b.test": b.addr(), "c.test": c.addr()}})
	const senders, each = 8, 100
	done := make(chan struct{})
	for s := range senders {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				to := "bob@b.test"
				if i%2 == 1 {
					to = "carol@c.test"
				}
				a.svc.Send(t.Context(), msg(fmt.Sprintf("u%d@a.test", s), to, fmt.Sprintf("%d-%d", s, i)))
			}
		}()
	}
	for range senders {
		<-done
	}
	for _, n := range []*testNode{b, c} {
		last := map[string]int{}
		for range senders * each / 2 {
			el := n.expect(func(*wire.Element) bool { return true }, "message")
			var s, i int
			if _, err := fmt.Sscanf(el.ChildText("body", ""), "%d-%d", &s, &i); err != nil {
				t.Fatal(err)
			}
			if prev, ok := last[el.From()]; ok && i <= prev {
				t.Fatalf("%s: %d after %d from %s", n.cfg.Domain, i, prev, el.From())
			}
			last[el.From()] = i
		}
		if got := n.svc.inAccepted.Load(); got != 1 {
			t.Fatalf("%s accepted %d connections", n.cfg.Domain, got)
		}
	}
}
