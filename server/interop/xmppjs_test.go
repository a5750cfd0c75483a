package interop

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestXMPPJSOverTCP: @xmpp/client (npm) logs in over TCP with STARTTLS and
// SCRAM, reads its roster and chats with a user on a Go client.
func TestXMPPJSOverTCP(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alice-secret")
	servertest.CreateUser(t, n, "bob", "bob-secret")
	bob := servertest.DialAddr(t, n.Addr("c2s").String(), "localhost", false)
	bobJID := bob.Login("bob", "bob-secret", "go")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js := startXMPPJS(t, ctx, n, "xmppjs_tcp.mjs", "alice", "alice-secret", bobJID)
	msg := bob.Await("message from xmpp.js", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == "hello from xmpp.js"
	})
	if !strings.HasPrefix(msg.From(), "alice@localhost/xmppjs") {
		t.Errorf("from = %q", msg.From())
	}
	bob.Send(`<message to='%s' type='chat'><body>hello back</body></message>`, msg.From())
	var out []string
	for l := range js.lines {
		out = append(out, l)
	}
	if err := js.cmd.Wait(); err != nil {
		t.Fatalf("xmpp.js: %v\n%s", err, strings.Join(out, "\n"))
	}
	joined := strings.Join(out, "\n")
	for _, want := range []string{"online alice@localhost/xmppjs", "sm enabled resumable", "roster jabber:iq:roster", "OK"} {
		if !strings.Contains(joined, want) {
			t.Errorf("xmpp.js output lacks %q:\n%s", want, joined)
		}
	}
}

// TestXMPPJSResumesInline: @xmpp/client loses its connection after
// acknowledging a message, reconnects by itself and resumes its session
// inside SASL2 (XEP-0198 in XEP-0388); the message sent while it was away
// reaches it on the resumed session.
func TestXMPPJSResumesInline(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	servertest.CreateUser(t, n, "bob", "bob-secret")
	bob := servertest.DialAddr(t, n.Addr("c2s").String(), "localhost", false)
	bob.Login("bob", "bob-secret", "go")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js := startXMPPJS(t, ctx, n, "xmppjs_resume.mjs", "alice", "alice-secret")
	defer js.cmd.Wait()
	await := func(prefix string) string {
		t.Helper()
		return js.await(t, prefix)
	}
	jid := strings.TrimPrefix(await("online "), "online ")
	bob.Send("<message to='%s' type='chat'><body>one</body></message>", jid)
	await("got one")
	await("dropped")
	bob.Send("<message to='%s' type='chat'><body>two</body></message>", jid)
	await("OK") // printed once "two" arrived
	// xmpp.js reports the resumption after it handled <success/>, and may
	// handle the re-sent message first: the order of these two is its own.
	for _, want := range []string{"resumed", "got two"} {
		if !slices.Contains(js.seen, want) {
			t.Errorf("xmpp.js did not print %q:\n%s", want, strings.Join(js.seen, "\n"))
		}
	}
}

// startXMPPJS runs testdata/script (node) with args after the node's
// xmpp:// address and domain; the test needs node and @xmpp/client.
func startXMPPJS(t *testing.T, ctx context.Context, n *server.Node, script string, args ...string) *peerProcess {
	t.Helper()
	jsDir, _ := filepath.Abs("../httpd/testdata/js")
	_, errMod := os.Stat(filepath.Join(jsDir, "node_modules", "@xmpp", "client"))
	_, errNode := exec.LookPath("node")
	need(t, errMod == nil && errNode == nil, "node and @xmpp/client (server/httpd/testdata/js/install.sh)")
	host, port := c2sAddr(t, n)
	argv := append([]string{"testdata/" + script, "xmpp://" + host + ":" + strconv.Itoa(port), "localhost"}, args...)
	cmd := exec.CommandContext(ctx, "node", argv...)
	// The node's certificate is self-signed.
	cmd.Env = append(os.Environ(), "JS_DIR="+jsDir, "NODE_TLS_REJECT_UNAUTHORIZED=0")
	return startPeer(t, cmd)
}

// TestXMPPJSFast: @xmpp/client logs in with its password asking for a
// FAST token (XEP-0484), then logs in again, as a new client with the
// same user-agent id and a wrong password, with the token alone
// (HT-SHA-256-NONE, one round trip).
func TestXMPPJSFast(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js := startXMPPJS(t, ctx, n, "xmppjs_fast.mjs", "alice", "alice-secret")
	var out []string
	for l := range js.lines {
		out = append(out, l)
	}
	if err := js.cmd.Wait(); err != nil {
		t.Fatalf("xmpp.js: %v\n%s", err, strings.Join(out, "\n"))
	}
	want := []string{
		"authenticate SCRAM-SHA-1", "token HT-SHA-256-NONE", "online alice@localhost/",
		"authenticate HT-SHA-256-NONE", "online alice@localhost/", "OK",
	}
	i := 0
	for _, l := range out {
		if i < len(want) && strings.HasPrefix(l, want[i]) {
			i++
		}
	}
	t.Logf("xmpp.js:\n%s", strings.Join(out, "\n"))
	if i != len(want) {
		t.Fatalf("xmpp.js printed\n%s\nwant in order %q", strings.Join(out, "\n"), want)
	}
	for _, l := range out {
		if strings.HasPrefix(l, "authenticate ") && l != "authenticate SCRAM-SHA-1" && l != "authenticate HT-SHA-256-NONE" {
			t.Errorf("xmpp.js also tried %q", l)
		}
	}
}
