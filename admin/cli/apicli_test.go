package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
)

// TestAPICommands drives a real node's admin API through the CLI: sign in
// for a token, upload a plugin, enable it, roll it out, list and kick
// sessions.
func TestAPICommands(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	cfg.Plugins.Rollout.HealthWindow = 300 * time.Millisecond
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, servertest.TestLogger())
	adm := backend.NewService(cfg, backend.Deps{Logger: servertest.TestLogger(), Plugins: plugs})
	n := servertest.RunServer(t, cfg, server.WithService(plugs), server.WithService(adm))
	servertest.CreateUser(t, n, "boss", "boss-secret")
	servertest.CreateUser(t, n, "alice", "alice-secret")
	base := "http://" + adm.Addr().String()
	ctx := context.Background()

	run := func(fn func(ctx context.Context, args, environ []string, stdout, stderr *bytes.Buffer) int, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := fn(ctx, args, []string{"AVIARY_ADMIN_URL=" + base}, &out, &errb)
		return code, out.String(), errb.String()
	}
	var stdin = strings.NewReader("wrong\n")
	var out, errb bytes.Buffer
	if code := runAdmin(ctx, []string{"login", "--admin", base, "boss"}, nil, stdin, &out, &errb); code != 1 {
		t.Fatalf("login with a wrong password: code %d, %s", code, errb.String())
	}
	out.Reset()
	if code := runAdmin(ctx, []string{"login", "--admin", base, "alice"}, nil, strings.NewReader("alice-secret\n"), &out, &errb); code != 1 {
		t.Fatalf("a non-admin got a token: %s", out.String())
	}
	out.Reset()
	if code := runAdmin(ctx, []string{"login", "--admin", base, "boss"}, nil, strings.NewReader("boss-secret\n"), &out, &errb); code != 0 {
		t.Fatalf("login: %s", errb.String())
	}
	token := strings.TrimSpace(out.String())
	if !strings.HasPrefix(token, "avt_") {
		t.Fatalf("token = %q", token)
	}
	// Flags after positional arguments are not parsed by Go's flag
	// package, so the token goes first.
	plugin := func(args ...string) (int, string, string) {
		full := append([]string{args[0], "--token", token}, args[1:]...)
		return run(func(ctx context.Context, a, env []string, o, e *bytes.Buffer) int {
			return runPlugin(ctx, a, env, o, e)
		}, full...)
	}

	wasm := examplePlugin(t)
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("not a module"), 0o600)

	if code, _, e := plugin("upload", "wordfilter", "1.0.0", notWasm); code != 1 || !strings.Contains(e, "WebAssembly") {
		t.Errorf("uploading garbage: %d %s", code, e)
	}
	if code, _, e := plugin("upload", "wordfilter", "1.0.0", wasm); code != 0 {
		t.Fatalf("upload: %s", e)
	}
	// A version is never replaced (issue 17: it was, silently).
	if code, _, e := plugin("upload", "wordfilter", "1.0.0", wasm); code != 1 || !strings.Contains(e, "409") || !strings.Contains(e, "already in the catalogue") {
		t.Errorf("uploading 1.0.0 again: %d %s", code, e)
	}
	if code, o, _ := plugin("list"); code != 0 || !strings.Contains(o, "wordfilter") || !strings.Contains(o, "1.0.0") {
		t.Errorf("list: %s", o)
	}
	if code, o, e := plugin("upgrade", "--wait", "wordfilter", "1.0.0"); code != 0 || !strings.Contains(o, "done") {
		t.Fatalf("upgrade: %d %s %s", code, o, e)
	}
	if v := adm.Plugins().Loaded()["wordfilter"]; v != "1.0.0" {
		t.Errorf("node runs %q after the rollout", v)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`aviary_plugin_calls_total{node="test-node",plugin="wordfilter",version="1.0.0"}`, `aviary_plugin_errors_total{node="test-node",plugin="wordfilter",version="1.0.0"} 0`, `aviary_build_info{goversion="go`, "aviary_cluster_clustered 0", "aviary_cluster_members 1", "aviary_c2s_sessions", "go_goroutines"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if code, o, _ := plugin("list"); code != 0 || !strings.Contains(o, "test-node:loaded") {
		t.Errorf("list after the rollout: %s", o)
	}
	if code, _, e := plugin("delete", "wordfilter@1.0.0"); code != 1 || !strings.Contains(e, "409") || !strings.Contains(e, "disable it first") {
		t.Errorf("deleting the enabled version: %d %s", code, e)
	}
	if code, _, e := plugin("delete", "wordfilter@"); code != 2 {
		t.Errorf("delete NAME@ without a version: %d %s", code, e)
	}
	if code, o, e := plugin("disable", "wordfilter", "1.0.0"); code != 0 || !strings.Contains(o, "test-node") || !strings.Contains(o, "unloaded") {
		t.Errorf("disable: %d %s %s", code, o, e)
	}
	if len(adm.Plugins().Loaded()) != 0 {
		t.Errorf("still running after disable: %v", adm.Plugins().Loaded())
	}
	if code, o, e := plugin("enable", "wordfilter", "1.0.0"); code != 0 || !strings.Contains(o, "loaded") {
		t.Errorf("enable: %d %s %s", code, o, e)
	}
	if code, _, e := plugin("disable", "wordfilter", "1.0.0"); code != 0 {
		t.Errorf("disable again: %s", e)
	}
	if code, o, e := plugin("delete", "wordfilter@1.0.0"); code != 0 || !strings.Contains(o, "deleted wordfilter 1.0.0") {
		t.Errorf("delete: %d %s %s", code, o, e)
	}
	if code, _, e := plugin("delete", "wordfilter"); code != 1 || !strings.Contains(e, "404") {
		t.Errorf("deleting what is gone: %d %s", code, e)
	}
	c := servertest.DialAddr(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	c.Login("alice", "alice-secret", "phone")
	session := func(args ...string) (int, string, string) {
		full := append([]string{args[0], "--token", token}, args[1:]...)
		return run(func(ctx context.Context, a, env []string, o, e *bytes.Buffer) int {
			return runSession(ctx, a, env, o, e)
		}, full...)
	}
	if code, o, e := session("list"); code != 0 || !strings.Contains(o, "alice@localhost/phone") || !strings.Contains(o, "tcp") {
		t.Fatalf("session list: %d %s %s", code, o, e)
	}
	if code, o, e := session("show", "alice@localhost/phone"); code != 0 || !strings.Contains(o, "transport          tcp") || !strings.Contains(o, "address            127.0.0.1") || !strings.Contains(o, "connected since") {
		t.Errorf("session show: %d %q %s", code, o, e)
	}
	if code, o, _ := session("show", "--json", "alice@localhost/phone"); code != 0 || !strings.Contains(o, `"transport": "tcp"`) {
		t.Errorf("session show --json: %d %s", code, o)
	}
	if code, _, e := session("show", "alice@localhost/tablet"); code != 1 || !strings.Contains(e, "404") {
		t.Errorf("session show of a session not online: %d %s", code, e)
	}
	user := func(args ...string) (int, string, string) {
		full := append([]string{args[0], "--token", token}, args[1:]...)
		return run(func(ctx context.Context, a, env []string, o, e *bytes.Buffer) int {
			return runUser(ctx, a, env, strings.NewReader(""), o, e)
		}, full...)
	}
	if code, o, e := user("show", "alice"); code != 0 || !strings.Contains(o, "alice@localhost") || !strings.Contains(o, "  state    active") || !strings.Contains(o, "sessions (1)\n  alice@localhost/phone  on test-node, tcp, 127.0.0.1") {
		t.Errorf("user show: %d %q %s", code, o, e)
	}
	if code, o, e := user("lock", "alice"); code != 0 || !strings.Contains(o, "locked alice: logins are refused on every node; 1 session(s) closed") {
		t.Fatalf("user lock: %d %s %s", code, o, e)
	}
	c.ExpectStreamError("not-authorized")
	if code, o, _ := user("show", "alice"); code != 0 || !strings.Contains(o, "locked since") {
		t.Errorf("user show of a locked account: %s", o)
	}
	locked := servertest.DialAddr(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	locked.StartTLS()
	if err := locked.AuthSCRAM("SCRAM-SHA-256", "alice", "alice-secret"); err == nil || !strings.Contains(err.Error(), "account-disabled") {
		t.Errorf("login of a locked account: %v", err)
	}
	if code, o, e := user("unlock", "alice"); code != 0 || !strings.Contains(o, "unlocked alice") {
		t.Fatalf("user unlock: %d %s %s", code, o, e)
	}
	if code, _, e := user("lock", "nobody"); code != 1 || !strings.Contains(e, "404") {
		t.Errorf("locking an unknown account: %d %s", code, e)
	}
	c = servertest.DialAddr(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	c.Login("alice", "alice-secret", "phone")
	if code, _, e := session("kick", "alice@localhost/phone"); code != 0 {
		t.Fatalf("kick: %s", e)
	}
	c.ExpectStreamError("policy-violation")
	servertest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, o, _ := session("list"); strings.Contains(o, "alice@localhost/phone") {
			return fmt.Errorf("still listed: %s", o)
		}
		return nil
	})
	if code, _, _ := session("kick", "alice@localhost/phone"); code != 1 {
		t.Error("kicking a gone session should fail")
	}
}

// examplePlugin is plugins/examples/wordfilter/v1, built once per machine.
func examplePlugin(t *testing.T) string {
	return exampletest.Build(t, "plugins/examples/wordfilter/v1")
}

// TestPluginOffline is the "all nodes stopped" upgrade path: upload and
// enable a version in the store with no node running; the node loads it
// when it starts.
func TestPluginOffline(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	file := filepath.Join(t.TempDir(), "aviary.yaml")
	os.WriteFile(file, []byte("domain: localhost\ndata_dir: "+cfg.DataDir+"\n"), 0o600)
	ctx := context.Background()
	run := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := runPlugin(ctx, args, nil, &o, &e)
		return code, o.String(), e.String()
	}
	if code, _, e := run("upload", "wordfilter", "1.0.0", examplePlugin(t), "--config", file); code != 0 {
		t.Fatalf("offline upload: %s", e)
	}
	if code, _, e := run("upgrade", "wordfilter", "1.0.0", "--config", file); code != 2 || !strings.Contains(e, "running node") {
		t.Errorf("offline upgrade should be refused: %d %s", code, e)
	}
	if code, _, e := run("enable", "wordfilter", "1.0.0", "--config", file); code != 0 {
		t.Fatalf("offline enable: %s", e)
	}
	if code, o, _ := run("list", "--config", file); code != 0 || !strings.Contains(o, "true") {
		t.Errorf("offline list: %s", o)
	}
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, servertest.TestLogger())
	adm := backend.NewService(cfg, backend.Deps{Logger: servertest.TestLogger(), Plugins: plugs})
	n := servertest.RunServer(t, cfg, server.WithService(plugs), server.WithService(adm))
	if v := adm.Plugins().Loaded()["wordfilter"]; v != "1.0.0" {
		t.Errorf("node started with wordfilter %q, want the enabled 1.0.0", v)
	}
	// Delete without a running node: refused while enabled, and while a
	// node's last report says it runs it (a crashed node's report stays:
	// --force passes over reports).
	if code, _, e := run("delete", "wordfilter@1.0.0", "--config", file); code != 1 || !strings.Contains(e, "disable it first") {
		t.Errorf("offline delete of the enabled version: %d %s", code, e)
	}
	if code, _, e := run("disable", "wordfilter", "1.0.0", "--config", file); code != 0 {
		t.Fatalf("offline disable: %s", e)
	}
	if err := n.Store().SetNodePlugin(ctx, storage.NodePlugin{Node: "crashed", Name: "wordfilter", Version: "1.0.0", State: "loaded"}); err != nil {
		t.Fatal(err)
	}
	// The node follows at its next pass over the catalogue (an embedded
	// store tells only its own process).
	if err := adm.Plugins().Reconcile(ctx, true); err != nil || len(adm.Plugins().Loaded()) != 0 {
		t.Fatalf("the node runs %v after disable (%v)", adm.Plugins().Loaded(), err)
	}
	if code, _, e := run("delete", "wordfilter@1.0.0", "--config", file); code != 1 || !strings.Contains(e, "crashed runs 1.0.0") || strings.Contains(e, "test-node") {
		t.Errorf("offline delete of a version a node reported: %d %s", code, e)
	}
	if code, o, e := run("delete", "wordfilter", "--force", "--config", file); code != 0 || !strings.Contains(o, "deleted wordfilter") {
		t.Errorf("offline delete --force: %d %s %s", code, o, e)
	}
	if code, o, _ := run("list", "--config", file); code != 0 || strings.Contains(o, "wordfilter") {
		t.Errorf("offline list after delete: %s", o)
	}
}
