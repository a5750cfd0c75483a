package backend_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/nodelog"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
)

// TestConsoleSignInSurvivesRestartInBrowser signs in to a node's console
// in headless Chromium, restarts the node (same address, same store), and
// finds the console still signed in: sign-ins live in the shared store, no
// longer in the node's memory. The browser then goes through the account,
// session, settings, logs, audit and rooms pages; what it did must have
// happened on the node. Screenshots: artifacts/admin-console.
func TestConsoleSignInSurvivesRestartInBrowser(t *testing.T) {
	jsDir := browserDeps(t)
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	start := func(cfg *conf.Config) (*server.Node, *backend.Service) {
		log := slog.New(nodelog.New(io.Discard, "text", new(slog.LevelVar), nodelog.NewRing(0, 0)))
		plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, log)
		adm := backend.NewService(cfg, backend.Deps{Logger: log, Plugins: plugs})
		return servertest.RunServer(t, cfg, server.WithService(plugs), server.WithService(adm), server.WithLogger(log)), adm
	}
	n, adm := start(cfg)
	servertest.CreateUser(t, n, "boss", "boss-secret")
	servertest.CreateUser(t, n, "alice", "alice-secret")
	servertest.CreateUser(t, n, "bob", "bob-secret")
	base := "http://" + adm.Addr().String()
	shots := artifactDir(t, "admin-console")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "testdata/console_restart.mjs", base, "boss", "boss-secret", shots)
	cmd.Env = append(os.Environ(), "JS_DIR="+jsDir)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var transcript []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		transcript = append(transcript, line)
		t.Logf("browser: %s", line)
		if line != "SYNC restart" {
			continue
		}
		// The node restarts: stopped, then a new one on the same admin
		// address and the same store.
		stopCtx, stop := context.WithTimeout(ctx, 30*time.Second)
		if err := n.Stop(stopCtx); err != nil {
			t.Fatal(err)
		}
		stop()
		again := *cfg
		again.Admin.Listen = adm.Addr().String()
		n, adm = start(&again)
		// Someone to lock and someone to look at.
		alice := servertest.Dial(t, n)
		alice.Login("alice", "alice-secret", "phone")
		t.Cleanup(func() { alice.Close() })
		bob := servertest.Dial(t, n)
		bob.Login("bob", "bob-secret", "desk")
		bob.Send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>")
		// alice has a contact and a message waiting.
		_, _, _, _, err := n.Store().UpdateRosterItem(ctx, "alice@localhost", "carol@example.net", storage.RosterQuota{},
			func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
				it.Name, it.Subscription, it.InRoster, it.Groups = "Carol", storage.SubBoth, true, []string{"Friends"}
				return it, false, nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Store().StoreOffline(ctx, "alice@localhost", []byte("<message from='carol@example.net/pda' to='alice@localhost' type='chat'><body>see you at five</body></message>"), storage.OfflineQuota{}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil || len(transcript) == 0 || transcript[len(transcript)-1] != "OK" {
		t.Fatalf("browser run failed: %v\n%s", err, strings.Join(transcript, "\n"))
	}
	if u, err := n.Store().GetUser(ctx, "alice"); err != nil || u.Locked() {
		t.Errorf("alice after lock and unlock: locked %v, %v", u.Locked(), err)
	}
	if lvl := n.LiveConfig().LogLevel; lvl != "debug" {
		t.Errorf("log_level = %s after the settings form", lvl)
	}
	for _, page := range []string{"overview-after-restart", "user", "user-locked", "sessions", "session", "settings", "logs", "audit", "rooms"} {
		if fi, err := os.Stat(filepath.Join(shots, page+".png")); err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s missing or empty: %v", page, err)
		}
	}
}
