package sqlite

import (
	"context"
	"slices"
	"strconv"
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
	// qReadOfflineUpTo is qTakeOfflineUpTo's read without the delete,
	// skipping the IDs of the JSON array ?2; each row also carries how
	// many messages not skipped the owner has.
	qReadOfflineUpTo = `WITH q AS (
		SELECT id, row_number() OVER w AS n, sum(length(stanza)) OVER w AS total
		FROM offline WHERE owner = ?1 AND id NOT IN (SELECT value FROM json_each(?2)) WINDOW w AS (ORDER BY id))
		SELECT o.id, o.stanza, o.stored, (SELECT count(*) FROM q) FROM offline o
		WHERE o.id IN (SELECT id FROM q WHERE n = 1 OR total <= ?3) ORDER BY o.id`
	qReadOfflineAll = `SELECT id, stanza, stored, 0 FROM offline
		WHERE owner = ?1 AND id NOT IN (SELECT value FROM json_each(?2)) ORDER BY id`
	qDeleteOffline = "DELETE FROM offline WHERE owner = ? AND id IN (SELECT value FROM json_each(?))"
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

// ReadOfflineUpTo reads the oldest messages not in skip up to maxBytes
// (the first whatever its size) on the reader pool, and tells whether
// more wait, in one statement; it leaves them stored.
func (s *Store) ReadOfflineUpTo(ctx context.Context, owner string, skip []int64, maxBytes int) ([]storage.OfflineMessage, bool, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	query, args := qReadOfflineUpTo, []any{owner, jsonIDs(skip), maxBytes}
	if maxBytes <= 0 {
		query, args = qReadOfflineAll, args[:2]
	}
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, false, mapErr(err)
	}
	defer rows.Close()
	var out []storage.OfflineMessage
	var had int64
	for rows.Next() {
		var m storage.OfflineMessage
		var at int64
		if err := rows.Scan(&m.ID, &m.Stanza, &at, &had); err != nil {
			return nil, false, mapErr(err)
		}
		m.Stored = fromMicro(at)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, mapErr(err)
	}
	return out, maxBytes > 0 && had > int64(len(out)), nil
}

// DeleteOffline deletes the owner's messages with the given IDs.
func (s *Store) DeleteOffline(ctx context.Context, owner string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.exec(ctx, qDeleteOffline, owner, jsonIDs(ids))
	return err
}

// jsonIDs is a list of IDs as the JSON array json_each reads: SQLite has
// no array parameters.
func jsonIDs(ids []int64) string {
	b := make([]byte, 0, 2+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
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
