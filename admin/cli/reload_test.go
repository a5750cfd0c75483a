package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

// TestServeReloadsOnSIGHUP runs `aviary serve` in process and changes its
// configuration file under it: SIGHUP applies a new log_level (and the
// other conf.Live keys), and a change of a key that needs a restart
// (c2s.listen) or an invalid value is refused whole, naming the key, with
// the node running on as before.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "aviary.yaml")
	write := func(level, listen string, reg ...bool) {
		t.Helper()
		y := fmt.Sprintf("log_level: %s\nc2s:\n  listen: %q\n  allow_registration: %v\n", level, listen, len(reg) > 0 && reg[0])
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("info", "127.0.0.1:0")
	var stderr testutil.Buffer
	sigs := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runServe(ctx, []string{"--config", path, "--data-dir", filepath.Join(dir, "data"), "--c2s-tls-listen", "off",
			"--s2s-listen", "off", "--http-listen", "off", "--https-listen", "off", "--admin-listen", "off", "--cluster-listen", "off"},
			nil, &stderr, sigs)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("aviary serve exited %d:\n%s", code, stderr.String())
		}
	}()
	waitFor := func(what string) {
		t.Helper()
		testutil.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			if !strings.Contains(stderr.String(), what) {
				return fmt.Errorf("no %q in the log:\n%s", what, stderr.String())
			}
			return nil
		})
	}
	// probe logs at debug and reports whether the line came out.
	probe := func(name string) bool {
		slog.Default().Debug(name)
		return strings.Contains(stderr.String(), "msg="+name)
	}
	waitFor("aviary node started")
	if probe("probe-before") {
		t.Fatal("a debug line came out at log_level info")
	}

	write("debug", "127.0.0.1:0")
	sigs <- syscall.SIGHUP
	waitFor("changed=log_level")
	if !probe("probe-debug") {
		t.Fatalf("no debug line after reloading log_level debug:\n%s", stderr.String())
	}
	// Every key the console may change live reloads too, through the
	// same path (Node.ChangeLive).
	write("debug", "127.0.0.1:0", true)
	sigs <- syscall.SIGHUP
	waitFor("changed=c2s.allow_registration")

	for _, c := range []struct{ level, listen, key string }{
		{"info", "127.0.0.1:1", "c2s.listen"}, // and log_level, refused with it
		{"loud", "127.0.0.1:0", "log_level"},
	} {
		before := strings.Count(stderr.String(), "configuration not reloaded")
		write(c.level, c.listen)
		sigs <- syscall.SIGHUP
		testutil.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			if strings.Count(stderr.String(), "configuration not reloaded") == before {
				return fmt.Errorf("no refusal in the log:\n%s", stderr.String())
			}
			return nil
		})
		if tail := stderr.String()[strings.LastIndex(stderr.String(), "configuration not reloaded"):]; !strings.Contains(tail, c.key) {
			t.Errorf("the refusal does not name %s: %s", c.key, tail)
		}
		if !probe("probe-" + c.level) {
			t.Errorf("after a refused reload (%s) the log level changed:\n%s", c.key, stderr.String())
		}
	}
}
