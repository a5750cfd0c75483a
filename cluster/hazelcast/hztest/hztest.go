// Package hztest starts real Hazelcast members for tests: java -cp
// $AVIARY_HAZELCAST_JAR com.hazelcast.core.server.HazelcastMemberStarter
// with a generated YAML config (loopback only, a free port, tcp-ip join,
// multicast and Jet off, a small heap).
//
// Without java or the jar, tests skip; when AVIARY_REQUIRE_SERVICES=1 or
// CI=true they fail instead. A JVM takes seconds to start, so a package
// that needs many members shares them (Shared, StopShared from TestMain).
package hztest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

// StartTimeout bounds how long a member may take to report STARTED.
const StartTimeout = 90 * time.Second

// Member is one Hazelcast member process.
type Member struct {
	ClusterName string
	Port        int
	peers       []int // ports of every member of its cluster, itself included
	dir         string
	jar         string

	mu      sync.Mutex
	cmd     *exec.Cmd
	log     *logBuffer
	exited  chan struct{}
	stopped bool
}

// Addr is the member's client address, 127.0.0.1:port.
func (m *Member) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.Port) }

// Jar returns the Hazelcast jar path: $AVIARY_HAZELCAST_JAR, or the copy
// Maven keeps under ~/.m2. It errors when java or the jar is missing.
func Jar() (string, error) {
	if _, err := exec.LookPath("java"); err != nil {
		return "", fmt.Errorf("hztest: java not found: %w", err)
	}
	jar := os.Getenv("AVIARY_HAZELCAST_JAR")
	if jar == "" {
		home, _ := os.UserHomeDir()
		jar = filepath.Join(home, ".m2/repository/com/hazelcast/hazelcast/5.5.0/hazelcast-5.5.0.jar")
	}
	if _, err := os.Stat(jar); err != nil {
		return "", fmt.Errorf("hztest: hazelcast jar: %w (set AVIARY_HAZELCAST_JAR or run .ci/setup.sh)", err)
	}
	return jar, nil
}

// Required reports whether a missing service must fail tests rather than
// skip them (AVIARY_REQUIRE_SERVICES=1 or CI=true).
func Required() bool {
	return os.Getenv("AVIARY_REQUIRE_SERVICES") == "1" || os.Getenv("CI") == "true"
}

// Unavailable skips t, or fails it when services are required.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("hazelcast required but unavailable: %v", err)
	}
	t.Skipf("hazelcast unavailable: %v", err)
}

// StartMember starts one member of clusterName and kills it when t ends.
func StartMember(t testing.TB, clusterName string) *Member {
	t.Helper()
	return StartMembers(t, clusterName, 1)[0]
}

// StartMembers starts n members of clusterName that join each other, and
// kills them when t ends. It returns once all n see each other.
func StartMembers(t testing.TB, clusterName string, n int) []*Member {
	t.Helper()
	ms, err := Start(clusterName, n)
	if err != nil {
		if errors.Is(err, errUnavailable) {
			Unavailable(t, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.Kill()
		}
	})
	return ms
}

var errUnavailable = errors.New("hztest: hazelcast unavailable")

// Start starts n joined members of clusterName without a testing.TB; the
// caller kills them. The error wraps a sentinel that Unavailable-style
// callers may check with IsUnavailable when java or the jar is missing.
func Start(clusterName string, n int) ([]*Member, error) {
	jar, err := Jar()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	// Chosen now, bound by the JVM seconds later: testutil.FreePorts
	// keeps others off them meanwhile.
	ports, err := testutil.FreePorts(n)
	if err != nil {
		return nil, err
	}
	ms := make([]*Member, n)
	for i := range ms {
		dir, err := os.MkdirTemp("", "hztest-")
		if err != nil {
			return nil, err
		}
		ms[i] = &Member{ClusterName: clusterName, Port: ports[i], peers: ports, dir: dir, jar: jar}
	}
	// Start all JVMs at once, then wait: they join while booting.
	var errs []error
	for _, m := range ms {
		if err := m.launch(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		for _, m := range ms {
			if err := m.waitStarted(n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		for _, m := range ms {
			m.Kill()
		}
		return nil, errors.Join(errs...)
	}
	return ms, nil
}

// IsUnavailable reports whether err from Start means java or the jar is
// missing (skip), as opposed to a member that failed to start (fail).
func IsUnavailable(err error) bool { return errors.Is(err, errUnavailable) }

var (
	sharedMu sync.Mutex
	shared   = map[string]*Member{}
)

// Shared returns a single member of clusterName shared by every test of
// the process that asks for the same name, starting it on first use. Call
// StopShared from TestMain after m.Run. Tests sharing a member must keep
// their data apart (distinct map names or prefixes).
func Shared(t testing.TB, clusterName string) *Member {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if m := shared[clusterName]; m != nil {
		if m.Running() {
			return m
		}
		m.Kill()
	}
	ms, err := Start(clusterName, 1)
	if err != nil {
		if IsUnavailable(err) {
			Unavailable(t, err)
		}
		t.Fatal(err)
	}
	shared[clusterName] = ms[0]
	return ms[0]
}

// StopShared kills every shared member.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for name, m := range shared {
		m.Kill()
		delete(shared, name)
	}
}

// Running reports whether the member process is alive.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.exited == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Stop shuts the member down gracefully (SIGTERM runs Hazelcast's shutdown
// hook) and waits for the process to exit, killing it after 30s.
func (m *Member) Stop() {
	m.signal(syscall.SIGTERM, 30*time.Second)
}

// Kill SIGKILLs the member and waits for it to exit. Its data is lost.
func (m *Member) Kill() {
	m.signal(syscall.SIGKILL, 30*time.Second)
	m.mu.Lock()
	if m.stopped && m.dir != "" {
		_ = os.RemoveAll(m.dir)
	}
	m.mu.Unlock()
}

func (m *Member) signal(sig syscall.Signal, wait time.Duration) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.stopped = true
	m.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen JVM must run to exit on SIGTERM
	select {
	case <-exited:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Freeze stops the member process (SIGSTOP): connections stay open but
// nothing answers, like a long GC pause or a hung machine.
func (m *Member) Freeze() error {
	if err := m.signalOnly(syscall.SIGSTOP); err != nil {
		return err
	}
	// kill(2) returns before every thread of the JVM has stopped: one
	// still running could answer a request sent right after Freeze
	// (cluster/hazelcast TestRouteWriteRetried saw its write succeed, 1
	// run in 6). Wait until each thread is in the stopped state.
	m.mu.Lock()
	pid := m.cmd.Process.Pid
	m.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			return errors.New("hztest: member threads not stopped 5s after SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// allStopped reports whether every thread of pid is stopped (state T or
// t in /proc); true when /proc cannot tell (not Linux).
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		// The state follows the command name's closing parenthesis.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		if st := b[i+2]; st != 'T' && st != 't' && st != 'Z' && st != 'X' {
			return false
		}
	}
	return true
}

// Thaw resumes a frozen member (SIGCONT).
func (m *Member) Thaw() error { return m.signalOnly(syscall.SIGCONT) }

func (m *Member) signalOnly(sig syscall.Signal) error {
	m.mu.Lock()
	cmd := m.cmd
	m.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return errors.New("hztest: member not started")
	}
	return cmd.Process.Signal(sig)
}

// Restart kills the member (if running) and starts a fresh one on the same
// port and cluster name: like an operator restarting it, all its data is
// gone. It waits until the lone member has started.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	if err := m.RestartErr(1); err != nil {
		t.Fatal(err)
	}
}

// RestartErr is Restart without a testing.TB; size is the cluster size to
// wait for (1 for a lone member).
func (m *Member) RestartErr(size int) error {
	m.Kill()
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return err
	}
	if err := m.launch(); err != nil {
		return err
	}
	if err := m.waitStarted(size); err != nil {
		m.Kill()
		return err
	}
	return nil
}

// Log returns what the member printed so far.
func (m *Member) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.log == nil {
		return ""
	}
	return m.log.String()
}

func (m *Member) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hazelcast:\n")
	fmt.Fprintf(&b, "  cluster-name: %q\n", m.ClusterName)
	b.WriteString("  properties:\n")
	for _, kv := range [][2]string{
		{"hazelcast.phone.home.enabled", "false"},
		{"hazelcast.wait.seconds.before.join", "0"},
		{"hazelcast.max.wait.seconds.before.join", "1"},
		{"hazelcast.merge.first.run.delay.seconds", "5"},
		{"hazelcast.graceful.shutdown.max.wait", "10"},
		{"hazelcast.logging.type", "jdk"},
		{"hazelcast.shutdownhook.policy", "GRACEFUL"},
	} {
		fmt.Fprintf(&b, "    %s: %q\n", kv[0], kv[1])
	}
	b.WriteString("  jet:\n    enabled: false\n")
	b.WriteString("  network:\n")
	b.WriteString("    interfaces:\n      enabled: true\n      interfaces:\n        - 127.0.0.1\n")
	fmt.Fprintf(&b, "    port:\n      auto-increment: false\n      port: %d\n", m.Port)
	b.WriteString("    join:\n      multicast:\n        enabled: false\n      auto-detection:\n        enabled: false\n")
	b.WriteString("      tcp-ip:\n        enabled: true\n        member-list:\n")
	for _, p := range m.peers {
		fmt.Fprintf(&b, "          - 127.0.0.1:%d\n", p)
	}
	return b.String()
}

func (m *Member) launch() error {
	cfgPath := filepath.Join(m.dir, "hazelcast.yaml")
	if err := os.WriteFile(cfgPath, []byte(m.config()), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("java",
		"-Xms64m", "-Xmx256m",
		"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
		"--add-modules", "java.se",
		"--add-exports", "java.base/jdk.internal.ref=ALL-UNNAMED",
		"--add-opens", "java.base/java.lang=ALL-UNNAMED",
		"--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
		"--add-opens", "java.management/sun.management=ALL-UNNAMED",
		"--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
		"-Dhazelcast.config="+cfgPath,
		"-Djava.net.preferIPv4Stack=true",
		"-cp", m.jar,
		"com.hazelcast.core.server.HazelcastMemberStarter")
	cmd.Dir = m.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	lb := &logBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	exited := make(chan struct{})
	// Dies with the test binary, and only then (testutil.StartChild).
	err := testutil.StartChild(cmd, syscall.SIGKILL, func(error) {
		pw.Close()
		close(exited)
	})
	if err != nil {
		return fmt.Errorf("hztest: start java: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lb.add(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	m.mu.Lock()
	m.cmd, m.log, m.exited, m.stopped = cmd, lb, exited, false
	m.mu.Unlock()
	return nil
}

// waitStarted waits until the member logs STARTED, lists size members
// and accepts connections on its port.
func (m *Member) waitStarted(size int) error {
	m.mu.Lock()
	lb, exited := m.log, m.exited
	m.mu.Unlock()
	deadline := time.Now().Add(StartTimeout)
	want := fmt.Sprintf("Members {size:%d,", size)
	for {
		select {
		case <-exited:
			return fmt.Errorf("hztest: member on port %d exited during start:\n%s", m.Port, lb.tail(40))
		default:
		}
		s := lb.String()
		if strings.Contains(s, " is STARTED") && strings.Contains(s, want) {
			c, err := net.DialTimeout("tcp", m.Addr(), time.Second)
			if err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hztest: member on port %d not started (%d members) after %v:\n%s", m.Port, size, StartTimeout, lb.tail(40))
		}
		lb.wait(200 * time.Millisecond)
	}
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
	cond  chan struct{}
}

func (l *logBuffer) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	if len(l.lines) > 5000 {
		l.lines = append([]string(nil), l.lines[len(l.lines)-2500:]...)
	}
	if l.cond != nil {
		close(l.cond)
		l.cond = nil
	}
	l.mu.Unlock()
}

func (l *logBuffer) wait(d time.Duration) {
	l.mu.Lock()
	if l.cond == nil {
		l.cond = make(chan struct{})
	}
	c := l.cond
	l.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
	case <-t.C:
	}
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := max(0, len(l.lines)-n)
	return strings.Join(l.lines[i:], "\n")
}
