package backend_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/clustertest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// The cluster browser test's load: loadUsers sessions in a ring spread
// over the three nodes (user i on node i mod 3, so every message crosses
// nodes), each sender pausing loadInterval between writes. The ring sends
// until the test signals the tool (SIGUSR1) after the upgrade.
const (
	loadUsers    = 24
	loadInterval = "20ms"
	loadPass     = "load-secret"
)

// clusterNodeYAML is every node's config file: the admin account and
// timing knobs the flags do not cover. Each rollout step is watched for
// 2s (the load runs through it), and the nodes share the machine's test
// cache of compiled plugins (exampletest.CompiledDir) under pluginsDir.
func clusterNodeYAML(pluginsDir string) string {
	return `admin:
  admins: ["boss@localhost"]
c2s:
  sasl_failure_delay: 1ms
cluster:
  startup_retries: 3
  startup_retry_interval: 1s
  operation_timeout: 3s
database:
  timeout: 2s
plugins:
  dir: ` + strconv.Quote(pluginsDir) + `
  rollout:
    health_window: 2s
`
}

// TestClusterConsoleInBrowser operates a three-node cluster (three `aviary
// serve` processes, one PostgreSQL, one Hazelcast member) from headless
// Chromium through node 1's console: sign in, see three nodes, switch
// clustering off and see every node leave, switch it on and see them
// rejoin, upload wordfilter 1.0.0 and 2.0.0, roll 1.0.0 out, then roll
// 2.0.0 through the cluster while aviary-bench runs a ring over the three
// nodes, which must lose nothing. Screenshots go to artifacts/admin-cluster
// (or $AVIARY_ARTIFACTS/admin-cluster).
func TestClusterConsoleInBrowser(t *testing.T) {
	if testing.Short() && !required() {
		t.Skip("starts PostgreSQL, Hazelcast, three aviary processes and Chromium")
	}
	jsDir := browserDeps(t)
	tmp := t.TempDir()
	began := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), what) }

	// Slow things first and at once: the two binaries and the Hazelcast
	// JVM in the background, PostgreSQL and the plugins here (their
	// helpers need the test goroutine).
	var (
		wg              sync.WaitGroup
		avBin, benchBin string
		avErr, benchErr error
		hzMembers       []*hztest.Member
		hzErr           error
		hzName          = "aviary-console-" + strconv.Itoa(os.Getpid())
	)
	wg.Go(func() { avBin, avErr = clustertest.Build(tmp) })
	wg.Go(func() { benchBin, benchErr = buildBench(tmp) })
	wg.Go(func() { hzMembers, hzErr = hztest.Start(hzName, 1) })
	t.Cleanup(func() {
		for _, m := range hzMembers {
			m.Kill()
		}
	})
	pg := pgtest.Start(t)
	v1, v2 := buildPlugin(t, "v1"), buildPlugin(t, "v2")
	wg.Wait()
	if hzErr != nil {
		if hztest.IsUnavailable(hzErr) {
			hztest.Unavailable(t, hzErr)
		}
		t.Fatal(hzErr)
	}
	if err := errors.Join(avErr, benchErr); err != nil {
		t.Fatal(err)
	}
	hz := hzMembers[0]
	phase("binaries built, PostgreSQL and Hazelcast up")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, pg.URL(), postgres.Options{Logger: servertest.TestLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	users := &auth.Users{Store: st, Domain: "localhost", Iterations: conf.Default().C2S.SCRAMIterations}
	if err := users.CreateUser(ctx, "boss", "boss-secret"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if err := users.CreateUser(ctx, u, u+"-secret"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range loadUsers {
		if err := users.CreateUser(ctx, "load"+strconv.Itoa(i), loadPass); err != nil {
			t.Fatal(err)
		}
	}

	var nodes []*clustertest.Node
	for i := range 3 {
		name := fmt.Sprintf("node%d", i+1)
		n, err := clustertest.NewNode(clustertest.NodeConfig{
			Bin: avBin, Name: name, Database: pg.URL(), Secret: "console-secret",
			Hazelcast: []string{hz.Addr()}, HazelcastName: hz.ClusterName,
			Dir: filepath.Join(tmp, name), ExtraYAML: clusterNodeYAML(filepath.Dir(exampletest.CompiledDir(t))),
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if t.Failed() {
				t.Logf("---- %s log tail:\n%s", n.Cfg.Name, n.LogTail(80))
			}
			n.Kill()
		}
	})
	startCtx, startCancel := context.WithTimeout(ctx, 30*time.Second)
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.Start(startCtx) })
	}
	wg.Wait()
	startCancel()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	adm, err := clustertest.AdminLogin(ctx, nodes[0].AdminURL(), "boss@localhost", "boss-secret")
	if err != nil {
		t.Fatal(err)
	}
	var admins []*clustertest.Admin
	for _, n := range nodes {
		admins = append(admins, adm.On(n.AdminURL()))
	}
	waitClustered(t, admins, true, 60*time.Second)
	phase("three nodes clustered")

	shots := artifactDir(t, "admin-cluster")
	// The browser script stops at each "SYNC label" line until the test
	// answers "go" on its stdin, so the test checks through the API what
	// the console showed, and starts the load at the right moment.
	cmd := exec.CommandContext(ctx, "node", "testdata/cluster_console.mjs",
		nodes[0].AdminURL(), "boss", "boss-secret", v1, v2, shots)
	cmd.Env = append(os.Environ(), "JS_DIR="+jsDir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var load *benchRun
	t.Cleanup(func() {
		if load != nil {
			load.kill()
		}
	})
	var transcript []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		transcript = append(transcript, line)
		phase("browser: " + line)
		label, ok := strings.CutPrefix(line, "SYNC ")
		if !ok {
			continue
		}
		switch label {
		case "disabled":
			// The switch reached every node: each serves alone.
			waitClustered(t, admins, false, 30*time.Second)
		case "enabled":
			waitClustered(t, admins, true, 60*time.Second)
		case "v1":
			waitPlugin(t, admins, "wordfilter", "1.0.0", 30*time.Second)
			var servers []string
			for _, n := range nodes {
				servers = append(servers, n.C2SAddr())
			}
			load = startBench(t, ctx, benchBin, servers)
		default:
			t.Fatalf("browser script asks for unknown step %q", label)
		}
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	err = cmd.Wait()
	if err != nil || len(transcript) == 0 || transcript[len(transcript)-1] != "OK" {
		t.Fatalf("browser run failed: %v (last line %q)", err, strings.Join(transcript[max(len(transcript)-1, 0):], ""))
	}
	if load == nil {
		t.Fatal("the browser script never asked for the load")
	}

	// What the console showed is what the nodes run.
	waitPlugin(t, admins, "wordfilter", "2.0.0", 10*time.Second)
	var up struct {
		State string `json:"state"`
		Steps []struct {
			Node, Version, State string
			Calls, Failures      int
		} `json:"steps"`
	}
	if err := admins[0].Do(ctx, "GET", "/api/upgrade", nil, &up); err != nil {
		t.Fatal(err)
	}
	if up.State != "done" || len(up.Steps) != 3 {
		t.Errorf("upgrade status %+v, want done with 3 steps", up)
	}
	for _, s := range up.Steps {
		// Judged on the load's real messages through each node.
		if s.Version != "2.0.0" || s.State != "healthy" || s.Calls == 0 || s.Failures != 0 {
			t.Errorf("upgrade step %+v, want 2.0.0 healthy after calls without failure", s)
		}
	}
	// The console refused the same version again and one in use, and
	// deleted the one no node ran.
	for _, want := range []string{"upload again refused", "delete refused", "deleted 1.0.0"} {
		if !strings.Contains(strings.Join(transcript, "\n"), want) {
			t.Errorf("the browser never got to %q", want)
		}
	}
	var cat []struct {
		Version string
		Enabled bool
		Nodes   []struct{ Node, State string }
	}
	if err := admins[1].Do(ctx, "GET", "/api/plugins", nil, &cat); err != nil {
		t.Fatal(err)
	}
	if len(cat) != 1 || cat[0].Version != "2.0.0" || !cat[0].Enabled || len(cat[0].Nodes) != 3 {
		t.Errorf("catalogue after the console's delete: %+v", cat)
	}

	// What the page watched: one node at a time, in order, never two at
	// once (polls may miss states, so this checks only what was seen).
	var watched int
	for _, line := range transcript {
		w, ok := strings.CutPrefix(line, "watched ")
		if !ok {
			continue
		}
		watched++
		if err := checkRolling(w, "2.0.0"); err != nil {
			t.Errorf("upgrade seen as %q: %v", w, err)
		}
	}
	if watched == 0 {
		t.Error("the browser saw no state of the upgrade to 2.0.0")
	}
	// No session dropped: all the load's sessions are still routed.
	ss, err := admins[0].Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	online := 0
	for _, s := range ss {
		if strings.HasPrefix(s.JID, "load") {
			online++
		}
	}
	if online != loadUsers {
		t.Errorf("%d load sessions online after the upgrade, want %d", online, loadUsers)
	}

	// Version 2 is what filters cross-node chat now (still under load):
	// alice on node 1 sends bob on node 2 spam, which is dropped, then a
	// word to mask.
	alice := servertest.DialAddr(t, nodes[0].C2SAddr(), "localhost", false)
	alice.Login("alice", "alice-secret", "probe")
	bob := servertest.DialAddr(t, nodes[1].C2SAddr(), "localhost", false)
	bobJID := bob.Login("bob", "bob-secret", "probe")
	alice.Send(`<message to='%s' type='chat' id='spam'><body>buy cheap pills</body></message>`, bobJID)
	alice.Send(`<message to='%s' type='chat' id='mask'><body>darn it</body></message>`, bobJID)
	got := bob.Await("a chat message", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") != ""
	})
	if b := got.ChildText("body", ""); b != "**** it" {
		t.Errorf("bob got %q first, want %q (spam dropped, word masked by 2.0.0)", b, "**** it")
	}

	// The overview's stanza rate is the cluster's: each node publishes its
	// own in its member record and the overview sums them.
	servertest.CheckFor(t, 15*time.Second, 250*time.Millisecond, func() error {
		o, err := admins[0].Overview(ctx)
		if err != nil {
			return err
		}
		busy, sum := 0, 0.0
		for _, nd := range o.Nodes {
			sum += nd.StanzasIn
			if nd.StanzasIn > 0 {
				busy++
			}
		}
		if busy < 3 || math.Abs(o.StanzasIn-sum) > 0.01 {
			return fmt.Errorf("overview %.1f stanzas in/s; %d of %d nodes busy, sum %.1f", o.StanzasIn, busy, len(o.Nodes), sum)
		}
		return nil
	})

	phase("upgrade checked through the API")
	// The load ran through the upgrade: it is still sending now. Stop it,
	// let it drain, and read its report.
	res := load.stop(t)
	phase("load stopped and drained")
	r := res.Ring
	t.Logf("load: %d users on 3 nodes, login %d ok %d failed; ring sent %d, received %d, lost %d, duplicates %d, unexpected %d, stalled %d, %.0f msg/s over %.1fs, latency p50 %.2fms p99 %.2fms max %.2fms",
		res.Users, res.Login.OK, res.Login.Failed, r.Sent, r.Received, r.Lost, r.Duplicates, r.Unexpected, r.Stalled, r.PerSec, r.Seconds, r.Latency.P50, r.Latency.P99, r.Latency.Max)
	if res.Login.OK != loadUsers || res.Login.Failed != 0 {
		t.Errorf("load logins: %d ok, %d failed (%v), want %d ok", res.Login.OK, res.Login.Failed, res.Login.Errors, loadUsers)
	}
	if r.Sent < loadUsers || r.Lost != 0 || r.Received != r.Sent || r.Duplicates != 0 || r.Unexpected != 0 || r.Stalled != 0 || len(r.ReadErrs) != 0 {
		t.Errorf("load run lost or broke something: %+v", *r)
	}
	// Nothing the load sent looked like spam to version 2, which drops
	// "buy cheap" and logs it: the only drop is alice's probe.
	drops := 0
	for _, n := range nodes {
		b, _ := os.ReadFile(n.LogPath())
		drops += bytes.Count(b, []byte("dropped spam"))
	}
	if drops != 1 {
		t.Errorf("wordfilter dropped %d messages, want 1 (the probe)", drops)
	}
	for _, page := range []string{"overview", "overview-disabled", "cluster-disabled", "overview-enabled", "cluster", "users", "sessions", "federation", "plugins-v1", "plugins-upgrading", "plugins-upgraded", "sessions-load", "overview-after", "plugins-delete-refused"} {
		if fi, err := os.Stat(filepath.Join(shots, page+".png")); err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s missing or empty: %v", page, err)
		}
	}
}

// checkRolling checks one observed state of a rolling upgrade to version,
// "running 2.0.0 node1:2.0.0:healthy node2:1.0.0:upgrading ...": nodes move
// in order (none on the new version after one that is not), at most one
// at a time (loading it, or watched on real traffic), and every step is
// healthy once the upgrade is done.
func checkRolling(state, version string) error {
	f := strings.Fields(state)
	if len(f) < 3 {
		if len(f) == 2 && f[0] == "running" {
			return nil // just started: steps not listed yet
		}
		return errors.New("no steps")
	}
	upgrading, behind := 0, false
	for _, step := range f[2:] {
		p := strings.Split(step, ":")
		if len(p) != 3 {
			return fmt.Errorf("bad step %q", step)
		}
		on := p[1] == version && p[2] == "healthy"
		if on && behind {
			return fmt.Errorf("%s moved before an earlier node", p[0])
		}
		behind = behind || !on
		if p[2] == "upgrading" || p[2] == "watching" {
			upgrading++
		}
		if f[0] == "done" && !on {
			return fmt.Errorf("done but %s is %s %s", p[0], p[1], p[2])
		}
	}
	if upgrading > 1 {
		return fmt.Errorf("%d nodes upgrading at once", upgrading)
	}
	return nil
}

// browserDeps returns the directory holding playwright-core, or skips
// (fails when services are required) when node, it or chromium is missing.
func browserDeps(t *testing.T) string {
	t.Helper()
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
	return jsDir
}

func artifactDir(t *testing.T, name string) string {
	t.Helper()
	artifacts := os.Getenv("AVIARY_ARTIFACTS")
	if artifacts == "" {
		artifacts, _ = filepath.Abs("../../artifacts")
	}
	dir := filepath.Join(artifacts, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func buildBench(dir string) (string, error) {
	out := filepath.Join(dir, "aviary-bench")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/aviary-bench")
	cmd.Dir, _ = filepath.Abs("../..")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build aviary-bench: %w\n%s", err, b)
	}
	return out, nil
}

// waitClustered polls every node's /api/overview until each reports
// clustered == want and, when want, three members.
func waitClustered(t *testing.T, admins []*clustertest.Admin, want bool, total time.Duration) {
	t.Helper()
	servertest.CheckFor(t, total, 50*time.Millisecond, func() error {
		for i, a := range admins {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			o, err := a.Overview(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("node%d: %w", i+1, err)
			}
			if o.Clustered != want || o.ClusterEnabled != want {
				return fmt.Errorf("node%d: clustered %v (switch %v), want %v", i+1, o.Clustered, o.ClusterEnabled, want)
			}
			if want && len(o.Nodes) != len(admins) {
				return fmt.Errorf("node%d sees %d members", i+1, len(o.Nodes))
			}
		}
		return nil
	})
}

// waitPlugin polls every node's own view (GET /api/nodes on that node)
// until it runs plugin at version.
func waitPlugin(t *testing.T, admins []*clustertest.Admin, plugin, version string, total time.Duration) {
	t.Helper()
	servertest.CheckFor(t, total, 50*time.Millisecond, func() error {
		for i, a := range admins {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			var ns []struct {
				Name    string            `json:"name"`
				Plugins map[string]string `json:"plugins"`
			}
			err := a.Do(ctx, "GET", "/api/nodes", nil, &ns)
			cancel()
			if err != nil {
				return fmt.Errorf("node%d: %w", i+1, err)
			}
			self := fmt.Sprintf("node%d", i+1)
			found := false
			for _, n := range ns {
				if n.Name != self {
					continue
				}
				found = true
				if v := n.Plugins[plugin]; v != version {
					return fmt.Errorf("%s runs %s %q, want %s", self, plugin, v, version)
				}
			}
			if !found {
				return fmt.Errorf("%s missing from its own node list %+v", self, ns)
			}
		}
		return nil
	})
}

// benchRun is aviary-bench running a ring in the background.
type benchRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	errOut *testutil.Buffer
	exited chan error
}

// benchResult is the part of aviary-bench -json the test reads.
type benchResult struct {
	Users int `json:"users"`
	Login struct {
		OK     int      `json:"ok"`
		Failed int      `json:"failed"`
		Errors []string `json:"errors"`
	} `json:"login"`
	Ring *struct {
		Sent       int      `json:"sent"`
		Received   int      `json:"received"`
		Lost       int      `json:"lost"`
		Duplicates int      `json:"duplicates"`
		Unexpected int      `json:"unexpected"`
		Stalled    int      `json:"stalled_senders"`
		Seconds    float64  `json:"seconds"`
		PerSec     float64  `json:"messages_per_second"`
		ReadErrs   []string `json:"read_errors"`
		Latency    struct {
			P50 float64 `json:"p50_ms"`
			P99 float64 `json:"p99_ms"`
			Max float64 `json:"max_ms"`
		} `json:"latency"`
	} `json:"ring"`
}

// startBench starts the ring over servers and returns once its sessions
// are logged in and sending.
func startBench(t *testing.T, ctx context.Context, bin string, servers []string) *benchRun {
	t.Helper()
	args := []string{"-servers", strings.Join(servers, ","), "-domain", "localhost",
		"-users", strconv.Itoa(loadUsers), "-prefix", "load", "-password", loadPass, "-create", "none",
		"-concurrency", "8", "-workload", "ring", "-messages", "1000000", "-inflight", "2",
		"-interval", loadInterval, "-drain", "20s", "-max-time", "3m", "-json"}
	t.Logf("load: aviary-bench %s", strings.Join(args, " "))
	b := &benchRun{errOut: &testutil.Buffer{}, exited: make(chan error, 1)}
	b.cmd = exec.CommandContext(ctx, bin, args...)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, b.errOut
	if err := testutil.StartChild(b.cmd, syscall.SIGKILL, func(err error) { b.exited <- err }); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		select {
		case err := <-b.exited:
			b.exited <- err
			t.Fatalf("aviary-bench exited early: %v\n%s\n%s", err, b.errOut, b.out.String())
		default:
		}
		if !strings.Contains(b.errOut.String(), "ring started") {
			return errors.New("aviary-bench has not started its ring")
		}
		return nil
	})
	return b
}

// stop asks the tool to stop sending (it must still be running: the load
// spans the whole upgrade), waits for its drain and returns its report.
func (b *benchRun) stop(t *testing.T) benchResult {
	t.Helper()
	select {
	case err := <-b.exited:
		b.exited <- err
		t.Fatalf("aviary-bench ended before the upgrade did: %v\n%s", err, b.errOut)
	default:
	}
	if err := b.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.exited:
		b.exited <- err
		if err != nil {
			t.Fatalf("aviary-bench: %v\n%s", err, b.errOut)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("aviary-bench did not finish within 60s of SIGUSR1\n%s", b.errOut)
	}
	var res benchResult
	if err := json.Unmarshal(b.out.Bytes(), &res); err != nil || res.Ring == nil {
		t.Fatalf("aviary-bench report %q: %v\n%s", b.out.String(), err, b.errOut)
	}
	return res
}

func (b *benchRun) kill() {
	if b.cmd.Process != nil {
		_ = b.cmd.Process.Kill()
	}
}

func TestCheckRolling(t *testing.T) {
	for _, tc := range []struct {
		name, state string
		ok          bool
	}{
		{"first upgrading", "running 2.0.0 node1:1.0.0:upgrading node2:1.0.0:pending node3:1.0.0:pending", true},
		{"second upgrading", "running 2.0.0 node1:2.0.0:healthy node2:1.0.0:upgrading node3:1.0.0:pending", true},
		{"second watched", "running 2.0.0 node1:2.0.0:healthy node2:2.0.0:watching node3:1.0.0:pending", true},
		{"watched and upgrading", "running 2.0.0 node1:2.0.0:watching node2:1.0.0:upgrading node3:1.0.0:pending", false},
		{"done", "done 2.0.0 node1:2.0.0:healthy node2:2.0.0:healthy node3:2.0.0:healthy", true},
		{"out of order", "running 2.0.0 node1:1.0.0:pending node2:2.0.0:healthy node3:1.0.0:pending", false},
		{"two at once", "running 2.0.0 node1:1.0.0:upgrading node2:1.0.0:upgrading node3:1.0.0:pending", false},
		{"done short", "done 2.0.0 node1:2.0.0:healthy node2:1.0.0:rolled-back node3:1.0.0:pending", false},
		{"just started", "running 2.0.0", true},
		{"done without steps", "done 2.0.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkRolling(tc.state, "2.0.0"); (err == nil) != tc.ok {
				t.Errorf("checkRolling(%q) = %v, want ok %v", tc.state, err, tc.ok)
			}
		})
	}
}
