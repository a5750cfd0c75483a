// Package sqlite is Aviary's embedded store: one SQLite file in the data
// directory, through the pure-Go modernc.org/sqlite driver, so a single node
// needs no external service.
//
// The file runs in WAL mode. Reads go through a small pool of connections;
// every write goes through one connection whose transactions begin
// IMMEDIATE, so writers queue in the process and another process on the
// same file (the `aviary user` CLI next to a running server) waits on
// busy_timeout instead of failing. Every call is bounded by its context and
// by DefaultTimeout.
//
// Module stores (items.go, archivestore.go): key/value and map stores share
// the table store_items, whose version is an AUTOINCREMENT rowid that every
// write replaces (INSERT OR REPLACE), so versions are never reused; writes
// under storage.Limits count and write in one write transaction, which the
// single writer serializes. Archive stores live in archive_entries, whose
// rowid is the time-ordered id; AppendBatch is one write transaction.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/aviary-im/aviary/storage"
)

// DefaultTimeout bounds every call whose context has no earlier deadline.
const DefaultTimeout = 5 * time.Second

// busyTimeout is how long a writer waits for another process's lock.
const busyTimeout = 5000 // milliseconds

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the embedded store. It implements storage.Store.
type Store struct {
	path string
	rdb  *sql.DB // readers
	wdb  *sql.DB // the one writer connection
	rst  stmts   // prepared statements of rdb
	wst  stmts   // prepared statements of wdb

	txUnprepared txUnprepared

	mu        sync.Mutex
	listeners map[string]map[*propListener]struct{}
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating when missing) the database file at path, applies the
// embedded migrations and returns the store.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(busyTimeout)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	rq := url.Values{}
	for k, v := range q {
		rq[k] = v
	}
	q.Set("_txlock", "immediate")
	// A file: URI needs forward slashes and escaped specials.
	u := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	wdb, err := sql.Open("sqlite", u+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s := &Store{path: abs, wdb: wdb, wst: stmts{db: wdb}, listeners: map[string]map[*propListener]struct{}{}}
	if err := s.migrate(ctx); err != nil {
		wdb.Close()
		return nil, err
	}
	if err := s.prepareWriteTx(ctx); err != nil {
		s.wst.close()
		wdb.Close()
		return nil, fmt.Errorf("sqlite: prepare: %w", mapErr(err))
	}
	rdb, err := sql.Open("sqlite", u+"?"+rq.Encode())
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	n := max(2, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	s.rdb = rdb
	s.rst = stmts{db: rdb}
	return s, nil
}

// Path returns the database file's absolute path.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error {
	s.rst.close()
	s.wst.close()
	return errors.Join(s.rdb.Close(), s.wdb.Close())
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	var one int
	return mapErr(s.queryRow(ctx, "SELECT 1").Scan(&one))
}

// SchemaVersion returns the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var v int
	err := s.wdb.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_version").Scan(&v)
	return v, mapErr(err)
}

// Migration is one embedded schema migration.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in order (upgrade tests
// build an older schema from them).
func Migrations() ([]Migration, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	sort.Strings(files)
	var out []Migration
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sql")
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: bad file name", f)
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: %w", f, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	return out, nil
}

// createSchemaVersion is the table recording the applied migrations.
const createSchemaVersion = `CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`

func (s *Store) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	migs, err := Migrations()
	if err != nil {
		return err
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", mapErr(err))
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, createSchemaVersion); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", mapErr(err))
	}
	var cur int
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_version").Scan(&cur); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", mapErr(err))
	}
	for _, m := range migs {
		if m.Version <= cur {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.Name, mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.Name, mapErr(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", mapErr(err))
	}
	return nil
}

// bound limits a call to DefaultTimeout unless ctx ends earlier.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, DefaultTimeout)
}

// mapErr turns driver errors into the storage sentinels, wrapped so the
// driver's message survives.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ErrNotFound
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	var se *sqlitedrv.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", storage.ErrExists, err)
		}
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT:
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
	}
	if strings.Contains(err.Error(), "interrupted") {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// write runs fn in one IMMEDIATE transaction on the writer connection.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx wtx) error) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	if err := fn(ctx, wtx{tx: tx, s: s}); err != nil {
		tx.Rollback()
		return err
	}
	return mapErr(tx.Commit())
}

// exec runs one write statement and returns the rows it affected.
func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	st, err := s.wst.prepare(ctx, query)
	if err != nil {
		return 0, mapErr(err)
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, mapErr(err)
	}
	n, err := res.RowsAffected()
	return n, mapErr(err)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func micro(t time.Time) int64 { return t.UnixMicro() }

func fromMicro(v int64) time.Time { return time.UnixMicro(v).UTC() }

// DB returns the read pool, for diagnostics and tests.
func (s *Store) DB() *sql.DB { return s.rdb }

// ArchiveDiskBytes is what the archive stores take on disk: the pages of
// archive_entries and its indexes (dbstat), after a checkpoint
// (benchmarks report bytes per message with it).
func (s *Store) ArchiveDiskBytes(ctx context.Context) (int64, error) {
	if _, err := s.wdb.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return 0, err
	}
	var n int64
	err := s.rdb.QueryRowContext(ctx, `SELECT coalesce(sum(pgsize), 0) FROM dbstat
		WHERE name = 'archive_entries' OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'archive_entries')`).Scan(&n)
	return n, err
}
