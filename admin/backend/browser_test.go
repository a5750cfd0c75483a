package backend_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
)

func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("AVIARY_REQUIRE_SERVICES") == "1"
}

func buildPlugin(t *testing.T, version string) string {
	return exampletest.Build(t, "plugins/examples/wordfilter/"+version)
}

// TestConsoleInBrowser signs in to the console in headless Chromium and
// does what an operator does; screenshots of every main page are kept in
// artifacts/admin (or $AVIARY_ARTIFACTS/admin).
func TestConsoleInBrowser(t *testing.T) {
	jsDir, _ := filepath.Abs("../../server/httpd/testdata/js")
	_, errMod := os.Stat(filepath.Join(jsDir, "node_modules", "playwright-core"))
	_, errChrome := os.Stat("/usr/bin/chromium")
	_, errNode := exec.LookPath("node")
	if errMod != nil || errChrome != nil || errNode != nil {
		if required() {
			t.Fatalf("browser test needs node, playwright-core and chromium (.ci/setup.sh): %v %v %v", errMod, errChrome, errNode)
		}
		t.Skip("node, playwright-core or chromium missing")
	}
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	cfg.Plugins.Rollout.HealthWindow = time.Second // the page waits 30s for the rollout
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, servertest.TestLogger())
	adm := backend.NewService(cfg, backend.Deps{Logger: servertest.TestLogger(), Plugins: plugs})
	n := servertest.RunServer(t, cfg, server.WithService(plugs), server.WithService(adm))
	servertest.CreateUser(t, n, "boss", "boss-secret")
	v1, v2 := buildPlugin(t, "v1"), buildPlugin(t, "v2")

	artifacts := os.Getenv("AVIARY_ARTIFACTS")
	if artifacts == "" {
		artifacts, _ = filepath.Abs("../../artifacts")
	}
	shots := filepath.Join(artifacts, "admin")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "testdata/console.mjs", "http://"+adm.Addr().String(), "boss", "boss-secret", v1, v2, shots)
	cmd.Env = append(os.Environ(), "JS_DIR="+jsDir)
	out, err := cmd.CombinedOutput()
	t.Logf("console run:\n%s", out)
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("console run failed: %v", err)
	}
	// What the browser did really happened on the node.
	if _, err := n.Store().GetUser(ctx, "carol"); err != nil {
		t.Errorf("carol was not created: %v", err)
	}
	if v := adm.Plugins().Loaded()["wordfilter"]; v != "2.0.0" {
		t.Errorf("node runs wordfilter %q, want 2.0.0", v)
	}
	for _, page := range []string{"overview", "cluster", "users", "sessions", "federation", "plugins"} {
		if st, err := os.Stat(filepath.Join(shots, page+".png")); err != nil || st.Size() < 1000 {
			t.Errorf("screenshot %s missing or empty: %v", page, err)
		}
	}
}
