// Package postgres is the store a cluster shares: PostgreSQL through
// github.com/jackc/pgx/v5 and its pool. It implements storage.Store and
// storage.PropertyListener.
//
// Open applies the embedded, numbered, forward-only migrations under a
// PostgreSQL advisory lock, so nodes starting at the same moment never race
// (Migrate and Status serve `aviary db migrate` and `aviary db status`).
//
// Every call is bounded by Options.Timeout. When PostgreSQL cannot be
// reached or does not answer in time, calls fail with an error wrapping
// storage.ErrUnavailable; the outage is logged once when it starts and once
// when it ends, and the pool reconnects by itself.
//
// Concurrency: UpdateRosterItem runs in one transaction that first locks
// the owner's roster_versions row (INSERT ... ON CONFLICT DO NOTHING, then
// SELECT ... FOR UPDATE), so writers of one user's roster serialize across
// every node. StoreOffline with a limit takes a per-owner transaction-scoped
// advisory lock around its count-and-insert, in one round trip. TakeOffline
// is a single DELETE ... RETURNING.
//
// Module stores (items.go, archivestore.go): key/value and map stores share
// the table store_items, whose version column comes from one sequence; a
// write under storage.Limits locks the owner's store with a
// transaction-scoped advisory lock, then counts, writes and evicts in the
// same transaction. Archive stores live in archive_entries, keyed by a
// time-ordered bigint id; AppendBatch is one INSERT ... SELECT FROM unnest
// for the whole batch, and Query sends the page and the count in one batch.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aviary-im/aviary/storage"
)

// MinServerVersion is the oldest PostgreSQL Open accepts
// (server_version_num). Only 15 is tested.
const MinServerVersion = 120000

// Options tune the store. Zero values take the defaults.
type Options struct {
	// PoolSize is the maximum number of connections. Default 10.
	PoolSize int
	// Timeout bounds every call, including getting a connection. Default 5s.
	Timeout time.Duration
	// Logger receives outage and migration messages. Default slog.Default().
	Logger *slog.Logger
	// NoMigrate makes Open leave the schema alone (for `aviary db status`);
	// the store is then only good for Status and Migrate until migrated.
	NoMigrate bool
	// Tracer, when set, sees every query and batch (metrics, debugging).
	Tracer pgx.QueryTracer
}

// writerLaneConns is the size of the pool kept apart for group-commit
// writers (storage.InWriterLane): one batch at a time per writer, one
// more for a retry while the first connection is being replaced.
const writerLaneConns = 2

// Store is the PostgreSQL store.
type Store struct {
	pool    *pgxpool.Pool
	lane    *pgxpool.Pool // group-commit writes (storage.InWriterLane)
	cfg     *pgxpool.Config
	timeout time.Duration
	log     *slog.Logger
	down    atomic.Bool // an outage is in progress (logged once)
}

var (
	_ storage.Store            = (*Store)(nil)
	_ storage.PropertyListener = (*Store)(nil)
)

// Open connects to the database at url (postgres://user:pass@host:port/db),
// checks the server version and applies pending migrations.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.PoolSize <= 0 {
		opts.PoolSize = 10
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	cfg.MaxConns = int32(opts.PoolSize)
	if opts.Tracer != nil {
		cfg.ConnConfig.Tracer = opts.Tracer
	}
	cfg.MinConns = 0
	cfg.HealthCheckPeriod = 10 * time.Second
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.PingTimeout = opts.Timeout
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > opts.Timeout {
		cfg.ConnConfig.ConnectTimeout = opts.Timeout
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "aviary"
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	laneCfg := cfg.Copy()
	laneCfg.MaxConns = writerLaneConns
	lane, err := pgxpool.NewWithConfig(context.Background(), laneCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, lane: lane, cfg: cfg, timeout: opts.Timeout, log: opts.Logger}
	if err := s.checkVersion(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if !opts.NoMigrate {
		if _, err := s.Migrate(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// poolFor is the pool for ctx's calls: the writer lane's for a
// group-commit writer, the shared one otherwise.
func (s *Store) poolFor(ctx context.Context) *pgxpool.Pool {
	if storage.IsWriterLane(ctx) {
		return s.lane
	}
	return s.pool
}

func (s *Store) checkVersion(ctx context.Context) error {
	var v int
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v)
	})
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	if v < MinServerVersion {
		return fmt.Errorf("postgres: server version %d is older than the minimum %d", v, MinServerVersion)
	}
	return nil
}

// Pool returns the connection pool, for diagnostics and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pools.
func (s *Store) Close() error {
	s.pool.Close()
	s.lane.Close()
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, "SELECT 1")
		return err
	})
}

// do runs fn bounded by the store's timeout, retries once when the failure
// happened before anything reached the server (a stale pooled connection),
// and maps the error.
func (s *Store) do(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := fn(ctx)
	if err != nil && pgconn.SafeToRetry(err) && ctx.Err() == nil {
		err = fn(ctx)
	}
	return s.result(err)
}

// result maps an error to the storage sentinels and tracks outages: the
// first failure to reach the database logs once and drops the pool's
// connections; the first success after it logs the recovery.
func (s *Store) result(err error) error {
	if err == nil || reached(err) {
		if s.down.Load() && s.down.CompareAndSwap(true, false) {
			s.log.Info("postgres: database reachable again")
		}
		return mapErr(err)
	}
	if unavailable(err) {
		if s.down.CompareAndSwap(false, true) {
			s.log.Error("postgres: database unavailable; calls fail until it is back", "err", err)
			// After a broken connection the others are likely dead too:
			// let the pool open fresh ones. (A timeout alone says nothing
			// about the other connections; pgx already closed that one.)
			if !errors.Is(err, context.DeadlineExceeded) {
				go s.pool.Reset()
				go s.lane.Reset()
			}
		}
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// reached reports errors that prove the database answered.
func reached(err error) bool {
	if errors.Is(err, pgx.ErrNoRows) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && !unavailableCode(pe.Code)
}

// mapErr maps "no rows" and unique violations; other errors pass through.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: %w", storage.ErrExists, err)
	}
	return err
}

func unavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return true
	case code == "57P01", code == "57P02", code == "57P03": // shutdown, crash, cannot connect now
		return true
	case code == "53300": // too many connections
		return true
	}
	return false
}

// unavailable reports errors that mean the database could not be reached
// or did not answer in time.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return unavailableCode(pe.Code)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err),
		errors.As(err, &ce), errors.As(err, &ne),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	msg := err.Error()
	for _, s := range []string{"conn closed", "connection reset", "broken pipe", "failed to connect", "server closed", "connection refused"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Vacuum runs VACUUM ANALYZE, what autovacuum does a little later:
// statistics for the planner, and the visibility map that lets a count
// read only the index. Benchmarks call it after a bulk load.
func (s *Store) Vacuum(ctx context.Context) error { return s.exec(ctx, "VACUUM ANALYZE") }

// ArchiveDiskBytes is what the archive stores take on disk: the table
// archive_entries with its indexes and TOAST (benchmarks report bytes per
// message with it).
func (s *Store) ArchiveDiskBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT pg_total_relation_size('archive_entries')`).Scan(&n)
	})
	return n, err
}
