package balance_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// streamEnd reads until the stream ends and returns the stream error's
// condition and its text (the see-other-host address), or "" when the
// stream ended without one.
func streamEnd(t *testing.T, c *servertest.Client) (cond, text string) {
	t.Helper()
	for {
		el, err := c.Next()
		if err != nil {
			return "", err.Error()
		}
		if el.Name != "stream:error" {
			continue
		}
		for _, ch := range el.Children {
			if ch.NS() == wire.NSStreams && ch.LocalName() != "text" {
				return ch.LocalName(), strings.TrimSpace(ch.AllText())
			}
		}
		return "", el.String()
	}
}

// TestSIGTERMDrains sends SIGTERM to a real `aviary serve` process with a
// client on it. In a cluster the node drains: the client is told to go to
// the other node (see-other-host) and the process exits 0. A node alone
// stops at once: the client gets system-shutdown and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts aviary processes (and PostgreSQL and Hazelcast)")
	}
	t.Run("clustered: drain, see-other-host, exit 0", func(t *testing.T) {
		cl := startE2ECluster(t, "st", 2, 1)
		a, b := cl.nodes[0], cl.nodes[1]
		// Wait until a knows b and its address: a's dispatcher names b
		// (it picks at random among the accepting nodes).
		waitFor(t, 30*time.Second, "node a to see node b", func() bool {
			code, ans, _ := dispatch(t, a.http, "c2s")
			return code == 200 && net.JoinHostPort(ans.Host, strconv.Itoa(ans.Port)) == b.c2s
		})
		c := servertest.DialAddr(t, a.c2s, "localhost", false)
		c.Timeout = 60 * time.Second
		c.Login("bench0", "bench-secret", "r")
		c.Send("<presence/>")
		cl.signal(a.name, syscall.SIGTERM)
		cond, host := streamEnd(t, c)
		if cond != "see-other-host" || host != b.c2s {
			t.Errorf("the client got %q %q, want see-other-host %s", cond, host, b.c2s)
		}
		if code := cl.wait(a.name, 60*time.Second); code != 0 {
			cl.logTails(t)
			t.Fatalf("%s exited with %d after SIGTERM, want 0", a.name, code)
		}
		log := cl.log(a.name)
		for _, want := range []string{"SIGTERM: draining the node", "balance: drain ended", "aviary node stopped"} {
			if !strings.Contains(log, want) {
				t.Errorf("%s log lacks %q:\n%s", a.name, want, tail(log, 3000))
			}
		}
		// The other node still serves.
		c2 := servertest.DialAddr(t, b.c2s, "localhost", false)
		c2.Login("bench0", "bench-secret", "r")
		c2.Close()
	})
	t.Run("alone: stop at once, exit 0", func(t *testing.T) {
		root, err := filepath.Abs("../..")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		bin, _ := buildBinaries(t, root, dir)
		free := freeAddrs(t, 2)
		c2sAddr := free[0]
		cfg := filepath.Join(dir, "aviary.yaml")
		yaml := fmt.Sprintf(`domain: localhost
data_dir: %s
c2s: {listen: %q, tls_listen: "off"}
admin: {listen: %q}
`, filepath.Join(dir, "data"), c2sAddr, free[1])
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "user", "add", "solo", "--password", "pw-solo", "--config", cfg).CombinedOutput(); err != nil {
			t.Fatalf("user add: %v\n%s", err, out)
		}
		logf, err := os.Create(filepath.Join(dir, "serve.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd := exec.Command(bin, "serve", "--config", cfg)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			done <- nil
		})
		waitFor(t, 60*time.Second, "the node to listen", func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			return strings.Contains(string(b), "aviary node started")
		})
		c := servertest.DialAddr(t, c2sAddr, "localhost", false)
		c.Login("solo", "pw-solo", "r")
		c.Send("<presence/>")
		cmd.Process.Signal(syscall.SIGTERM)
		if cond, text := streamEnd(t, c); cond != "system-shutdown" {
			t.Errorf("the client got %q %q, want system-shutdown", cond, text)
		}
		select {
		case err := <-done:
			done <- err
			if err != nil {
				b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
				t.Fatalf("exit after SIGTERM: %v\n%s", err, tail(string(b), 3000))
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the node did not stop after SIGTERM")
		}
	})
}
