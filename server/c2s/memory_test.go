package c2s_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// The idle-session memory figure is measured with the clients in another
// process (this test binary re-run as a client), so only the server's
// memory is counted.

func TestMain(m *testing.M) {
	if os.Getenv("AVIARY_MEM_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	if addr := os.Getenv("AVIARY_MEMCLIENT_ADDR"); addr != "" {
		n, _ := strconv.Atoi(os.Getenv("AVIARY_MEMCLIENT_N"))
		if err := runMemClients(addr, n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m) // stops the shared PostgreSQL some tests start
}

func runMemClients(addr string, n int) error {
	conns := make([]*tls.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		if err != nil {
			return err
		}
		rd := wire.NewReader(c, wire.Limits{})
		open := func() error {
			fmt.Fprint(c, "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
			if _, err := rd.Header(); err != nil {
				return err
			}
			_, err := rd.Next()
			return err
		}
		if err := open(); err != nil {
			return err
		}
		fmt.Fprintf(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>",
			base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("\x00user%d\x00pw", i))))
		if el, err := rd.Next(); err != nil || el.Name != "success" {
			return fmt.Errorf("auth: %v %v", el, err)
		}
		rd.Restart()
		if err := open(); err != nil {
			return err
		}
		fmt.Fprintf(c, "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r%d</resource></bind></iq>", i)
		if el, err := rd.Next(); err != nil || el.Type() != "result" {
			return fmt.Errorf("bind: %v %v", el, err)
		}
		fmt.Fprint(c, "<presence/>")
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // hold the sessions until the parent closes stdin
	return nil
}

// rss is the process's resident set size from /proc/self/status (0
// where that is not available).
func rss() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func serverMem() uint64 {
	var ms runtime.MemStats
	// Stacks shrink by half per GC cycle at most: run enough cycles to
	// reach the steady state a long-running server is in.
	for i := 0; i < 8; i++ {
		runtime.GC()
	}
	debug.FreeOSMemory()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// TestIdleSessionMemory measures what an idle, authenticated, bound TLS
// session costs the server (heap plus goroutine stacks). It reports the
// figure; the assertion is a generous ceiling so the test cannot flake.
func TestIdleSessionMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("memory measurement skipped in -short mode and under the race detector")
	}
	n := 300 // AVIARY_MEM_SESSIONS=2000 measures more sessions
	if v, err := strconv.Atoi(os.Getenv("AVIARY_MEM_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	cfg := servertest.DefaultConfig(t)
	node := servertest.RunServer(t, cfg)
	// Distinct users, each with presence sent: a realistic idle session
	// (n resources of one user would each hold n-1 presences).
	creds, err := auth.NewCredentials("pw", cfg.C2S.SCRAMIterations)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := node.Store().CreateUser(context.Background(), storage.User{Username: fmt.Sprintf("user%d", i), Credentials: creds}); err != nil {
			t.Fatal(err)
		}
	}
	before, rssBefore := serverMem(), rss()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AVIARY_MEMCLIENT_ADDR="+node.Addr(server.ListenerC2STLS).String(), "AVIARY_MEMCLIENT_N="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("clients: %q %v", line, err)
	}
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := len(node.Router().LocalSessions()); got != n {
			return fmt.Errorf("%d sessions bound", got)
		}
		return nil
	})
	after, rssAfter := serverMem(), rss()
	if f := os.Getenv("AVIARY_MEM_PROFILE"); f != "" {
		out, _ := os.Create(f)
		_ = pprof.WriteHeapProfile(out)
		out.Close()
		g, _ := os.Create(f + ".goroutines")
		_ = pprof.Lookup("goroutine").WriteTo(g, 1)
		g.Close()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sm := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(sm)
	t.Logf("stack starting size %d, stacks %d KiB", sm[0].Value.Uint64(), sm[1].Value.Uint64()>>10)
	t.Logf("stacks in use %d KiB, heap in use %d KiB, goroutines %d", ms.StackInuse>>10, ms.HeapInuse>>10, runtime.NumGoroutine())
	per := float64(after-before) / float64(n)
	t.Logf("idle authenticated TLS session: %.1f KiB (heap+stacks, %d sessions)", per/1024, n)
	if rssBefore > 0 && rssAfter > 0 {
		t.Logf("idle authenticated TLS session: %.1f KiB (process RSS growth, %d sessions)", float64(rssAfter-rssBefore)/float64(n)/1024, n)
	}
	if per > 64<<10 {
		t.Errorf("idle session costs %.1f KiB, far above the 30 KiB target", per/1024)
	}
}
