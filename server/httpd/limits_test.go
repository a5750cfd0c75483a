package httpd_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/servertest"
)

// shortLimits makes the body and write timeouts far shorter than a BOSH
// long-poll (wait='1'), so that the canaries below prove held requests and
// WebSockets are not cut by them.
func shortLimits(c *conf.Config) {
	c.HTTP.ReadBodyTimeout = 300 * time.Millisecond
	c.HTTP.WriteTimeout = 300 * time.Millisecond
}

// The attack of issue 16: a BOSH request announcing a 257 KiB body sends
// most of it and stops. Before, the connection and its buffered body were
// kept forever (2,000 of them held 900 MB); now the request gets 408 and
// the connection is closed once http.read_body_timeout has passed. A BOSH
// session on a long-poll and a WebSocket session on the same listener are
// unaffected.
func TestStalledBOSHBodyIsCutOff(t *testing.T) {
	n, svc, base := node(t, shortLimits)
	servertest.CreateUser(t, n, "alice", "pw-alice")
	servertest.CreateUser(t, n, "bob", "pw-bob")

	c, err := net.Dial("tcp", svc.Addr("http").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := fmt.Sprintf("<body xmlns='%s' rid='1' to='localhost' wait='60' hold='1'><message to='bob@localhost'><body>", bosh.NSHTTPBind)
	fmt.Fprintf(c, "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: %d\r\n\r\n", 257<<10)
	c.Write([]byte(head + strings.Repeat("a", 250<<10-len(head))))

	// The canaries run while the stalled request waits for its body.
	alice := &boshClient{t: t, url: base + "/http-bind"}
	alice.login("alice", "pw-alice", "web")
	bob := dialWS(t, base)
	bob.login("bob", "pw-bob", "ws")

	// Cut off: the answer is 408 and the server closes the connection.
	// The guard only keeps a broken server from hanging the test.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stalled request's connection is still open after 20s (read_body_timeout 300ms); read %q", got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
		t.Errorf("stalled request answered %q, want 408", got)
	}

	// A long-poll with nothing to deliver is held for its whole wait (1s,
	// past the body and write timeouts) and answered with an empty body.
	if resp := alice.postRaw("", ""); resp.Attr("type") == "terminate" || len(resp.Children) != 0 {
		t.Fatalf("held long-poll answered %s", resp)
	}
	// The WebSocket, idle all that time, still carries messages both ways.
	bob.send("<message xmlns='jabber:client' to='alice@localhost/web' type='chat'><body>still here</body></message>")
	alice.expect("message over WebSocket", isMsg("still here"))
	alice.post("", "<message xmlns='jabber:client' to='"+bob.jid+"' type='chat'><body>me too</body></message>")
	bob.expect("message over BOSH", isMsg("me too"))
}

// A body over c2s.max_stanza_bytes still ends the BOSH session with
// policy-violation (BOSH sees the oversized body before the listener's cap
// refuses more), and a body far over it is never read whole.
func TestOversizedBOSHBody(t *testing.T) {
	n, _, base := node(t, func(c *conf.Config) { c.C2S.MaxStanzaBytes = 4096 })
	servertest.CreateUser(t, n, "alice", "pw-alice")
	alice := &boshClient{t: t, url: base + "/http-bind"}
	alice.login("alice", "pw-alice", "web")
	big := "<message xmlns='jabber:client' to='alice@localhost'><body>" + strings.Repeat("a", 8<<20) + "</body></message>"
	if resp := alice.postRaw("", big); resp.Attr("type") != "terminate" || resp.Attr("condition") != "policy-violation" {
		t.Fatalf("oversized body answered %s, want terminate policy-violation", resp)
	}
}
