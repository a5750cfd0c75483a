package sqlite

import (
	"context"
	"slices"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

const (
	qCountOffline  = "SELECT count(*) FROM (SELECT 1 FROM offline WHERE owner = ? LIMIT ?)"
	qOfflineBytes  = "SELECT coalesce(sum(length(stanza)), 0) FROM offline WHERE owner = ?"
	qInsertOffline = "INSERT INTO offline (owner, stanza, stored) VALUES (?, ?, ?)"
	qTakeOffline   = "DELETE FROM offline WHERE owner = ? RETURNING id, stanza, stored"
	qHasOffline    = "SELECT EXISTS (SELECT 1 FROM offline WHERE owner = ?)"
	// qTakeOfflineUpTo deletes the oldest messages: the first whatever its
	// size, then those whose running total stays within the limit.
	// length() of a blob reads no overflow page, so sizing the queue
	// costs an index walk, not reading every stanza.
	qTakeOfflineUpTo = `DELETE FROM offline WHERE id IN (
		SELECT id FROM (SELECT id, row_number() OVER w AS n, sum(length(stanza)) OVER w AS total
			FROM offline WHERE owner = ? WINDOW w AS (ORDER BY id))
		WHERE n = 1 OR total <= ?)
		RETURNING id, stanza, stored`
)

// StoreOffline commits the message before returning. Past the quota it
// returns storage.ErrQuotaExceeded; the check and the insert are one
// transaction on the writer connection.
func (s *Store) StoreOffline(ctx context.Context, owner string, stanza []byte, q storage.OfflineQuota) error {
	return s.write(ctx, func(ctx context.Context, tx wtx) error {
		if q.Messages > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, qCountOffline, owner, q.Messages).Scan(&n); err != nil {
				return mapErr(err)
			}
			if n >= q.Messages {
				return storage.ErrQuotaExceeded
			}
		}
		if q.Bytes > 0 {
			var n int64
			if err := tx.QueryRowContext(ctx, qOfflineBytes, owner).Scan(&n); err != nil {
				return mapErr(err)
			}
			if n+int64(len(stanza)) > q.Bytes {
				return storage.ErrQuotaExceeded
			}
		}
		_, err := tx.ExecContext(ctx, qInsertOffline, owner, stanza, micro(shared.Now()))
		return mapErr(err)
	})
}

// TakeOffline returns and deletes the owner's messages with one
// DELETE ... RETURNING, oldest first.
//
// Most logins have nothing waiting, so a read on the reader pool looks
// first and the write transaction (which queues behind every other
// writer) runs only when there is something to take. A message committed
// after that look is no different from one committed just after the
// DELETE: the caller re-checks for it (the router flushes the queue after
// storing when a resource is available).
func (s *Store) TakeOffline(ctx context.Context, owner string) ([]storage.OfflineMessage, error) {
	var has bool
	if err := s.pointRow(ctx, qHasOffline, owner).Scan(&has); err != nil {
		return nil, mapErr(err)
	}
	if !has {
		return nil, nil
	}
	return s.takeOffline(ctx, owner)
}

// TakeOfflineUpTo takes the oldest messages up to maxBytes (the first
// whatever its size) in one write transaction, which also tells whether
// more wait. Like TakeOffline, it looks on the reader pool first.
func (s *Store) TakeOfflineUpTo(ctx context.Context, owner string, maxBytes int) ([]storage.OfflineMessage, bool, error) {
	var has bool
	if err := s.pointRow(ctx, qHasOffline, owner).Scan(&has); err != nil {
		return nil, false, mapErr(err)
	}
	if !has {
		return nil, false, nil
	}
	return s.takeOfflineUpTo(ctx, owner, maxBytes)
}

// takeOfflineUpTo is TakeOfflineUpTo's write transaction; maxBytes <= 0
// takes everything.
func (s *Store) takeOfflineUpTo(ctx context.Context, owner string, maxBytes int) ([]storage.OfflineMessage, bool, error) {
	var more bool
	out, err := s.takeOfflineWith(ctx, owner, maxBytes, func(ctx context.Context, tx wtx) error {
		if maxBytes <= 0 {
			return nil
		}
		return mapErr(tx.QueryRowContext(ctx, qHasOffline, owner).Scan(&more))
	})
	return out, more, err
}

// takeOffline is TakeOffline's write transaction.
func (s *Store) takeOffline(ctx context.Context, owner string) ([]storage.OfflineMessage, error) {
	return s.takeOfflineWith(ctx, owner, 0, nil)
}

// takeOfflineWith deletes and returns the owner's messages, all of them or
// up to maxBytes, then runs after in the same transaction.
func (s *Store) takeOfflineWith(ctx context.Context, owner string, maxBytes int, after func(ctx context.Context, tx wtx) error) ([]storage.OfflineMessage, error) {
	var out []storage.OfflineMessage
	err := s.write(ctx, func(ctx context.Context, tx wtx) error {
		out = out[:0]
		query, args := qTakeOffline, []any{owner}
		if maxBytes > 0 {
			query, args = qTakeOfflineUpTo, []any{owner, maxBytes}
		}
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return mapErr(err)
		}
		defer rows.Close()
		for rows.Next() {
			var m storage.OfflineMessage
			var at int64
			if err := rows.Scan(&m.ID, &m.Stanza, &at); err != nil {
				return mapErr(err)
			}
			m.Stored = fromMicro(at)
			out = append(out, m)
		}
		if err := rows.Err(); err != nil {
			return mapErr(err)
		}
		if err := rows.Close(); err != nil {
			return mapErr(err)
		}
		if after != nil {
			return after(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b storage.OfflineMessage) int { return int(a.ID - b.ID) })
	return out, nil
}

// CountOffline returns how many messages wait for the owner.
func (s *Store) CountOffline(ctx context.Context, owner string) (int, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var n int
	err := s.queryRow(ctx, "SELECT count(*) FROM offline WHERE owner = ?", owner).Scan(&n)
	return n, mapErr(err)
}

// PeekOffline returns the owner's oldest messages, at most limit, and
// leaves them stored.
func (s *Store) PeekOffline(ctx context.Context, owner string, limit int) ([]storage.OfflineMessage, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.query(ctx, "SELECT id, stanza, stored FROM offline WHERE owner = ? ORDER BY id LIMIT ?", owner, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []storage.OfflineMessage
	for rows.Next() {
		var m storage.OfflineMessage
		var at int64
		if err := rows.Scan(&m.ID, &m.Stanza, &at); err != nil {
			return nil, mapErr(err)
		}
		m.Stored = fromMicro(at)
		out = append(out, m)
	}
	return out, mapErr(rows.Err())
}

// ExpireOffline deletes messages stored before t and returns how many.
func (s *Store) ExpireOffline(ctx context.Context, before time.Time) (int, error) {
	n, err := s.exec(ctx, "DELETE FROM offline WHERE stored < ?", micro(before))
	return int(n), err
}
