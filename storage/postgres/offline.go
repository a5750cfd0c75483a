package postgres

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
)

var errQuota = errors.New("postgres: quota")

// StoreOffline commits the message before returning. With limit > 0 the
// owner's advisory lock, the count and the conditional insert run as one
// implicit transaction in one round trip (one pipelined batch), so two
// nodes storing for the same user at once never pass the quota; past it
// the call returns storage.ErrQuotaExceeded.
func (s *Store) StoreOffline(ctx context.Context, owner string, stanza []byte, limit int) error {
	if stanza == nil {
		stanza = []byte{}
	}
	err := s.do(ctx, func(ctx context.Context) error {
		if limit <= 0 {
			_, err := s.pool.Exec(ctx, qOfflineInsert, owner, stanza)
			return err
		}
		b := &pgx.Batch{}
		b.Queue(qOfflineLock, owner)
		b.Queue(qOfflineInsertLimited, owner, stanza, limit).QueryRow(func(row pgx.Row) error {
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

// GetRosterTakeOffline is GetRoster and TakeOffline in one round trip (one
// pipelined batch, one implicit transaction: both happen or neither), what
// a user's initial presence needs.
func (s *Store) GetRosterTakeOffline(ctx context.Context, owner string) ([]storage.RosterItem, int64, []storage.OfflineMessage, error) {
	var items []storage.RosterItem
	var ver int64
	var out []storage.OfflineMessage
	err := s.do(ctx, func(ctx context.Context) error {
		items, ver, out = nil, 0, nil
		b := &pgx.Batch{}
		b.Queue(qRosterVersion, owner).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&ver)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
		b.Queue(qRosterItems, owner).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				it, err := scanRosterItem(rows, owner)
				if err != nil {
					return err
				}
				items = append(items, it)
			}
			return rows.Err()
		})
		b.Queue(qOfflineTake, owner).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var m storage.OfflineMessage
				if err := rows.Scan(&m.ID, &m.Stanza, &m.Stored); err != nil {
					return err
				}
				m.Stored = m.Stored.UTC()
				out = append(out, m)
			}
			return rows.Err()
		})
		return s.pool.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, 0, nil, err
	}
	sortOffline(out)
	return items, ver, out, nil
}

// CountOffline returns how many messages wait for the owner.
func (s *Store) CountOffline(ctx context.Context, owner string) (int, error) {
	var n int
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, qOfflineCount, owner).Scan(&n)
	})
	return n, err
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
