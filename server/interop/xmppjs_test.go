package interop

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
