package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

// TestServeSaysWhereItServes runs `aviary serve` as a newcomer would
// (every client listener on, the console, no admin yet): its "ready"
// record names each address with the port really bound, as URLs a web
// client or browser can use, and how to make the first admin; the URLs
// it prints answer.
func TestServeSaysWhereItServes(t *testing.T) {
	dir := t.TempDir()
	var stderr testutil.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runServe(ctx, []string{"--domain", "localhost", "--data-dir", filepath.Join(dir, "data"),
			"--c2s-listen", "127.0.0.1:0", "--c2s-tls-listen", "127.0.0.1:0", "--s2s-listen", "off",
			"--http-listen", "127.0.0.1:0", "--https-listen", "off", "--admin-listen", "127.0.0.1:0", "--cluster-listen", "off"},
			nil, &stderr, make(chan os.Signal))
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("aviary serve exited %d:\n%s", code, stderr.String())
		}
	}()
	var line string
	testutil.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(l, "aviary serve: ready") {
				line = l
				return nil
			}
		}
		return fmt.Errorf("no ready record in:\n%s", stderr.String())
	})
	value := func(key string) string {
		t.Helper()
		m := regexp.MustCompile(`\b` + key + `=("(?:[^"\\]|\\.)*"|\S+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no %s in %q", key, line)
		}
		return strings.Trim(m[1], `"`)
	}
	for _, key := range []string{"c2s_starttls", "c2s_direct_tls"} {
		a := value(key)
		if _, port, err := net.SplitHostPort(a); err != nil || port == "0" {
			t.Errorf("%s=%q: want the bound address", key, a)
		} else if c, err := net.DialTimeout("tcp", a, 5*time.Second); err != nil {
			t.Errorf("%s=%q does not answer: %v", key, a, err)
		} else {
			c.Close()
		}
	}
	if ws, bosh := value("websocket"), value("bosh"); !strings.HasPrefix(ws, "ws://127.0.0.1:") || !strings.HasSuffix(ws, "/xmpp-websocket") || !strings.HasPrefix(bosh, "http://127.0.0.1:") || !strings.HasSuffix(bosh, "/http-bind") {
		t.Errorf("web client URLs bosh=%q websocket=%q", bosh, ws)
	}
	if v := value("bosh_tls"); v != "off" {
		t.Errorf("bosh_tls=%q with --https-listen off", v)
	}
	console := value("console")
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(console)
	if err != nil {
		t.Fatalf("console %q: %v", console, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Errorf("console %q answered %s", console, resp.Status)
	}
	if !strings.Contains(value("first_admin"), "admin.admins=admin@localhost") {
		t.Errorf("first_admin does not say how: %q", value("first_admin"))
	}
	if strings.Contains(line, "web_clients=") {
		t.Errorf("suggests turning on HTTP although it listens: %q", line)
	}
}
