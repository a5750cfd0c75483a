package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLock is the advisory lock key (a single bigint) that Migrate
// holds while it applies migrations: "aviary" in ASCII.
const migrationLock int64 = 0x617669617279

// migrateTimeout bounds Migrate when the caller's context has no deadline.
const migrateTimeout = 5 * time.Minute

// Migration is one embedded schema migration.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) {
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".sql")
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %s: name must start with a positive number", f)
		}
		body, err := migrationFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("postgres: two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies the pending migrations, each in its own transaction,
// while holding a session advisory lock on a dedicated connection: a second
// node calling Migrate at the same time waits, then finds nothing to do.
// It returns the versions it applied. Migrations are forward-only; a
// database migrated by a newer binary is left alone (with a warning).
func (s *Store) Migrate(ctx context.Context) ([]int, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, migrateTimeout)
		defer cancel()
	}
	migs, err := Migrations()
	if err != nil {
		return nil, err
	}
	// A connection of its own: closing it releases the session lock
	// whatever happens.
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", s.result(err))
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return nil, fmt.Errorf("postgres: migrate: lock: %w", s.result(err))
	}
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", s.result(err))
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", s.result(err))
	}
	known := map[int]bool{}
	var done []int
	for _, m := range migs {
		known[m.Version] = true
		if _, ok := applied[m.Version]; ok {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("postgres: migration %s: %w", m.Name, s.result(err))
		}
		s.log.Info("postgres: applied migration", "version", m.Version, "name", m.Name)
		done = append(done, m.Version)
	}
	for v := range applied {
		if !known[v] {
			s.log.Warn("postgres: database has a migration this binary does not know; it was migrated by a newer Aviary", "version", v)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrationLock); err != nil {
		return done, fmt.Errorf("postgres: migrate: unlock: %w", s.result(err))
	}
	return done, nil
}

func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int]appliedMigration, error) {
	rows, err := conn.Query(ctx, "SELECT version, name, applied_at FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]appliedMigration{}
	for rows.Next() {
		var a appliedMigration
		var v int
		if err := rows.Scan(&v, &a.name, &a.at); err != nil {
			return nil, err
		}
		out[v] = a
	}
	return out, rows.Err()
}

type appliedMigration struct {
	name string
	at   time.Time
}

// MigrationStatus is one migration as Status reports it.
type MigrationStatus struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when pending
	// Known is false for a migration recorded in the database that this
	// binary does not have (applied by a newer Aviary).
	Known bool
}

// Status lists every embedded migration and whether it is applied, plus
// any applied migration this binary does not know, ordered by version.
// It changes nothing.
func (s *Store) Status(ctx context.Context) ([]MigrationStatus, error) {
	migs, err := Migrations()
	if err != nil {
		return nil, err
	}
	var applied map[int]appliedMigration
	err = s.do(ctx, func(ctx context.Context) error {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		var exists bool
		if err := c.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
			return err
		}
		applied = map[int]appliedMigration{}
		if !exists {
			return nil
		}
		applied, err = appliedVersions(ctx, c.Conn())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: status: %w", err)
	}
	var out []MigrationStatus
	for _, m := range migs {
		st := MigrationStatus{Version: m.Version, Name: m.Name, Known: true}
		if a, ok := applied[m.Version]; ok {
			st.Applied, st.AppliedAt = true, a.at.UTC()
			delete(applied, m.Version)
		}
		out = append(out, st)
	}
	for v, a := range applied {
		out = append(out, MigrationStatus{Version: v, Name: a.name, Applied: true, AppliedAt: a.at.UTC()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Pending reports how many embedded migrations are not applied.
func Pending(st []MigrationStatus) int {
	n := 0
	for _, m := range st {
		if m.Known && !m.Applied {
			n++
		}
	}
	return n
}
