package interop

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
)

// TestAioxmppFindsPEP: Debian's python3-aioxmpp asks whether its account
// has PEP with a disco#info it sends without 'to' (RFC 6120 §10.3.3: the
// account's), finds the pubsub/pep identity, publishes an item and reads
// it back. It used to get the server's disco#info and give up on PEP.
func TestAioxmppFindsPEP(t *testing.T) {
	err := exec.Command("/usr/bin/python3", "-c", "import aioxmpp").Run()
	need(t, err == nil, "python3-aioxmpp")
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	host, port := c2sAddr(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/aioxmpp_pep.py",
		host, strconv.Itoa(port), "alice@localhost", "alice-secret")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != "OK\n" {
		t.Fatalf("aioxmpp: %v\n%s%s", err, out, stderr.String())
	}
}
