package interop

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// TestGoSendXMPP: Debian's go-sendxmpp (the go-xmpp library, which writes
// a newline after <starttls/> and after </auth>) sends a message over
// STARTTLS and one over direct TLS, and a slixmpp client receives both.
func TestGoSendXMPP(t *testing.T) {
	_, errSend := exec.LookPath("go-sendxmpp")
	need(t, errSend == nil, "go-sendxmpp")
	err := exec.Command("/usr/bin/python3", "-c", "import slixmpp").Run()
	need(t, err == nil, "python3-slixmpp")
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	servertest.CreateUser(t, n, "bob", "bob-secret")
	host, port := c2sAddr(t, n)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const viaSTARTTLS, viaTLS = "sent over STARTTLS", "sent over direct TLS"
	recv := startPeer(t, exec.CommandContext(ctx, "/usr/bin/python3", "testdata/slixmpp_receive.py",
		host, strconv.Itoa(port), "bob@localhost", "bob-secret", viaSTARTTLS, viaTLS))
	defer func() { cancel(); _ = recv.cmd.Wait() }() // a failed test ends it
	recv.await(t, "READY")

	send := func(listener, body string, directTLS bool) {
		t.Helper()
		args := []string{"-u", "alice@localhost", "-p", "alice-secret", "-j", n.Addr(listener).String(),
			"-n", // the test node's certificate is self-signed
			"--timeout", "20"}
		if directTLS {
			args = append(args, "-t")
		}
		cmd := exec.CommandContext(ctx, "go-sendxmpp", append(args, "bob@localhost")...)
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go-sendxmpp %s: %v\n%s", listener, err, out)
		}
	}
	send(server.ListenerC2S, viaSTARTTLS, false)
	send(server.ListenerC2STLS, viaTLS, true)
	recv.await(t, "OK")
}
