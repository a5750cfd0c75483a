package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// txUnprepared counts statements run in write transactions that were not
// in writeTxQueries (tests expect none).
type txUnprepared = atomic.Int64

// stmts caches prepared statements of one *sql.DB by query text, so a
// query is parsed by SQLite once per connection instead of on every call
// (the parse was ~12% of a login's CPU). database/sql prepares a cached
// *sql.Stmt again on each pool connection the first time it runs there
// and keeps it, and tx.StmtContext reuses the one of the transaction's
// connection.
//
// prepare must not run while the caller holds one of the pool's
// connections (inside a transaction on it): on the writer, whose pool is a
// single connection, it would wait for itself. Statements that run inside
// write transactions are therefore prepared up front (writeTxQueries).
type stmts struct {
	db *sql.DB
	m  sync.Map // query → *sql.Stmt
}

// prepare returns the cached statement for query, preparing it first.
func (c *stmts) prepare(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if old, loaded := c.m.LoadOrStore(query, st); loaded {
		st.Close()
		return old.(*sql.Stmt), nil
	}
	return st, nil
}

// cached returns the statement for query if it was prepared.
func (c *stmts) cached(query string) *sql.Stmt {
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt)
	}
	return nil
}

func (c *stmts) close() {
	c.m.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		c.m.Delete(k)
		return true
	})
}

// row is a *sql.Row that may carry a preparation error instead.
type row struct {
	r   *sql.Row
	err error
}

// Scan scans the row, or returns the preparation error.
func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.r.Scan(dest...)
}

// pointRow and pointQuery run a point lookup (one owner's rows through a
// primary key or index prefix) on the reader pool without watching ctx
// while it runs: with a context that can end, database/sql and the driver
// each start a goroutine per statement to watch it, which doubled the cost
// of a 10 µs lookup (the login path is made of these). ctx is checked
// first. Such a lookup cannot wait on a lock (WAL readers never block),
// and every pool connection it may wait for is held by a call that is
// itself bounded, so it still ends promptly. Scans that can be long keep
// queryRow and query.
func (s *Store) pointRow(ctx context.Context, query string, args ...any) row {
	if err := ctx.Err(); err != nil {
		return row{err: err}
	}
	return s.queryRow(context.WithoutCancel(ctx), query, args...)
}

func (s *Store) pointQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.query(context.WithoutCancel(ctx), query, args...)
}

// queryRow runs a single-row read on the reader pool.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) row {
	st, err := s.rst.prepare(ctx, query)
	if err != nil {
		return row{err: err}
	}
	return row{r: st.QueryRowContext(ctx, args...)}
}

// query runs a read on the reader pool.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.rst.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// writeTxQueries are the statements run inside write transactions,
// prepared on the writer connection when the store opens.
var writeTxQueries = []string{
	qCountOffline, qOfflineBytes, qInsertOffline, qTakeOffline, qTakeOfflineUpTo, qHasOffline,
	qBlock, qUnblockOne,
	qRosterItem, qRosterVersion, qDeleteRosterItem, qUpsertRosterItem, qBumpRosterVersion,
	qCountRosterRows, qCountRosterPending,
	qDeleteUser,
	qItemGet, qItemReplace, qItemUsage, qItemEvictable, qItemDelete,
	qArchiveInsert, qArchiveHighest,
}

func init() {
	for _, t := range perUser {
		writeTxQueries = append(writeTxQueries, deletePerUser(t))
	}
}

// prepareWriteTx prepares writeTxQueries on the writer.
func (s *Store) prepareWriteTx(ctx context.Context) error {
	for _, q := range writeTxQueries {
		if _, err := s.wst.prepare(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// wtx is a write transaction that runs its statements prepared when they
// are in writeTxQueries (and unprepared otherwise).
type wtx struct {
	tx *sql.Tx
	s  *Store
}

func (t wtx) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := t.s.wst.cached(query); st != nil {
		return t.tx.StmtContext(ctx, st)
	}
	t.s.txUnprepared.Add(1)
	return nil
}

// ExecContext runs a statement in the transaction.
func (t wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the transaction.
func (t wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a single-row query in the transaction.
func (t wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}
