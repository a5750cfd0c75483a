package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func query(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	return one
}

func TestStartStopRestart(t *testing.T) {
	s := pgtest.Start(t)
	if query(t, s.URL()) != 1 {
		t.Fatal("SELECT 1 != 1")
	}
	port := s.Port()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if conn, err := pgx.Connect(ctx, s.URL()); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Port() != port {
		t.Fatalf("port changed across restart: %d -> %d", port, s.Port())
	}
	if query(t, s.URL()) != 1 {
		t.Fatal("SELECT 1 != 1 after restart")
	}
	if s.Version() == "" {
		t.Fatal("no server version")
	}
}

func TestSharedDatabases(t *testing.T) {
	s := pgtest.Shared(t)
	if s2 := pgtest.Shared(t); s2 != s {
		t.Fatal("Shared started a second server")
	}
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %s twice", a)
	}
	if query(t, a) != 1 || query(t, b) != 1 {
		t.Fatal("SELECT 1 != 1")
	}
}
