package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// TestMigrateRace starts three "nodes" at once on an empty database: each
// migration is applied exactly once and every node ends up on the schema.
func TestMigrateRace(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	migs, err := postgres.Migrations()
	if err != nil || len(migs) == 0 {
		t.Fatalf("Migrations() = %v, %v", migs, err)
	}
	const nodes = 3
	stores := make([]*postgres.Store, nodes)
	for i := range stores {
		stores[i] = open(t, url, postgres.Options{NoMigrate: true})
		defer stores[i].Close()
	}
	applied := make([][]int, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			applied[i], errs[i] = s.Migrate(context.Background())
		})
	}
	close(start)
	wg.Wait()
	var all []int
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: Migrate: %v", i, errs[i])
		}
		all = append(all, applied[i]...)
	}
	slices.Sort(all)
	var want []int
	for _, m := range migs {
		want = append(want, m.Version)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("applied across nodes = %v, want each of %v exactly once", all, want)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(migs) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, len(migs))
	}
	// Opening again (a restart) applies nothing.
	for _, s := range stores {
		got, err := s.Migrate(context.Background())
		if err != nil || len(got) != 0 {
			t.Fatalf("second Migrate applied %v, %v", got, err)
		}
	}
}

// TestOpenRace opens three stores at once, each migrating as a node does at
// start; all must work.
func TestOpenRace(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, 3)
	errs := make([]error, 3)
	for i := range stores {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(context.Background(), url, postgres.Options{Logger: quiet()})
		})
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("node %d: Open: %v", i, errs[i])
		}
		defer s.Close()
		if _, err := s.CountUsers(context.Background()); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
}

func TestStatus(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := context.Background()
	s := open(t, url, postgres.Options{NoMigrate: true})
	defer s.Close()
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	migs, _ := postgres.Migrations()
	if len(st) != len(migs) || postgres.Pending(st) != len(migs) {
		t.Fatalf("fresh database status = %+v, want %d pending", st, len(migs))
	}
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if postgres.Pending(st) != 0 {
		t.Fatalf("status after Migrate = %+v", st)
	}
	for _, m := range st {
		if !m.Applied || !m.Known || m.AppliedAt.IsZero() {
			t.Fatalf("migration %+v not applied", m)
		}
	}
	// A newer binary's migration shows as unknown.
	if _, err := s.Pool().Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future')"); err != nil {
		t.Fatal(err)
	}
	st, err = s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := st[len(st)-1]
	if last.Version != 9999 || last.Known || !last.Applied || postgres.Pending(st) != 0 {
		t.Fatalf("status with a future migration = %+v", st)
	}
}
