package balance_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRollingRestartE2E runs three `aviary serve` processes on one
// PostgreSQL and one Hazelcast member, runs the project's load tool
// (cmd/aviary-bench, ring workload, -reconnect) with its users spread over
// the three nodes, and meanwhile .ci/cluster/rolling-restart.sh drains and
// restarts every node in turn. aviary-bench follows see-other-host, asks
// /dispatch after other disconnects, and resends what the server did not
// acknowledge (stream management). The test fails if any message
// aviary-bench sent was never delivered, or if the script did not restart
// all three nodes. After the rolling restart one node is stopped at once
// (its clients reconnect through the dispatcher); AVIARY_E2E_SIGINT=0
// leaves that out.
func TestRollingRestartE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and three aviary processes (about a minute)")
	}
	users := envInt("AVIARY_E2E_USERS", 90)
	began := time.Now()
	cl := startE2ECluster(t, "rr", 3, users)

	// The load: a ring, users spread round-robin over the three nodes.
	var servers, dispatch []string
	for _, p := range cl.nodes {
		servers = append(servers, p.c2s)
		dispatch = append(dispatch, "http://"+p.http)
	}
	bench := exec.Command(cl.bench, "-servers", strings.Join(servers, ","), "-dispatch", strings.Join(dispatch, ","),
		"-users", strconv.Itoa(users), "-create", "none", "-password", "bench-secret",
		"-workload", "ring", "-reconnect", "-messages", "5000", "-inflight", "5", "-interval", "200ms",
		"-concurrency", "10", "-timeout", "15s", "-drain", "30s", "-max-time", "5m", "-json")
	var benchOut, benchErr testutil.Buffer
	bench.Stdout, bench.Stderr = &benchOut, &benchErr
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()
	t.Cleanup(func() {
		bench.Process.Kill()
		<-benchDone
	})
	waitFor(t, 90*time.Second, "aviary-bench's ring to start", func() bool {
		return strings.Contains(benchErr.String(), "ring started")
	})
	time.Sleep(2 * time.Second) // traffic before the first drain

	script := exec.Command(filepath.Join(cl.root, ".ci/cluster/rolling-restart.sh"),
		append([]string{"--aviary", cl.bin, "--token", cl.token, "--start", cl.startCmd,
			"--drain-timeout", "90", "--ready-timeout", "90"}, cl.adminArgs()...)...)
	scriptOut, err := script.CombinedOutput()
	t.Logf("rolling-restart.sh:\n%s", scriptOut)
	if err != nil {
		cl.logTails(t)
		t.Fatalf("rolling restart failed: %v", err)
	}
	time.Sleep(2 * time.Second) // traffic after the last restart

	// Then one node stopped at once (SIGINT, no drain) and started again:
	// its clients get system-shutdown, ask the dispatcher for another node
	// and resend what was not acknowledged; what the node had queued for
	// them goes to offline storage. (Stanzas read while the node stopped
	// were once acknowledged and not routed; see c2s Session.routeCtx.)
	sigint := os.Getenv("AVIARY_E2E_SIGINT") != "0"
	if sigint {
		victim := cl.nodes[1]
		stopped := time.Now()
		cl.interrupt(t, victim.name)
		restart := exec.Command("bash", "-c", strings.ReplaceAll(cl.startCmd, "{name}", victim.name))
		if err := restart.Start(); err != nil {
			t.Fatal(err)
		}
		go restart.Wait()
		waitHTTP(t, "http://"+victim.admin+"/readyz", 90*time.Second)
		t.Logf("%s stopped at once (SIGINT) and started again in %s", victim.name, time.Since(stopped).Round(100*time.Millisecond))
		time.Sleep(2 * time.Second) // traffic after it
	}

	// SIGUSR1 ends the sending; the tool then waits for the stragglers and
	// reports.
	bench.Process.Signal(syscall.SIGUSR1)
	select {
	case err := <-benchDone:
		benchDone <- err
		if err != nil {
			t.Errorf("aviary-bench: %v\n%s", err, tail(benchErr.String(), 3000))
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("aviary-bench did not finish\n%s", tail(benchErr.String(), 3000))
	}
	var res struct {
		Login struct {
			OK     int `json:"ok"`
			Failed int `json:"failed"`
		} `json:"login"`
		Ring *struct {
			Sent       int      `json:"sent"`
			Received   int      `json:"received"`
			Lost       int      `json:"lost"`
			Duplicates int      `json:"duplicates"`
			Unexpected int      `json:"unexpected"`
			Stalled    int      `json:"stalled_senders"`
			ReadErrs   []string `json:"read_errors"`
			LostSample []string `json:"lost_sample"`
			Latency    struct {
				P50 float64 `json:"p50_ms"`
				P99 float64 `json:"p99_ms"`
				Max float64 `json:"max_ms"`
			} `json:"latency"`
			Reconnect *struct {
				Sent, Delivered, Redelivered, Lost, Redirects, Reconnects, Disconnects, Resumed, Resent int
				DispatchAsked                                                                           int `json:"dispatch_asked"`
				UnackedAtEnd                                                                            int `json:"unacked_at_end"`
			} `json:"reconnect"`
		} `json:"ring"`
	}
	if err := json.Unmarshal([]byte(benchOut.String()), &res); err != nil || res.Ring == nil || res.Ring.Reconnect == nil {
		t.Fatalf("aviary-bench output: %v\n%s\n%s", err, benchOut.String(), tail(benchErr.String(), 3000))
	}
	r, rc := res.Ring, res.Ring.Reconnect

	restarts := regexp.MustCompile(`restarted (\S+) drain=([\d.]+)s down=([\d.]+)s total=([\d.]+)s`).FindAllStringSubmatch(string(scriptOut), -1)
	var drains []string
	for _, d := range restarts {
		drains = append(drains, fmt.Sprintf("%s drain %ss down %ss", d[1], d[2], d[3]))
	}
	nodeDrain := regexp.MustCompile(`balance: drain ended.*reason=(\S+) took=(\S+) moved=(\d+) refused=(\d+)`)
	for _, p := range cl.nodes {
		for _, m := range nodeDrain.FindAllStringSubmatch(cl.log(p.name), -1) {
			drains = append(drains, fmt.Sprintf("%s node-side %s in %s, moved %s, refused %s", p.name, m[1], m[2], m[3], m[4]))
		}
	}
	t.Logf("E2E FIGURES users=%d logins=%d/%d sent=%d delivered=%d redelivered=%d lost=%d redirects=%d reconnects=%d (resumed %d) disconnects=%d resent=%d dispatcher-answers=%d unacked-at-end=%d unexpected=%d stalled=%d latency p50=%.1fms p99=%.1fms max=%.1fms test=%s; %s",
		users, res.Login.OK, users, rc.Sent, rc.Delivered, rc.Redelivered, rc.Lost, rc.Redirects, rc.Reconnects, rc.Resumed,
		rc.Disconnects, rc.Resent, rc.DispatchAsked, rc.UnackedAtEnd, r.Unexpected, r.Stalled,
		r.Latency.P50, r.Latency.P99, r.Latency.Max, time.Since(began).Round(time.Second), strings.Join(drains, "; "))
	// Sessions kept for resumption other than by a drain: the tool's
	// streams should end cleanly, not break.
	for _, p := range cl.nodes {
		for _, line := range strings.Split(cl.log(p.name), "\n") {
			if strings.Contains(line, "waiting for resumption") && !strings.Contains(line, "reason=redirected") {
				t.Logf("%s: %s", p.name, line)
			}
		}
	}
	if len(r.ReadErrs) > 0 {
		t.Logf("aviary-bench read errors: %v", r.ReadErrs)
	}
	if len(restarts) != 3 {
		t.Errorf("the script restarted %d nodes, want 3", len(restarts))
	}
	if res.Login.OK != users {
		t.Errorf("%d of %d users logged in", res.Login.OK, users)
	}
	if rc.Sent == 0 || rc.Lost > 0 || r.Lost > 0 {
		t.Errorf("aviary-bench sent %d messages and lost %d, e.g. (sender:seq) %v", rc.Sent, rc.Lost, r.LostSample)
		// What the nodes logged about the first lost message's users.
		if len(r.LostSample) > 0 {
			sender, _ := strconv.Atoi(strings.Split(r.LostSample[0], ":")[0])
			for _, u := range []string{fmt.Sprintf("bench%d@", sender), fmt.Sprintf("bench%d@", (sender+1)%users)} {
				for _, p := range cl.nodes {
					for _, line := range strings.Split(cl.log(p.name), "\n") {
						if strings.Contains(line, u) {
							t.Logf("%s: %s", p.name, line)
						}
					}
				}
			}
		}
	}
	if rc.Redirects == 0 {
		t.Errorf("no session was redirected")
	}
	if sigint && (rc.Disconnects == 0 || rc.DispatchAsked == 0) {
		t.Errorf("after the SIGINT: %d disconnects, %d dispatcher answers; want both > 0", rc.Disconnects, rc.DispatchAsked)
	}
}

// e2eNode is one `aviary serve` process.
type e2eNode struct{ name, admin, http, c2s, cfg string }

// e2eCluster is PostgreSQL, one Hazelcast member and nodes `aviary serve`
// processes, with accounts bench0…benchN-1 (password bench-secret) and
// admin@localhost.
type e2eCluster struct {
	root, dir  string
	bin, bench string // the aviary and aviary-bench binaries
	db         string
	token      string // admin API token
	startCmd   string // shell command starting node {name}, retried while its ports are busy
	nodes      []e2eNode
	mu         sync.Mutex
	cmds       map[string]*exec.Cmd // first process of each node
	waits      map[string]chan error
}

// buildBinaries builds aviary and aviary-bench into dir.
func buildBinaries(t *testing.T, root, dir string) (bin, bench string) {
	t.Helper()
	bin, bench = filepath.Join(dir, "aviary"), filepath.Join(dir, "aviary-bench")
	for _, b := range [][2]string{{bin, "./cmd/aviary"}, {bench, "./cmd/aviary-bench"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", b[1], err, out)
		}
	}
	return bin, bench
}

func startE2ECluster(t *testing.T, prefix string, nodes, users int) *e2eCluster {
	t.Helper()
	return startE2EClusterWith(t, prefix, nodes, users, "")
}

// startE2EClusterWith is startE2ECluster with extra top-level YAML in
// every node's config file.
func startE2EClusterWith(t *testing.T, prefix string, nodes, users int, extraYAML string) *e2eCluster {
	t.Helper()
	pg := pgtest.Shared(t)
	db := pg.NewDatabase(t)
	hz := hztest.StartMember(t, fmt.Sprintf("aviary-e2e-%s-%d", prefix, os.Getpid()))
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cl := &e2eCluster{root: root, dir: dir, db: db, cmds: map[string]*exec.Cmd{}, waits: map[string]chan error{}}
	cl.bin, cl.bench = buildBinaries(t, root, dir)
	addrs := freeAddrs(t, 4*nodes)
	// AVIARY_E2E_LOG_LEVEL=debug, to follow a lost message through the
	// nodes' logs (kept in artifacts/ when the test fails).
	logLevel := cmp.Or(os.Getenv("AVIARY_E2E_LOG_LEVEL"), "info")
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		a := addrs[4*(i-1):]
		p := e2eNode{name: name, admin: a[0], http: a[1], c2s: a[2]}
		p.cfg = filepath.Join(dir, name+".yaml")
		yaml := fmt.Sprintf(`domain: localhost
data_dir: %s
log_level: %s
database: {url: %q}
cluster: {hazelcast: [%q], hazelcast_cluster_name: %q, node_name: %s, listen: %q, secret: e2e-secret, heartbeat_interval: 500ms, node_ttl: 3s}
c2s: {listen: %q, tls_listen: "off"}
http: {listen: %q, plain_secure: loopback}
admin: {listen: %q, admins: [admin@localhost]}
balance: {publish_interval: 500ms, drain_deadline: 30s, drain_notice: 1s}
`, filepath.Join(dir, name), logLevel, db, hz.Addr(), hz.ClusterName, name, a[3], p.c2s, p.http, p.admin)
		if extraYAML != "" {
			yaml = mergeYAMLSection(yaml, extraYAML)
		}
		if err := os.WriteFile(p.cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cl.nodes = append(cl.nodes, p)
	}
	// The start command of rolling-restart.sh: retried while the old
	// process still holds the ports; the pid file names the running server
	// for the cleanup.
	cl.startCmd = fmt.Sprintf(`cd %s && for i in $(seq 60); do [ -e stop ] && break; %s serve --config {name}.yaml >>{name}.log 2>&1 & echo $! >{name}.pid; wait $! && break; sleep 0.5; done`, dir, cl.bin)
	t.Cleanup(cl.stop)
	t.Cleanup(func() { cl.keepLogs(t) }) // runs first: the logs of a failed test, once the nodes stopped
	for _, p := range cl.nodes {
		cl.startNode(t, p)
	}
	for _, p := range cl.nodes {
		waitHTTP(t, "http://"+p.admin+"/readyz", 90*time.Second)
	}

	// Accounts, straight into the shared database.
	cfg := conf.Default()
	cfg.Database.URL = db
	st, err := server.OpenStore(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	um := &auth.Users{Store: st, Domain: "localhost", Iterations: 4096}
	if err := um.CreateUser(context.Background(), "admin", "pw-admin"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < users; i++ {
		if err := um.CreateUser(context.Background(), fmt.Sprintf("bench%d", i), "bench-secret"); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	login := exec.Command(cl.bin, "admin", "login", "--admin", "http://"+cl.nodes[0].admin, "admin@localhost")
	login.Stdin = strings.NewReader("pw-admin\n")
	out, err := login.Output()
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	cl.token = strings.TrimSpace(string(out))
	return cl
}

// startNode starts the first process of node p directly (its exit status
// is kept for wait).
func (cl *e2eCluster) startNode(t *testing.T, p e2eNode) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(cl.dir, p.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cl.bin, "serve", "--config", p.cfg)
	cmd.Dir = cl.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	os.WriteFile(filepath.Join(cl.dir, p.name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	cl.mu.Lock()
	cl.cmds[p.name], cl.waits[p.name] = cmd, done
	cl.mu.Unlock()
}

// wait waits for the first process of a node to exit and returns its
// exit code (-1 on timeout).
func (cl *e2eCluster) wait(name string, total time.Duration) int {
	cl.mu.Lock()
	done := cl.waits[name]
	cl.mu.Unlock()
	select {
	case err := <-done:
		done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			return -2
		}
		return 0
	case <-time.After(total):
		return -1
	}
}

// signal sends sig to the first process of a node.
func (cl *e2eCluster) signal(name string, sig os.Signal) {
	cl.mu.Lock()
	cmd := cl.cmds[name]
	cl.mu.Unlock()
	cmd.Process.Signal(sig)
}

// stop interrupts every node's current process (SIGINT: at once, no
// drain) and waits for it.
func (cl *e2eCluster) stop() {
	os.WriteFile(filepath.Join(cl.dir, "stop"), nil, 0o600) // no more restarts
	var pids []int
	for _, p := range cl.nodes {
		raw, err := os.ReadFile(filepath.Join(cl.dir, p.name+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGINT)
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	cl.mu.Lock()
	waits := cl.waits
	cl.mu.Unlock()
	for _, w := range waits {
		select {
		case err := <-w:
			w <- err
		case <-time.After(10 * time.Second):
		}
	}
}

// interrupt stops a node's current process with SIGINT (at once, no
// drain) and waits until it is gone.
func (cl *e2eCluster) interrupt(t *testing.T, name string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(cl.dir, name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, name+" to stop", func() bool { return syscall.Kill(pid, 0) != nil })
}

func (cl *e2eCluster) adminArgs() []string {
	var args []string
	for _, p := range cl.nodes {
		args = append(args, p.name+"=http://"+p.admin)
	}
	return args
}

func (cl *e2eCluster) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(cl.dir, name+".log"))
	return string(b)
}

// keepLogs copies every node's whole log into artifacts/TEST-NODE.log
// when the test failed: the lines the test prints name only the first
// lost message's users, and CI keeps nothing else of the temp directory.
func (cl *e2eCluster) keepLogs(t *testing.T) {
	if !t.Failed() {
		return
	}
	cl.stop() // the logs are complete once the nodes are down; stop is idempotent
	dir := os.Getenv("AVIARY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(cl.root, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keeping the node logs: %v", err)
		return
	}
	for _, p := range cl.nodes {
		name := filepath.Join(dir, t.Name()+"-"+p.name+".log")
		if err := os.WriteFile(name, []byte(cl.log(p.name)), 0o644); err != nil {
			t.Logf("keeping the node logs: %v", err)
			return
		}
	}
	t.Logf("the nodes' logs are in %s/%s-*.log", dir, t.Name())
}

func (cl *e2eCluster) logTails(t *testing.T) {
	for _, p := range cl.nodes {
		t.Logf("%s log tail:\n%s", p.name, tail(cl.log(p.name), 3000))
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// freeAddrs returns n distinct free loopback addresses: all are held open
// until every one is chosen (closed one by one, the kernel may hand the
// same port out twice).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func waitHTTP(t *testing.T, url string, total time.Duration) {
	t.Helper()
	waitFor(t, total, url, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// waitFor is testutil.CheckFor for a condition named by what.
func waitFor(t *testing.T, total time.Duration, what string, fn func() bool) {
	t.Helper()
	testutil.CheckFor(t, total, 100*time.Millisecond, func() error {
		if fn() {
			return nil
		}
		return fmt.Errorf("waiting for %s", what)
	})
}

// mergeYAMLSection puts the keys of extra's one-line flow mappings
// ("cluster: {crash_safety: false}") into the same sections of base.
func mergeYAMLSection(base, extra string) string {
	for _, line := range strings.Split(strings.TrimSpace(extra), "\n") {
		key, val, ok := strings.Cut(line, ": {")
		if !ok {
			base += line + "\n"
			continue
		}
		prefix := key + ": {"
		i := strings.Index(base, prefix)
		if i < 0 {
			base += line + "\n"
			continue
		}
		base = base[:i+len(prefix)] + strings.TrimSuffix(val, "}") + ", " + base[i+len(prefix):]
	}
	return base
}
