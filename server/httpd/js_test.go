package httpd_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// jsDir returns testdata/js when its packages are installed
// (testdata/js/install.sh). Without them the test is skipped, or fails
// when CI=true or AVIARY_REQUIRE_SERVICES=1.
func jsDir(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("testdata", "js"))
	_, err := os.Stat(filepath.Join(dir, "node_modules", ".aviary-installed"))
	_, nodeErr := exec.LookPath("node")
	if err != nil || nodeErr != nil {
		if os.Getenv("CI") == "true" || os.Getenv("AVIARY_REQUIRE_SERVICES") == "1" {
			t.Fatalf("JavaScript clients not installed (run %s/install.sh): %v %v", dir, err, nodeErr)
		}
		t.Skipf("JavaScript clients not installed (run %s/install.sh)", dir)
	}
	return dir
}

// TestJavaScriptClients logs real npm clients in over WebSocket and BOSH
// and has each exchange a message with a TCP user.
func TestJavaScriptClients(t *testing.T) {
	dir := jsDir(t)
	n, _, base := node(t, nil)
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "jsuser", "pw-js")
	tcp := servertest.Dial(t, n)
	tcpJID := tcp.Login("carol", "pw-carol", "desk")
	tcp.Timeout = 60 * time.Second // node and Chromium start slowly on a loaded machine
	wsURL := "ws" + strings.TrimPrefix(base, "http") + httpd.PathWebSocket
	boshURL := base + httpd.PathBOSH

	for _, tc := range []struct{ lib, transport, url string }{
		{"xmppjs", "websocket", wsURL},
		{"stanza", "websocket", wsURL},
		{"stanza", "bosh", boshURL},
	} {
		tag := tc.lib + "-" + tc.transport
		t.Run(tag, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "client.mjs", tc.lib, tc.transport, tc.url, "jsuser@localhost", "pw-js", tcpJID)
			cmd.Dir = dir
			out := logOnFailure(t)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			msg := tcp.Await("hello from "+tag, func(el *wire.Element) bool {
				return el.Name == "message" && el.ChildText("body", "") == "hello from "+tag
			})
			if !strings.HasPrefix(msg.From(), "jsuser@localhost/") {
				t.Errorf("message from %q", msg.From())
			}
			tcp.Send("<message to='%s' type='chat'><body>reply to %s</body></message>", msg.From(), tag)
			if err := <-done; err != nil || !strings.Contains(out.String(), "OK") {
				t.Fatalf("%s: %v\n%s", tag, err, out.String())
			}
		})
	}
}

// TestBrowser loads a page from another origin in headless Chromium; the
// page (strophe.js) connects over BOSH (with CORS) and then over
// WebSocket, and each time exchanges a message with a TCP user.
func TestBrowser(t *testing.T) {
	dir := jsDir(t)
	chromium := chromiumPath(t)
	n, _, base := node(t, nil)
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "webuser", "pw-web")
	tcp := servertest.Dial(t, n)
	tcpJID := tcp.Login("carol", "pw-carol", "desk")
	tcp.Timeout = 60 * time.Second

	pages := pageServer(t, dir) // its own origin: BOSH needs CORS
	q := url.Values{
		"bosh": {base + httpd.PathBOSH},
		"ws":   {"ws" + strings.TrimPrefix(base, "http") + httpd.PathWebSocket},
		"jid":  {"webuser@localhost"},
		"pw":   {"pw-web"},
		"peer": {tcpJID},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "browser.mjs", pages.URL+"/?"+q.Encode())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out := logOnFailure(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for _, tag := range []string{"browser-bosh", "browser-websocket"} {
		msg := tcp.Await("hello from "+tag, func(el *wire.Element) bool {
			return el.Name == "message" && el.ChildText("body", "") == "hello from "+tag
		})
		tcp.Send("<message to='%s' type='chat'><body>reply to %s</body></message>", msg.From(), tag)
	}
	if err := <-done; err != nil || !strings.Contains(out.String(), "OK") {
		t.Fatalf("browser: %v\n%s", err, out.String())
	}
}

// chromiumPath returns Debian's Chromium (or $CHROMIUM); without it the
// test is skipped, or fails when CI=true or AVIARY_REQUIRE_SERVICES=1.
func chromiumPath(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("AVIARY_REQUIRE_SERVICES") == "1" {
			t.Fatalf("no Chromium at %s (Debian package chromium)", chromium)
		}
		t.Skipf("no Chromium at %s", chromium)
	}
	return chromium
}

// pageServer serves the test page and strophe.js from an origin of its
// own (so BOSH needs CORS), until the test ends.
func pageServer(t *testing.T, dir string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "page.html"))
	})
	mux.HandleFunc("/strophe.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, filepath.Join(dir, "node_modules", "strophe.js", "dist", "strophe.umd.min.js"))
	})
	pages := httptest.NewServer(mux)
	t.Cleanup(pages.Close)
	return pages
}

// logOnFailure returns a buffer whose content is logged if the test fails
// (also when it fails while waiting for the process).
func logOnFailure(t *testing.T) *testutil.Buffer {
	b := &testutil.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client output:\n%s", b.String())
		}
	})
	return b
}

// TestBrowserClosedTab is issue 17's lost message as a person sees it:
// carol is online in a browser tab over BOSH (strophe.js in headless
// Chromium) and closes the tab; dave sends her a message before her
// session times out. Her next login gets it from offline storage.
func TestBrowserClosedTab(t *testing.T) {
	dir := jsDir(t)
	chromium := chromiumPath(t)
	n, svc, base := node(t, func(c *conf.Config) { c.HTTP.BOSHInactivity = time.Second })
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "dave", "pw-dave")
	dave := servertest.Dial(t, n)
	dave.Login("dave", "pw-dave", "desk")

	pages := pageServer(t, dir)
	q := url.Values{"mode": {"online"}, "bosh": {base + httpd.PathBOSH}, "jid": {"carol@localhost"}, "pw": {"pw-carol"}}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "browser.mjs", pages.URL+"/?"+q.Encode())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "CLOSE_ON_STDIN=1")
	out := logOnFailure(t)
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// Online: available, with a request held for her.
	servertest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "OK") {
			return fmt.Errorf("the page is not online yet")
		}
		ms := svc.Server().BOSH()
		res, _ := n.Router().Resources(context.Background(), "carol@localhost")
		if len(res) != 1 || !res[0].Available {
			return fmt.Errorf("carol's resources: %+v", res)
		}
		if ms.Len() != 1 {
			return fmt.Errorf("%d BOSH sessions", ms.Len())
		}
		return nil
	})
	stdin.Write([]byte("close\n"))
	if err := <-done; err != nil || !strings.Contains(out.String(), "CLOSED") {
		t.Fatalf("closing the tab: %v", err)
	}
	dave.Send("<message to='carol@localhost' type='chat' id='m1'><body>after the tab closed</body></message>")
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if res, _ := n.Router().Resources(context.Background(), "carol@localhost"); len(res) != 0 {
			return fmt.Errorf("carol still has %+v", res)
		}
		return nil
	})
	carol := servertest.Dial(t, n)
	carol.Login("carol", "pw-carol", "desk")
	carol.Send("<presence/>")
	carol.Await("the message sent after the tab closed", isMsg("after the tab closed"))
}

// TestConverseHistory: Converse.js in headless Chromium chats with a TCP
// user over WebSocket, then the page is loaded again with nothing cached
// and shows the conversation from the server's message archive
// (XEP-0313). The screenshot is kept in artifacts/converse-history.png
// ($AVIARY_ARTIFACTS overrides the directory).
func TestConverseHistory(t *testing.T) {
	dir := jsDir(t)
	chromium := chromiumPath(t)
	n, _, base := node(t, nil)
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "webuser", "pw-web")
	tcp := servertest.Dial(t, n)
	tcp.Login("carol", "pw-carol", "desk")
	tcp.Send("<presence/>")
	tcp.Timeout = 90 * time.Second // node and Chromium start slowly on a loaded machine

	pages := conversePages(t, dir)

	shot := artifactPath(t, "converse-history.png")
	q := url.Values{
		"ws":   {"ws" + strings.TrimPrefix(base, "http") + httpd.PathWebSocket},
		"jid":  {"webuser@localhost"},
		"pw":   {"pw-web"},
		"peer": {"carol@localhost"},
	}
	const say, answer = "Hello Carol, this is Converse", "Hi! I will still be here after a reload"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "converse.mjs", pages.URL+"/?"+q.Encode(), say, answer, shot)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out := logOnFailure(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	msg := tcp.Await("Converse's message", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == say
	})
	tcp.Send("<message to='%s' type='chat' id='answer1'><body>%s</body></message>", msg.From(), answer)
	if err := <-done; err != nil || !strings.Contains(out.String(), "OK") {
		t.Fatalf("converse: %v\n%s", err, out.String())
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Errorf("no screenshot at %s: %v", shot, err)
	}
}

// TestConverseUpload: Converse.js sends an image with its own XEP-0363
// upload from one page, through CORS to the node's HTTP listener, and a
// second Converse.js page, the receiver's, shows it. The screenshot of
// the receiver's page is kept in artifacts/converse-upload.png.
func TestConverseUpload(t *testing.T) {
	dir := jsDir(t)
	chromium := chromiumPath(t)
	addr := servertest.FreeAddr(t)
	n, _, base := node(t, func(cfg *conf.Config) {
		cfg.HTTP.Listen = addr
		cfg.Upload.URL = "http://" + addr
	})
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "webuser", "pw-web")

	pages := conversePages(t, dir)
	pageURL := func(jid, pw, peer string) string {
		return pages.URL + "/?" + url.Values{
			"ws": {"ws" + strings.TrimPrefix(base, "http") + httpd.PathWebSocket}, "jid": {jid}, "pw": {pw}, "peer": {peer},
		}.Encode()
	}
	shot := artifactPath(t, "converse-upload.png")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "converse_upload.mjs",
		pageURL("webuser@localhost", "pw-web", "carol@localhost"), pageURL("carol@localhost", "pw-carol", "webuser@localhost"), shot)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out := logOnFailure(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "OK http://"+addr+"/upload/") {
		t.Fatalf("converse upload: %v\n%s", err, out.String())
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Errorf("no screenshot at %s: %v", shot, err)
	}
}

// TestConverseGroupChat: two Converse.js pages in headless Chromium in one
// room of the group chat service. The owner's page (WebSocket) creates
// the room, the guest's page (BOSH) joins it, each types a message that
// both pages show, then the owner types /kick and the guest's page says
// it was kicked from the groupchat. Screenshots of both pages after the
// kick are kept in artifacts/converse-muc-owner.png and
// artifacts/converse-muc-guest.png.
func TestConverseGroupChat(t *testing.T) {
	dir := jsDir(t)
	chromium := chromiumPath(t)
	n, _, base := node(t, nil)
	servertest.CreateUser(t, n, "alice", "pw-alice")
	servertest.CreateUser(t, n, "bob", "pw-bob")

	pages := conversePages(t, dir)
	const room = "lounge@conference.localhost"
	owner := pages.URL + "/?" + url.Values{
		"ws": {"ws" + strings.TrimPrefix(base, "http") + httpd.PathWebSocket}, "jid": {"alice@localhost"}, "pw": {"pw-alice"},
		"room": {room}, "nick": {"Alice"},
	}.Encode()
	guest := pages.URL + "/?" + url.Values{
		"bosh": {base + httpd.PathBOSH}, "jid": {"bob@localhost"}, "pw": {"pw-bob"},
		"room": {room}, "nick": {"Bob"},
	}.Encode()
	ownerShot, guestShot := artifactPath(t, "converse-muc-owner.png"), artifactPath(t, "converse-muc-guest.png")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "converse_muc.mjs", owner, guest, "Bob", ownerShot, guestShot)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out := logOnFailure(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "OK") {
		t.Fatalf("converse groupchat: %v\n%s", err, out.String())
	}
	for _, shot := range []string{ownerShot, guestShot} {
		if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
			t.Errorf("no screenshot at %s: %v", shot, err)
		}
	}
}

// artifactPath returns name's path in the artifacts directory
// ($AVIARY_ARTIFACTS, or artifacts/ at the module root), made if needed.
func artifactPath(t *testing.T, name string) string {
	t.Helper()
	artifacts := os.Getenv("AVIARY_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join("..", "..", "artifacts")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	p, _ := filepath.Abs(filepath.Join(artifacts, name))
	return p
}

// conversePages serves converse.html and Converse.js's files from another
// origin than the node's, as a web site would.
func conversePages(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "converse.html"))
	})
	mux.Handle("/converse/", http.StripPrefix("/converse/", http.FileServer(http.Dir(filepath.Join(dir, "node_modules", "converse.js", "dist")))))
	pages := httptest.NewServer(mux)
	t.Cleanup(pages.Close)
	return pages
}
