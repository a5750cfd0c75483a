// Package pgtest starts throwaway PostgreSQL servers for tests: initdb into
// a temporary directory, trust authentication, a free port on 127.0.0.1 and
// a Unix socket inside the directory. It is an ordinary package so any
// package's tests can import it.
//
// Start gives a test its own server (needed to stop and restart it).
// Shared gives every test in a binary one server, started once, and
// NewDatabase gives each test a fresh database on it; call Main from
// TestMain so the shared server is stopped when the tests end.
//
// The binaries are found in $AVIARY_PG_BINDIR, else the newest
// /usr/lib/postgresql/*/bin, else $PATH. When they are missing the test is
// skipped, unless AVIARY_REQUIRE_SERVICES=1 or CI=true, when it fails.
// Running as root, initdb and the server run as the user "postgres"
// (PostgreSQL refuses to run as root).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/internal/testutil"
)

// Server is one throwaway PostgreSQL server.
type Server struct {
	dir     string // temp dir: data/, sock/, log
	bindir  string
	port    int
	cred    *syscall.Credential
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	dbs     atomic.Int64
	version string
	frozen  bool
}

// Required reports whether a missing PostgreSQL must fail the test
// (AVIARY_REQUIRE_SERVICES=1 or CI=true) rather than skip it.
func Required() bool {
	return os.Getenv("AVIARY_REQUIRE_SERVICES") == "1" || os.Getenv("CI") == "true"
}

// BinDir returns the directory holding initdb and postgres, or "".
func BinDir() string {
	if d := os.Getenv("AVIARY_PG_BINDIR"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

func pgMajor(bindir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return n
}

// unavailable skips or fails the test when PostgreSQL cannot be had.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("pgtest: PostgreSQL required (AVIARY_REQUIRE_SERVICES=1 or CI=true) but %s", msg)
	}
	t.Skipf("pgtest: %s; skipping (set AVIARY_PG_BINDIR)", msg)
}

// Start initializes and starts a server for this test; t.Cleanup stops it
// and removes its files. Its URL names a database "aviary".
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if errors.Is(err, errNoBinaries) {
		unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.Destroy)
	return s
}

var errNoBinaries = errors.New("PostgreSQL binaries (initdb, postgres) not found")

func start() (*Server, error) {
	bindir := BinDir()
	if bindir == "" {
		return nil, errNoBinaries
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bindir, b)); err != nil {
			return nil, fmt.Errorf("%w in %s", errNoBinaries, bindir)
		}
	}
	dir, err := os.MkdirTemp("", "aviary-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bindir: bindir}
	ok := false
	defer func() {
		if !ok {
			s.Destroy()
		}
	}()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a user \"postgres\" to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sock"), 0o755); err != nil {
		return nil, err
	}
	if s.cred != nil {
		os.Chown(filepath.Join(dir, "sock"), int(s.cred.Uid), int(s.cred.Gid))
	}
	initdb := s.command(filepath.Join(bindir, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.exec(ctx, "CREATE DATABASE aviary"); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

// Start starts the server again after Stop, on the same port and data.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: server already running")
	}
	if s.port != 0 {
		return s.startLocked() // a restart keeps its port: clients' URLs name it
	}
	for attempt := 0; ; attempt++ {
		p, err := freePort()
		if err != nil {
			return err
		}
		s.port = p
		err = s.startLocked()
		if err == nil {
			return nil
		}
		if attempt >= 2 || !strings.Contains(err.Error(), "in use") {
			s.port = 0
			return err
		}
	}
}

func (s *Server) startLocked() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := s.command(filepath.Join(s.bindir, "postgres"),
		"-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(s.port),
		"-k", filepath.Join(s.dir, "sock"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB",
		"-c", "max_connections=300",
		"-c", "log_min_messages=warning",
		"-c", "TimeZone=UTC",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, the server goes with it (a "smart"
	// shutdown; testutil.StartChild says why the thread matters).
	cmd.SysProcAttr.Setpgid = true
	exited := make(chan struct{})
	if err := testutil.StartChild(cmd, syscall.SIGQUIT, func(error) {
		logf.Close()
		close(exited)
	}); err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	// Poll until it accepts connections.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.urlFor("postgres"))
		cancel()
		if err == nil {
			var v string
			conn.QueryRow(context.Background(), "SHOW server_version").Scan(&v)
			s.version = v
			conn.Close(context.Background())
			s.cmd, s.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited at start: %s", s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Signal(syscall.SIGQUIT)
			<-exited
			return fmt.Errorf("pgtest: postgres not ready in 60s: %v\n%s", err, s.logTail())
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop shuts the server down (fast shutdown: sessions are disconnected)
// and waits until it has exited.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGINT)
}

func (s *Server) stopLocked(sig syscall.Signal) error {
	if s.cmd == nil {
		return nil
	}
	if s.frozen {
		s.signalGroupLocked(syscall.SIGCONT)
		s.frozen = false
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
	return nil
}

// Freeze stops every PostgreSQL process with SIGSTOP: connections stay
// open but nothing answers, as with a hung server or a network black hole.
// Thaw resumes them; Destroy thaws first.
func (s *Server) Freeze() error {
	s.mu.Lock()
	s.frozen = true
	s.mu.Unlock()
	return s.signalGroup(syscall.SIGSTOP)
}

// Thaw resumes a frozen server.
func (s *Server) Thaw() error {
	err := s.signalGroup(syscall.SIGCONT)
	s.mu.Lock()
	s.frozen = false
	s.mu.Unlock()
	return err
}

func (s *Server) signalGroup(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signalGroupLocked(sig)
}

func (s *Server) signalGroupLocked(sig syscall.Signal) error {
	if s.cmd == nil {
		return errors.New("pgtest: server not running")
	}
	// Backends call setsid(), so signal the postmaster's children one by
	// one, found through /proc.
	pid := s.cmd.Process.Pid
	pids := []int{pid}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			pids = append(pids, child)
		}
	}
	var first error
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && first == nil && p == pid {
			first = err
		}
	}
	return first
}

// Restart stops and starts the server on the same port.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Destroy stops the server at once and removes its files. Start's cleanup
// calls it.
func (s *Server) Destroy() {
	s.mu.Lock()
	s.stopLocked(syscall.SIGQUIT)
	s.mu.Unlock()
	os.RemoveAll(s.dir)
}

// Port returns the TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Version returns the server's version string (SHOW server_version).
func (s *Server) Version() string { return s.version }

// URL returns the URL of the database "aviary".
func (s *Server) URL() string { return s.urlFor("aviary") }

// LogTail returns the end of the server's log, for failure messages.
func (s *Server) LogTail() string { return s.logTail() }

func (s *Server) urlFor(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

func (s *Server) exec(ctx context.Context, sql string) error {
	return s.execIn(ctx, "postgres", sql)
}

func (s *Server) execIn(ctx context.Context, db, sql string) error {
	conn, err := pgx.Connect(ctx, s.urlFor(db))
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s: %w", sql, err)
	}
	return nil
}

// NewDatabase creates an empty database for this test and returns its URL;
// t.Cleanup drops it.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.mu.Lock()
		running := s.cmd != nil
		s.mu.Unlock()
		if running {
			s.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		}
	})
	return s.urlFor(name)
}

// NewSchema creates an empty schema in the database "aviary" for this test
// and returns a URL whose connections use it (search_path), which is much
// faster than a database per test; t.Cleanup drops it. Code under test must
// not qualify table names with a schema.
func (s *Server) NewSchema(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.execIn(ctx, "aviary", "CREATE SCHEMA "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.mu.Lock()
		running := s.cmd != nil
		s.mu.Unlock()
		if running {
			s.execIn(ctx, "aviary", "DROP SCHEMA IF EXISTS "+name+" CASCADE")
		}
	})
	return s.urlFor("aviary") + "&search_path=" + name
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the server shared by every test in this binary, starting
// it on first use. Do not Stop it; give each test its own database with
// NewDatabase. Call Main from TestMain so it is stopped at the end (the
// server also dies with the test binary).
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = start() })
	if errors.Is(shared.err, errNoBinaries) {
		unavailable(t, "%v", shared.err)
	}
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.srv
}

// Main runs the tests and then stops the shared server:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Destroy()
	}
	os.Exit(code)
}

func freePort() (int, error) {
	// Chosen now, bound by the postmaster later: testutil.FreePorts keeps
	// other processes off it meanwhile.
	ps, err := testutil.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}
