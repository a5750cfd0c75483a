package interop

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestXMPPJSOverTCP: @xmpp/client (npm) logs in over TCP with STARTTLS and
// SCRAM, reads its roster and chats with a user on a Go client.
func TestXMPPJSOverTCP(t *testing.T) {
	jsDir, _ := filepath.Abs("../httpd/testdata/js")
	_, errMod := os.Stat(filepath.Join(jsDir, "node_modules", "@xmpp", "client"))
	_, errNode := exec.LookPath("node")
	need(t, errMod == nil && errNode == nil, "node and @xmpp/client (server/httpd/testdata/js/install.sh)")

	cfg := servertest.DefaultConfig(t)
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alice-secret")
	servertest.CreateUser(t, n, "bob", "bob-secret")
	host, port := c2sAddr(t, n)
	bob := servertest.DialAddr(t, n.Addr("c2s").String(), "localhost", false)
	bobJID := bob.Login("bob", "bob-secret", "go")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "testdata/xmppjs_tcp.mjs", "xmpp://"+host+":"+strconv.Itoa(port), "localhost", "alice", "alice-secret", bobJID)
	// The node's certificate is self-signed.
	cmd.Env = append(os.Environ(), "JS_DIR="+jsDir, "NODE_TLS_REJECT_UNAUTHORIZED=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	msg := bob.Await("message from xmpp.js", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == "hello from xmpp.js"
	})
	if !strings.HasPrefix(msg.From(), "alice@localhost/xmppjs") {
		t.Errorf("from = %q", msg.From())
	}
	bob.Send(`<message to='%s' type='chat'><body>hello back</body></message>`, msg.From())
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	if err := cmd.Wait(); err != nil {
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
	jsDir, _ := filepath.Abs("../httpd/testdata/js")
	_, errMod := os.Stat(filepath.Join(jsDir, "node_modules", "@xmpp", "client"))
	_, errNode := exec.LookPath("node")
	need(t, errMod == nil && errNode == nil, "node and @xmpp/client (server/httpd/testdata/js/install.sh)")

	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	servertest.CreateUser(t, n, "bob", "bob-secret")
	host, port := c2sAddr(t, n)
	bob := servertest.DialAddr(t, n.Addr("c2s").String(), "localhost", false)
	bob.Login("bob", "bob-secret", "go")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "testdata/xmppjs_resume.mjs", "xmpp://"+host+":"+strconv.Itoa(port), "localhost", "alice", "alice-secret")
	cmd.Env = append(os.Environ(), "JS_DIR="+jsDir, "NODE_TLS_REJECT_UNAUTHORIZED=0")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	await := func(prefix string) string {
		t.Helper()
		for l := range lines {
			seen = append(seen, l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
			if strings.HasPrefix(l, "FAIL") {
				break
			}
		}
		t.Fatalf("xmpp.js never printed %q:\n%s", prefix, strings.Join(seen, "\n"))
		return ""
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
		if !slices.Contains(seen, want) {
			t.Errorf("xmpp.js did not print %q:\n%s", want, strings.Join(seen, "\n"))
		}
	}
}
