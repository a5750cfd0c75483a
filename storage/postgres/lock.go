package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// TryLock takes the cluster-wide lock called name if no session of any
// node holds it, without waiting: ok is false when another holder has it.
// It is a PostgreSQL session-level advisory lock on a connection of its
// own, outside the pool: unlock releases it and closes that connection,
// and it also ends when the connection or the process dies: a node that crashes while
// holding it cannot block the others. The key is a hash of the schema and
// the name, so clusters (and tests) on other schemas of the same database
// do not share locks.
func (s *Store) TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, s.cfg.ConnConfig.Copy())
	if err != nil {
		return nil, false, fmt.Errorf("postgres: lock %s: %w", name, err)
	}
	closeConn := func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(c)
	}
	if err := conn.QueryRow(cctx, "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || '.aviary.lock.' || $1, 0))", name).Scan(&ok); err != nil {
		closeConn()
		return nil, false, fmt.Errorf("postgres: lock %s: %w", name, err)
	}
	if !ok {
		closeConn()
		return nil, false, nil
	}
	unlock = func() {
		// Released by the server before it answers. Closing alone releases
		// it only once the backend has noticed and exited, after Close
		// returned: a TryLock right after the unlock could still find it
		// held (TestTryLock, once in a clean-clone run).
		c, cancel := context.WithTimeout(context.Background(), s.timeout)
		_, _ = conn.Exec(c, "SELECT pg_advisory_unlock(hashtextextended(current_schema() || '.aviary.lock.' || $1, 0))", name)
		cancel()
		closeConn()
	}
	return unlock, true, nil
}
