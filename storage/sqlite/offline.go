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
	qInsertOffline = "INSERT INTO offline (owner, stanza, stored) VALUES (?, ?, ?)"
	qTakeOffline   = "DELETE FROM offline WHERE owner = ? RETURNING id, stanza, stored"
	qHasOffline    = "SELECT EXISTS (SELECT 1 FROM offline WHERE owner = ?)"
)

// StoreOffline commits the message before returning. With limit > 0 and
// the owner already holding limit messages it returns
// storage.ErrQuotaExceeded; the check and the insert are one transaction.
func (s *Store) StoreOffline(ctx context.Context, owner string, stanza []byte, limit int) error {
	return s.write(ctx, func(ctx context.Context, tx wtx) error {
		if limit > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, qCountOffline, owner, limit).Scan(&n); err != nil {
				return mapErr(err)
			}
			if n >= limit {
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

// takeOffline is TakeOffline's write transaction.
func (s *Store) takeOffline(ctx context.Context, owner string) ([]storage.OfflineMessage, error) {
	var out []storage.OfflineMessage
	err := s.write(ctx, func(ctx context.Context, tx wtx) error {
		rows, err := tx.QueryContext(ctx, qTakeOffline, owner)
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
		return mapErr(rows.Err())
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

// ExpireOffline deletes messages stored before t and returns how many.
func (s *Store) ExpireOffline(ctx context.Context, before time.Time) (int, error) {
	n, err := s.exec(ctx, "DELETE FROM offline WHERE stored < ?", micro(before))
	return int(n), err
}
