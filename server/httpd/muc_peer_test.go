package httpd_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// TestConverseAndSlixmppInOneRoomAcrossNodes is issue 19's mixed room: two
// real nodes (shared PostgreSQL, a Hazelcast member, real node links);
// alice in Converse.js (headless Chromium) over BOSH to node b creates and
// enters lounge@conference.localhost; carol in slixmpp over TCP to node a
// joins it; each reads what the other writes. Wherever the room is
// hosted, one of the two reaches it through the other node. A screenshot
// of alice's page is kept in artifacts/converse-muc-peer.png.
func TestConverseAndSlixmppInOneRoomAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and Chromium")
	}
	dir := jsDir(t)
	chromium := chromiumPath(t)
	if err := exec.Command("/usr/bin/python3", "-c", "import slixmpp.plugins.xep_0045").Run(); err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("AVIARY_REQUIRE_SERVICES") == "1" {
			t.Fatalf("python3-slixmpp not installed (.ci/setup.sh installs it): %v", err)
		}
		t.Skip("python3-slixmpp not installed")
	}
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-httpd-muc")
	a := startHTTPNode(t, pg, member, "node-a", "httpd-muc.", nil)
	b := startHTTPNode(t, pg, member, "node-b", "httpd-muc.", nil)
	servertest.WaitClustered(t, a.c, b.c)
	servertest.CreateUser(t, a.n, "alice", "pw-alice")
	servertest.CreateUser(t, a.n, "carol", "pw-carol")

	const (
		room      = "lounge@conference.localhost"
		fromPage  = "Hello from Converse over BOSH"
		fromSlixm = "Hello from slixmpp over TCP"
	)
	pages := conversePages(t, dir)
	page := pages.URL + "/?" + url.Values{
		"bosh": {"http://" + b.svc.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH},
		"jid":  {"alice@localhost"}, "pw": {"pw-alice"}, "room": {room}, "nick": {"Alice"},
	}.Encode()
	shot := artifactPath(t, "converse-muc-peer.png")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	out := logOnFailure(t)
	browser := exec.CommandContext(ctx, "node", "converse_muc_peer.mjs", page, "Carol", fromPage, fromSlixm, shot)
	browser.Dir = dir
	browser.Env = append(os.Environ(), "CHROMIUM="+chromium)
	browser.Stderr = out
	stdout, err := browser.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := browser.Start(); err != nil {
		t.Fatal(err)
	}
	entered, ok := make(chan struct{}), make(chan bool, 1)
	go func() {
		sc, said := bufio.NewScanner(stdout), false
		for sc.Scan() {
			out.Write([]byte("page stdout: " + sc.Text() + "\n"))
			switch {
			case sc.Text() == "ENTERED":
				close(entered)
			case sc.Text() == "OK":
				said = true
			}
		}
		ok <- said
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatalf("the Converse page never entered the room")
	}

	// Converse enters on the room's 201 and only then submits the
	// instant room's form; until it has, the room is locked and answers
	// a join by anyone else with item-not-found (XEP-0045 §10.1.1), as
	// it should. A person joins seconds later; the test waits until
	// the room answers its disco#info to a non-owner.
	probe := servertest.Dial(t, a.n)
	probe.Login("carol", "pw-carol", "probe")
	servertest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		id := probe.NextID()
		probe.Send("<iq type='get' id='%s' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", id, room)
		if el := probe.Await("disco#info of the room", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id }); el.Type() != "result" {
			return fmt.Errorf("the room is not open yet: %s", el)
		}
		return nil
	})
	probe.Close()

	host, port, _ := net.SplitHostPort(a.n.Addr(server.ListenerC2S).String())
	script, _ := filepath.Abs(filepath.Join("testdata", "slixmpp_muc_peer.py"))
	py := exec.CommandContext(ctx, "/usr/bin/python3", script, host, port, "carol@localhost/py", "pw-carol", room, "Carol", fromPage, fromSlixm)
	pyOut, pyErr := py.CombinedOutput()
	browserErr := browser.Wait()
	if pyErr != nil || !strings.Contains(string(pyOut), "OK") {
		t.Errorf("slixmpp on node a: %v\n%s", pyErr, pyOut)
	}
	if said := <-ok; browserErr != nil || !said {
		t.Errorf("Converse on node b: %v", browserErr)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Errorf("no screenshot at %s: %v", shot, err)
	}
}
