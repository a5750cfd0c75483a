package c2s_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

func startServer(t *testing.T, users ...string) *server.Node {
	t.Helper()
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	for _, u := range users {
		servertest.CreateUser(t, n, u, u+"pw")
	}
	return n
}

func saslCond(err error) string {
	var se *servertest.SASLError
	if errors.As(err, &se) {
		return se.Condition
	}
	if err != nil {
		return err.Error()
	}
	return "success"
}

func TestSTARTTLSRequired(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.Dial(t, n)
	st := c.Features.Child("starttls", wire.NSTLS)
	if st == nil || st.Child("required", "") == nil {
		t.Fatalf("features before TLS = %s, want starttls required", c.Features)
	}
	if c.Features.Child("mechanisms", wire.NSSASL) != nil {
		t.Errorf("mechanisms offered before TLS: %s", c.Features)
	}
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256"} {
		var err error
		if mech == "PLAIN" {
			err = c.AuthPLAIN("alice", "alicepw")
		} else {
			err = c.AuthSCRAM(mech, "alice", "alicepw")
		}
		if got := saslCond(err); got != "encryption-required" {
			t.Errorf("%s before TLS: %s, want encryption-required", mech, got)
		}
	}
	f := c.StartTLS()
	if f.Child("starttls", wire.NSTLS) != nil {
		t.Errorf("starttls offered again after TLS: %s", f)
	}
	if got := strings.Join(c.Mechanisms(), " "); got != "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1 PLAIN" {
		t.Errorf("mechanisms after TLS = %q", got)
	}
	if err := c.AuthPLAIN("alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
}

func TestDirectTLS(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.DialTLS(t, n)
	if c.Features.Child("starttls", wire.NSTLS) != nil {
		t.Errorf("starttls offered on direct TLS: %s", c.Features)
	}
	if got := strings.Join(c.Mechanisms(), " "); got != "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1 PLAIN" {
		t.Errorf("mechanisms = %q", got)
	}
	if j := c.Login("alice", "alicepw", "tls"); j != "alice@localhost/tls" {
		t.Errorf("jid = %q", j)
	}
}

func TestAuthMechanisms(t *testing.T) {
	n := startServer(t, "alice")
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			c := servertest.DialTLS(t, n)
			var err error
			if mech == "PLAIN" {
				err = c.AuthPLAIN("alice", "alicepw")
			} else {
				err = c.AuthSCRAM(mech, "alice", "alicepw")
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Features.Child("bind", wire.NSBind) == nil {
				t.Errorf("no bind feature after auth: %s", c.Features)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	n := startServer(t, "alice")
	cases := []struct {
		name string
		run  func(c *servertest.Client) error
		want string
	}{
		{"scram wrong password", func(c *servertest.Client) error { return c.AuthSCRAM("SCRAM-SHA-256", "alice", "bad") }, "not-authorized"},
		{"scram unknown user", func(c *servertest.Client) error { return c.AuthSCRAM("SCRAM-SHA-256", "nobody", "bad") }, "not-authorized"},
		{"scram-sha-1 wrong password", func(c *servertest.Client) error { return c.AuthSCRAM("SCRAM-SHA-1", "alice", "bad") }, "not-authorized"},
		{"plain wrong password", func(c *servertest.Client) error { return c.AuthPLAIN("alice", "bad") }, "not-authorized"},
		{"plain unknown user", func(c *servertest.Client) error { return c.AuthPLAIN("nobody", "bad") }, "not-authorized"},
		{"bad mechanism", func(c *servertest.Client) error {
			c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'>=</auth>")
			return failureOf(c)
		}, "invalid-mechanism"},
		{"bad base64", func(c *servertest.Client) error {
			c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!notbase64</auth>")
			return failureOf(c)
		}, "incorrect-encoding"},
		{"malformed plain", func(c *servertest.Client) error {
			c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>YWxpY2U=</auth>")
			return failureOf(c)
		}, "malformed-request"},
		{"malformed scram", func(c *servertest.Client) error {
			c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>YWxpY2U=</auth>")
			return failureOf(c)
		}, "malformed-request"},
		{"aborted", func(c *servertest.Client) error {
			c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'/>")
			ch := c.ExpectName("challenge")
			if ch.Text != "" {
				t.Errorf("initial challenge not empty: %s", ch)
			}
			c.Send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
			return failureOf(c)
		}, "aborted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := servertest.DialTLS(t, n)
			if got := saslCond(tc.run(c)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			// The stream stays usable: a correct attempt now succeeds.
			if err := c.AuthSCRAM("SCRAM-SHA-256", "alice", "alicepw"); err != nil {
				t.Fatalf("retry after failure: %v", err)
			}
		})
	}
}

// failureOf reads the server's SASL answer.
func failureOf(c *servertest.Client) error {
	el := c.MustNext()
	if el.Name != "failure" || len(el.Children) == 0 {
		c.T.Fatalf("want <failure/>, got %s", el)
	}
	return &servertest.SASLError{Condition: el.Children[0].Name}
}

func TestUnknownUserAndWrongPasswordLookIdentical(t *testing.T) {
	n := startServer(t, "alice")
	answer := func(user string) string {
		c := servertest.DialTLS(t, n)
		c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>",
			b64("\x00"+user+"\x00wrong"))
		return c.MustNext().String()
	}
	known, unknown := answer("alice"), answer("nobody")
	if known != unknown {
		t.Errorf("wrong password answered %s, unknown user %s", known, unknown)
	}
	if known != `<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><not-authorized/></failure>` {
		t.Errorf("answer = %s", known)
	}
}

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.sleeps = append(c.sleeps, d)
		c.now = c.now.Add(d)
	}
	return nil
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

func TestThrottleGrowsPerAddress(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.SASLFailureDelay = time.Second
	n := servertest.RunServer(t, cfg, server.WithAuthClock(clk))
	servertest.CreateUser(t, n, "alice", "alicepw")
	for i := 0; i < 4; i++ {
		c := servertest.DialTLS(t, n) // new connections from the same address
		if got := saslCond(c.AuthSCRAM("SCRAM-SHA-256", "alice", "wrong")); got != "not-authorized" {
			t.Fatalf("attempt %d: %s", i, got)
		}
		c.Close()
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}
	got := clk.Sleeps()
	if len(got) != len(want) {
		t.Fatalf("delays = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	// Success resets the record.
	c := servertest.DialTLS(t, n)
	if err := c.AuthSCRAM("SCRAM-SHA-256", "alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
	c2 := servertest.DialTLS(t, n)
	c2.AuthPLAIN("alice", "wrong")
	if got := clk.Sleeps(); got[len(got)-1] != time.Second {
		t.Errorf("after success the delay is %v, want 1s", got[len(got)-1])
	}
}

func TestStreamHeaderErrors(t *testing.T) {
	n := startServer(t)
	addr := n.Addr(server.ListenerC2S).String()
	cases := []struct{ name, header, cond string }{
		{"unknown host", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.net' version='1.0'>", "host-unknown"},
		{"bad namespace", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>", "invalid-namespace"},
		{"old version", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>", "unsupported-version"},
		{"not xml", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><message><body></message>", "not-well-formed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := servertest.DialRaw(t, addr, "localhost", false)
			c.SendRaw(tc.header)
			_ = c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.ReadHeaderOnly(); err != nil {
				t.Fatal(err)
			}
			c.ExpectStreamError(tc.cond)
		})
	}
}

func TestMalformedXML(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	c.SendRaw("<message to='bob@localhost'><body>unclosed</message>")
	c.ExpectStreamError("not-well-formed")
}

func TestStanzaSizeLimit(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.MaxStanzaBytes = 4096
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	c.Send("<message to='alice@localhost'><body>%s</body></message>", strings.Repeat("x", 3000)) // fits
	c.Send("<message to='alice@localhost'><body>%s</body></message>", strings.Repeat("y", 8000))
	c.ExpectStreamError("policy-violation")
}

func TestStanzaBeforeAuth(t *testing.T) {
	n := startServer(t)
	c := servertest.DialTLS(t, n)
	c.Send("<message to='alice@localhost'><body>hi</body></message>")
	c.ExpectStreamError("not-authorized")
}

func TestAuthTimeout(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.AuthTimeout = 300 * time.Millisecond
	n := servertest.RunServer(t, cfg)
	c := servertest.Dial(t, n)
	c.ExpectStreamError("connection-timeout")
}

func b64(s string) string { return servertest.Base64(s) }

func TestGarbageBeforeHeader(t *testing.T) {
	n := startServer(t)
	c := servertest.DialRaw(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	c.SendRaw("<?xml version='1.0'?><!-- comment --><stream:stream>")
	h, err := c.ReadHeaderOnly()
	if err != nil {
		t.Fatal(err)
	}
	if h.Attr("from") != "localhost" {
		t.Errorf("header = %s", h)
	}
	c.ExpectStreamError("restricted-xml")
}

func TestMaxSessions(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.MaxSessions = 1
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	first := servertest.DialTLS(t, n)
	first.Login("alice", "alicepw", "one")
	c := servertest.DialRaw(t, n.Addr(server.ListenerC2STLS).String(), "localhost", true)
	c.SendRaw("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
	if _, err := c.ReadHeaderOnly(); err != nil {
		t.Fatal(err)
	}
	c.ExpectStreamError("resource-constraint")
	// Once the first leaves, there is room again.
	first.Close()
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if a := n.C2S().Active(); a != 0 {
			return fmt.Errorf("%d active", a)
		}
		return nil
	})
	servertest.DialTLS(t, n).Login("alice", "alicepw", "two")
}
