// Package servertest runs real Aviary nodes in tests and talks to them as
// a client would, over TCP on loopback, with raw XML.
//
//	cfg := servertest.DefaultConfig(t)
//	n := servertest.RunServer(t, cfg)
//	servertest.CreateUser(t, n, "alice", "pw")
//	c := servertest.Dial(t, n)
//	c.StartTLS()
//	c.AuthSCRAM("SCRAM-SHA-256", "alice", "pw")
//	c.Bind("phone")
package servertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// DefaultConfig is a configuration for tests: domain localhost, loopback
// listeners on free ports, a temporary data directory, admin/cluster/s2s/
// HTTP listeners off and a 1ms authentication failure delay.
//
// With AVIARY_TEST_STORE=postgres the node uses a fresh schema of a shared
// throwaway PostgreSQL instead of the embedded store, so the same server
// and interop tests prove both stores (the test command runs them so).
func DefaultConfig(t testing.TB) *conf.Config {
	t.Helper()
	cfg := &conf.Config{}
	cfg.Domain = "localhost"
	cfg.DataDir = t.TempDir()
	cfg.C2S.Listen = "127.0.0.1:0"
	cfg.C2S.TLSListen = "127.0.0.1:0"
	cfg.C2S.SASLFailureDelay = time.Millisecond
	cfg.Admin.Listen = "off"
	cfg.Cluster.Listen = "off"
	cfg.Cluster.NodeName = "test-node"
	// Compiled plugins are shared by every test on the machine (see
	// exampletest.CompiledDir): a node loading a plugin compiles it once.
	cfg.Plugins.Dir = filepath.Dir(exampletest.CompiledDir(t))
	if os.Getenv("AVIARY_TEST_STORE") == "postgres" {
		cfg.Database.URL = pgtest.Shared(t).NewSchema(t)
	}
	cfg.ApplyDefaults()
	return cfg
}

// TestLogger returns a logger that is silent unless AVIARY_TEST_LOG is
// set (then debug output goes to stderr).
func TestLogger() *slog.Logger {
	if os.Getenv("AVIARY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// RunServer builds and starts a node, waits until its listeners accept,
// and stops it when the test ends.
func RunServer(t testing.TB, cfg *conf.Config, opts ...server.Option) *server.Node {
	t.Helper()
	n, err := startServer(cfg, opts...)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	stopAtCleanup(t, n)
	return n
}

// startServer builds and starts a node; on failure it stops what started.
func startServer(cfg *conf.Config, opts ...server.Option) (*server.Node, error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("invalid config: %v", errs)
	}
	opts = append([]server.Option{server.WithLogger(TestLogger())}, opts...)
	n, err := server.New(cfg, opts...)
	if err != nil {
		return nil, fmt.Errorf("building the node: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		_ = n.Stop(ctx)
		return nil, fmt.Errorf("starting the node: %w", err)
	}
	return n, nil
}

func stopAtCleanup(t testing.TB, n *server.Node) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("servertest: stopping the node: %v%s", err, stacksIfStuck(err))
		}
	})
}

// CreateUser adds an account through the node's user manager.
func CreateUser(t testing.TB, n *server.Node, user, password string) {
	t.Helper()
	if err := n.Users().CreateUser(context.Background(), user, password); err != nil {
		t.Fatalf("servertest: creating %s: %v", user, err)
	}
}

// CheckFor calls fn every poll until it returns nil or total has passed,
// then fails the test with fn's last error. Use it instead of sleeping.
// It is internal/testutil's, named here for the many server tests that
// call it.
func CheckFor(t testing.TB, total, poll time.Duration, fn func() error) {
	t.Helper()
	testutil.CheckFor(t, total, poll, fn)
}

// stacksIfStuck returns every goroutine's stack when a node did not stop
// within its deadline: what it waited for is the bug, and the test's
// output is the only place left to see it.
func stacksIfStuck(err error) string {
	if !errors.Is(err, context.DeadlineExceeded) {
		return ""
	}
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return "\nall goroutines:\n" + b.String()
}
