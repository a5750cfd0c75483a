package postgres

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
)

var errQuota = errors.New("postgres: quota")

// StoreOffline commits the message before returning. With a quota the
// owner's advisory lock, the count, the size and the conditional insert
// run as one implicit transaction in one round trip (one pipelined
// batch), so two nodes storing for the same user at once never pass the
// quota; past it the call returns storage.ErrQuotaExceeded.
func (s *Store) StoreOffline(ctx context.Context, owner string, stanza []byte, q storage.OfflineQuota) error {
	if stanza == nil {
		stanza = []byte{}
	}
	if q == (storage.OfflineQuota{}) {
		return s.do(ctx, func(ctx context.Context) error {
			_, err := s.pool.Exec(ctx, qOfflineInsert, owner, stanza)
			return err
		})
	}
	limit, bytes := int64(q.Messages), q.Bytes
	if limit <= 0 {
		limit = math.MaxInt32
	}
	if bytes <= 0 {
		bytes = math.MaxInt64
	}
	err := s.do(ctx, func(ctx context.Context) error {
		b := &pgx.Batch{}
		b.Queue(qOfflineLock, owner)
		b.Queue(qOfflineInsertLimited, owner, stanza, limit, bytes).QueryRow(func(row pgx.Row) error {
			var id int64
			err := row.Scan(&id)
			if errors.Is(err, pgx.ErrNoRows) {
				return errQuota
			}
			return err
		})
		return s.pool.SendBatch(ctx, b).Close()
	})
	if errors.Is(err, errQuota) {
		return storage.ErrQuotaExceeded
	}
	return err
}

// TakeOffline returns and deletes the owner's messages with one
// DELETE ... RETURNING, oldest first.
func (s *Store) TakeOffline(ctx context.Context, owner string) ([]storage.OfflineMessage, error) {
	var out []storage.OfflineMessage
	err := s.do(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, qOfflineTake, owner)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.OfflineMessage, error) {
			var m storage.OfflineMessage
			err := r.Scan(&m.ID, &m.Stanza, &m.Stored)
			m.Stored = m.Stored.UTC()
			return m, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	sortOffline(out)
	return out, nil
}

// TakeOfflineUpTo takes the oldest messages up to maxBytes (the first
// whatever its size) and tells whether more wait, in one statement. Two
// sessions taking at once get different messages: a row the other deleted
// first is skipped (and may make more true when nothing is left, which
// costs the caller one empty take).
func (s *Store) TakeOfflineUpTo(ctx context.Context, owner string, maxBytes int) ([]storage.OfflineMessage, bool, error) {
	if maxBytes <= 0 {
		msgs, err := s.TakeOffline(ctx, owner)
		return msgs, false, err
	}
	var out []storage.OfflineMessage
	var more bool
	err := s.do(ctx, func(ctx context.Context) error {
		out, more = nil, false
		b := &pgx.Batch{}
		queueTakeUpTo(b, owner, maxBytes, &out, &more)
		return s.pool.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, false, err
	}
	sortOffline(out)
	return out, more, nil
}

// queueTakeUpTo queues the bounded take; more is set when the owner had
// more messages than it took.
func queueTakeUpTo(b *pgx.Batch, owner string, maxBytes int, out *[]storage.OfflineMessage, more *bool) {
	b.Queue(qOfflineTakeUpTo, owner, maxBytes).Query(func(rows pgx.Rows) error { return scanCounted(rows, out, more) })
}

// scanCounted scans messages whose rows also carry how many the owner
// had (qOfflineTakeUpTo, qOfflineReadUpTo); more is set when that is more
// than the rows.
func scanCounted(rows pgx.Rows, out *[]storage.OfflineMessage, more *bool) error {
	var had int64
	for rows.Next() {
		var m storage.OfflineMessage
		if err := rows.Scan(&m.ID, &m.Stanza, &m.Stored, &had); err != nil {
			return err
		}
		m.Stored = m.Stored.UTC()
		*out = append(*out, m)
	}
	*more = had > int64(len(*out))
	return rows.Err()
}

func scanOffline(rows pgx.Rows, out *[]storage.OfflineMessage) error {
	for rows.Next() {
		var m storage.OfflineMessage
		if err := rows.Scan(&m.ID, &m.Stanza, &m.Stored); err != nil {
			return err
		}
		m.Stored = m.Stored.UTC()
		*out = append(*out, m)
	}
	return rows.Err()
}

func sortOffline(out []storage.OfflineMessage) {
	slices.SortFunc(out, func(a, b storage.OfflineMessage) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

// ReadOfflineUpTo reads the oldest messages not in skip up to maxBytes
// (the first whatever its size) and tells whether more wait, in one
// statement, leaving them stored.
func (s *Store) ReadOfflineUpTo(ctx context.Context, owner string, skip []int64, maxBytes int) ([]storage.OfflineMessage, bool, error) {
	var out []storage.OfflineMessage
	var more bool
	err := s.do(ctx, func(ctx context.Context) error {
		out, more = nil, false
		b := &pgx.Batch{}
		queueReadUpTo(b, owner, skip, maxBytes, &out, &more)
		return s.pool.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// queueReadUpTo queues the read of ReadOfflineUpTo; more is set when the
// owner had more messages not in skip than it read.
func queueReadUpTo(b *pgx.Batch, owner string, skip []int64, maxBytes int, out *[]storage.OfflineMessage, more *bool) {
	if skip == nil {
		skip = []int64{} // a NULL array would make every "<> ALL" unknown
	}
	if maxBytes <= 0 {
		b.Queue(qOfflineReadAll, owner, skip).Query(func(rows pgx.Rows) error { return scanOffline(rows, out) })
		return
	}
	b.Queue(qOfflineReadUpTo, owner, skip, maxBytes).Query(func(rows pgx.Rows) error { return scanCounted(rows, out, more) })
}

// DeleteOffline deletes the owner's messages with the given IDs.
func (s *Store) DeleteOffline(ctx context.Context, owner string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return s.do(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, qOfflineDelete, owner, ids)
		return err
	})
}

// GetRosterReadOffline is GetRoster and ReadOfflineUpTo in one round trip
// (one pipelined batch), what a user's initial presence needs.
func (s *Store) GetRosterReadOffline(ctx context.Context, owner string, skip []int64, maxBytes int) ([]storage.RosterItem, int64, []storage.OfflineMessage, bool, error) {
	var items []storage.RosterItem
	var ver int64
	var out []storage.OfflineMessage
	var more bool
	err := s.do(ctx, func(ctx context.Context) error {
		items, ver, out, more = nil, 0, nil, false
		b := &pgx.Batch{}
		queueRoster(b, owner, &items, &ver)
		queueReadUpTo(b, owner, skip, maxBytes, &out, &more)
		return s.pool.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, 0, nil, false, err
	}
	return items, ver, out, more, nil
}

// CountOffline returns how many messages wait for the owner.
func (s *Store) CountOffline(ctx context.Context, owner string) (int, error) {
	var n int
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, qOfflineCount, owner).Scan(&n)
	})
	return n, err
}

// PeekOffline returns the owner's oldest messages, at most limit, and
// leaves them stored.
func (s *Store) PeekOffline(ctx context.Context, owner string, limit int) ([]storage.OfflineMessage, error) {
	var out []storage.OfflineMessage
	err := s.do(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.pool.Query(ctx, `SELECT id, stanza, stored FROM offline WHERE owner = $1 ORDER BY id LIMIT $2`, owner, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		return scanOffline(rows, &out)
	})
	return out, err
}

// ExpireOffline deletes messages stored before t and returns how many.
func (s *Store) ExpireOffline(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.do(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, qOfflineExpire, before)
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}
