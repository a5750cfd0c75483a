package hazelcast

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
)

// TestSIGKILL runs node k in a child process (this test binary again),
// kills it with SIGKILL and measures how long the survivors take to clean
// up, with the production timings (2s heartbeat, 10s TTL).
func TestSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a TTL")
	}
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	prod := func(name string) conf.ClusterConfig {
		cc := testConfig([]string{m.Addr()}, m.ClusterName, name, "s3cret")
		cc.HeartbeatInterval, cc.NodeTTL = 2*time.Second, 10*time.Second
		return cc
	}
	var survivors []*node
	for _, name := range []string{"a", "b"} {
		c, err := NewWithOptions(Options{Cluster: prod(name), Prefix: p})
		if err != nil {
			t.Fatal(err)
		}
		n := &node{Cluster: c, ev: &events{down: map[string][][]cluster.Route{}}}
		c.OnNodeDown(func(node string, routes []cluster.Route) {
			n.ev.mu.Lock()
			n.ev.down[node] = append(n.ev.down[node], routes)
			n.ev.mu.Unlock()
		})
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Stop(context.Background()) })
		survivors = append(survivors, n)
	}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "AVIARY_SIGKILL_CHILD="+m.Addr()+" "+m.ClusterName+" "+p)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // the child exits if we die
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("child exited before READY")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("child not ready")
	}
	want := []cluster.Route{{JID: "u@x/k", Node: "k", Priority: 1, Available: true}}
	for _, n := range survivors {
		waitRoutes(t, n, "u@x", want)
		waitMembers(t, []string{"a", "b", "k"}, n)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 40*time.Second, 20*time.Millisecond, func() error {
		for _, n := range survivors {
			d := n.ev.downs("k")
			if len(d) != 1 || !reflect.DeepEqual(d[0], want) {
				return fmt.Errorf("%s: down events for k: %+v", n.NodeName(), d)
			}
		}
		return nil
	})
	t.Logf("SIGKILLed node cleaned up on both survivors after %v (heartbeat 2s, TTL 10s)", time.Since(start).Round(10*time.Millisecond))
	for _, n := range survivors {
		waitRoutes(t, n, "u@x", nil)
	}
}

// sigkillChild is node k for TestSIGKILL, run by TestMain in the child
// process instead of the tests.
func sigkillChild(env string) {
	f := strings.Fields(env)
	cc := testConfig([]string{f[0]}, f[1], "k", "s3cret")
	cc.HeartbeatInterval, cc.NodeTTL = 2*time.Second, 10*time.Second
	c, err := NewWithOptions(Options{Cluster: cc, Prefix: f[2]})
	if err == nil {
		err = c.Start(context.Background())
	}
	if err == nil {
		err = c.PutRoute(context.Background(), cluster.Route{JID: "u@x/k", Priority: 1, Available: true})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigkill child:", err)
		os.Exit(1)
	}
	fmt.Println("READY")
	// Until SIGKILL; if the parent dies instead, stdin closes.
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
