package s2s

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/wire"
)

// requireBinary returns the path of a peer server's binary. A missing
// binary skips the test locally but fails it under CI=true or
// AVIARY_REQUIRE_SERVICES=1, where .ci/setup.sh installs it.
func requireBinary(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		if _, err := os.Stat(n); err == nil {
			return n
		}
	}
	if os.Getenv("CI") == "true" || os.Getenv("AVIARY_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s not installed (run .ci/setup.sh)", names[0])
	}
	t.Skipf("%s not installed", names[0])
	return ""
}

// freePort returns a port for a peer server to bind on host later;
// testutil.FreePortsOn keeps other processes off it meanwhile.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ps, err := testutil.FreePortsOn(host, 1)
	if err != nil {
		t.Fatalf("a port on %s: %v", host, err)
	}
	return ps[0]
}

// waitListening polls until addr accepts TCP connections.
func waitListening(t *testing.T, addr string, total time.Duration, alive func() error) {
	t.Helper()
	testutil.CheckFor(t, total, 50*time.Millisecond, func() error {
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
}

// c2sClient is a minimal XMPP client (SASL PLAIN without TLS on loopback,
// bind, initial presence), enough to act as a user of a peer server.
type c2sClient struct {
	t    *testing.T
	conn net.Conn
	rd   *wire.Reader
	jid  string
}

func loginC2S(t *testing.T, addr, domain, user, pass, resource string) *c2sClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &c2sClient{t: t, conn: conn, rd: wire.NewReader(conn, wire.Limits{})}
	header := fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>`, domain)
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	c.send(header)
	if _, err := c.rd.Header(); err != nil {
		t.Fatal(err)
	}
	features := c.next()
	if !hasMechanism(features, "PLAIN") {
		t.Fatalf("no PLAIN in %s", features)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` +
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)) + `</auth>`)
	if el := c.next(); el.LocalName() != "success" {
		t.Fatalf("login failed: %s", el)
	}
	c.rd.Restart()
	c.send(header)
	if _, err := c.rd.Header(); err != nil {
		t.Fatal(err)
	}
	c.next() // features
	c.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	res := c.next()
	if res.Type() != "result" {
		t.Fatalf("bind failed: %s", res)
	}
	c.jid = res.FirstChild().ChildText("jid", "")
	c.send(`<presence/>`)
	_ = conn.SetDeadline(time.Time{})
	return c
}

func (c *c2sClient) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *c2sClient) next() *wire.Element {
	c.t.Helper()
	el, err := c.rd.Next()
	if err != nil {
		c.t.Fatalf("client read: %v", err)
	}
	return el
}

// expect reads until an element matches fn.
func (c *c2sClient) expect(fn func(*wire.Element) bool, what string) *wire.Element {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		el, err := c.rd.Next()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if fn(el) {
			return el
		}
		c.t.Logf("client skipping %s", el)
	}
}

// dumpOnFailure logs a file (a peer server's log) if the test failed.
func dumpOnFailure(t *testing.T, path string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("no log %s: %v", path, err)
			return
		}
		s := string(b)
		if len(s) > 20000 {
			s = "…" + s[len(s)-20000:]
		}
		t.Logf("log %s:\n%s", path, strings.TrimSpace(s))
	})
}
