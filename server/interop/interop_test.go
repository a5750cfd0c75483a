package interop

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// required reports whether a missing peer must fail the test (CI) rather
// than skip it (a developer machine without the package).
func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("AVIARY_REQUIRE_SERVICES") == "1"
}

func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if required() {
		t.Fatalf("%s is not installed (.ci/setup.sh installs it)", what)
	}
	t.Skipf("%s is not installed", what)
}

func c2sAddr(t *testing.T, n *server.Node) (string, int) {
	t.Helper()
	a, ok := n.Addr(server.ListenerC2S).(*net.TCPAddr)
	if !ok {
		t.Fatal("no c2s listener")
	}
	return a.IP.String(), a.Port
}

// TestSlixmpp: python3-slixmpp registers two users in-band, they subscribe
// to each other, see each other's presence, exchange messages, and one
// sees the other go offline.
func TestSlixmpp(t *testing.T) {
	err := exec.Command("/usr/bin/python3", "-c", "import slixmpp").Run()
	need(t, err == nil, "python3-slixmpp")
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.AllowRegistration = true
	n := servertest.RunServer(t, cfg)
	host, port := c2sAddr(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/slixmpp_chat.py", host, strconv.Itoa(port), cfg.Domain)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("slixmpp: %v\n%s", err, out)
	}
	// The accounts really exist on the server.
	for _, u := range []string{"alice", "bob"} {
		if _, err := n.Store().GetUser(context.Background(), u); err != nil {
			t.Errorf("account %s not stored: %v", u, err)
		}
	}
}

// TestSlixmppMUC: slixmpp's XEP-0045 plugin creates, configures and chats
// in a room of the group chat service (testdata/slixmpp_muc.py).
func TestSlixmppMUC(t *testing.T) {
	err := exec.Command("/usr/bin/python3", "-c", "import slixmpp.plugins.xep_0045").Run()
	need(t, err == nil, "python3-slixmpp")
	cfg := servertest.DefaultConfig(t)
	n := servertest.RunServer(t, cfg)
	for _, u := range []string{"alice", "bob", "carol"} {
		servertest.CreateUser(t, n, u, "pw")
	}
	host, port := c2sAddr(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/slixmpp_muc.py", host, strconv.Itoa(port), cfg.Domain).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("slixmpp: %v\n%s", err, out)
	}
}

// TestSlixmppMAM: slixmpp's XEP-0313 plugin pages backwards through 1,000
// archived messages and sees each exactly once, under the stanza-id its
// live copy carried (testdata/slixmpp_mam.py).
func TestSlixmppMAM(t *testing.T) {
	err := exec.Command("/usr/bin/python3", "-c", "import slixmpp.plugins.xep_0313").Run()
	need(t, err == nil, "python3-slixmpp")
	cfg := servertest.DefaultConfig(t)
	n := servertest.RunServer(t, cfg)
	for _, u := range []string{"alice", "bob"} {
		servertest.CreateUser(t, n, u, "pw")
	}
	host, port := c2sAddr(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/slixmpp_mam.py", host, strconv.Itoa(port), cfg.Domain).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("slixmpp MAM: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
