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

// runPython runs a client script under Debian's /usr/bin/python3 with
// the node's address and the arguments, and fails unless it prints OK.
func runPython(t *testing.T, module, script string, args ...string) {
	t.Helper()
	err := exec.Command("/usr/bin/python3", "-c", "import "+module).Run()
	need(t, err == nil, "python3-"+module)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{script}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || !strings.HasSuffix(string(out), "OK\n") {
		t.Fatalf("%s: %v\n%s%s", script, err, out, stderr.String())
	}
}

// TestAioxmppPEPNodesAndAvatars: Debian's python3-aioxmpp publishes to a
// PEP node created by its publish-options (max_items 3 kept three of
// four), reads the items all, by ID and by max_items, meets conflict with
// <precondition-not-met/> for options the node does not meet, reconfigures
// the node (whitelist, one item) and then passes; publishes its avatar
// with AvatarService, reads it back over PEP and as its vCard PHOTO, and
// disables it (testdata/aioxmpp_pep_nodes.py).
func TestAioxmppPEPNodesAndAvatars(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	host, port := c2sAddr(t, n)
	runPython(t, "aioxmpp", "testdata/aioxmpp_pep_nodes.py", host, strconv.Itoa(port), "alice@localhost", "alice-secret")
}

// TestBookmarksAndAvatarsAcrossXEPs: two clients of one account, a
// slixmpp one on XEP-0048 private XML bookmarks and the vcard-temp PHOTO,
// an aioxmpp one on XEP-0402 bookmarks and the XEP-0084 avatar; each
// sets a bookmark and an avatar its own way and finds the other's
// (testdata/bookmarks_avatars_two_clients.py).
func TestBookmarksAndAvatarsAcrossXEPs(t *testing.T) {
	err := exec.Command("/usr/bin/python3", "-c", "import slixmpp").Run()
	need(t, err == nil, "python3-slixmpp")
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	host, port := c2sAddr(t, n)
	runPython(t, "aioxmpp", "testdata/bookmarks_avatars_two_clients.py", host, strconv.Itoa(port), "alice@localhost", "alice-secret")
}

// TestAioxmppPubSubService: two Debian python3-aioxmpp clients find the
// pubsub service in the domain's disco#items, create a node, subscribe,
// publish, retract with notify, read the items, are refused a publish
// without the publisher affiliation and delete the node; the subscriber
// is told of each change once (testdata/aioxmpp_pubsub_service.py).
func TestAioxmppPubSubService(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "secret-pw")
	servertest.CreateUser(t, n, "bob", "secret-pw")
	host, port := c2sAddr(t, n)
	runPython(t, "aioxmpp", "testdata/aioxmpp_pubsub_service.py", host, strconv.Itoa(port), "localhost", "secret-pw")
}
