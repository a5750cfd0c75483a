package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

func scanRosterItem(r pgx.Row, owner string) (storage.RosterItem, error) {
	it := storage.RosterItem{Owner: owner}
	err := r.Scan(&it.Contact, &it.Name, &it.Subscription, &it.PendingOut, &it.PendingIn, &it.Groups, &it.InRoster)
	if len(it.Groups) == 0 {
		it.Groups = nil
	}
	return it, err
}

// GetRoster returns every item of the owner (including items with InRoster
// false) sorted by contact, and the roster version, in one round trip (one
// pipelined batch). The version is read before the items, so under
// concurrent changes the items are never older than the version: a client
// caching them can at worst be sent a change it already has, never miss one.
func (s *Store) GetRoster(ctx context.Context, owner string) ([]storage.RosterItem, int64, error) {
	var items []storage.RosterItem
	var ver int64
	err := s.do(ctx, func(ctx context.Context) error {
		items, ver = nil, 0
		b := &pgx.Batch{}
		queueRoster(b, owner, &items, &ver)
		return s.pool.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, 0, err
	}
	return items, ver, nil
}

// GetRosterItem returns one item; storage.ErrNotFound when absent.
func (s *Store) GetRosterItem(ctx context.Context, owner, contact string) (storage.RosterItem, error) {
	var it storage.RosterItem
	err := s.do(ctx, func(ctx context.Context) error {
		var err error
		it, err = scanRosterItem(s.pool.QueryRow(ctx, qRosterItem, owner, contact), owner)
		return err
	})
	if err != nil {
		return storage.RosterItem{}, err
	}
	return it, nil
}

// errUnchanged ends UpdateRosterItem's transaction by rolling back when
// nothing changed.
var errUnchanged = errors.New("postgres: roster item unchanged")

// UpdateRosterItem reads the item, lets fn decide and writes the result in
// one transaction that holds the owner's roster_versions row lock: every
// writer of this owner's roster, on any node, waits for it. Round trips:
// BEGIN, one batch (create the lock row, lock it, read the item), one batch
// (write, bump), COMMIT. The version is bumped only when something changed;
// a no-op or an error from fn rolls back and writes nothing. On removal the
// returned item is the one that was removed.
func (s *Store) UpdateRosterItem(ctx context.Context, owner, contact string, quota storage.RosterQuota, fn storage.RosterUpdate) (item storage.RosterItem, removed, changed bool, version int64, err error) {
	var fnErr error
	err = s.do(ctx, func(ctx context.Context) error {
		item, removed, changed, version, fnErr = storage.RosterItem{}, false, false, 0, nil
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var cur storage.RosterItem
			exists := true
			b := &pgx.Batch{}
			b.Queue(qRosterLockCreate, owner)
			b.Queue(qRosterLock, owner).QueryRow(func(row pgx.Row) error { return row.Scan(&version) })
			b.Queue(qRosterItem, owner, contact).QueryRow(func(row pgx.Row) error {
				var err error
				cur, err = scanRosterItem(row, owner)
				if errors.Is(err, pgx.ErrNoRows) {
					exists = false
					cur = storage.RosterItem{Owner: owner, Contact: contact, Subscription: storage.SubNone}
					return nil
				}
				return err
			})
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
			upd, remove, err := fn(cur, exists)
			if err != nil {
				fnErr = err
				return err
			}
			b = &pgx.Batch{}
			if remove {
				item = cur
				if !exists {
					return errUnchanged
				}
				b.Queue(qRosterDelete, owner, contact)
				removed = true
			} else {
				upd, err = shared.NormalizeRosterItem(upd, owner, contact)
				if err != nil {
					fnErr = err
					return err
				}
				item = upd
				if exists && shared.EqualRosterItem(cur, upd) {
					return errUnchanged
				}
				if err := checkRosterQuota(ctx, tx, owner, quota, cur, exists, upd); err != nil {
					if errors.Is(err, storage.ErrQuotaExceeded) {
						fnErr = err
					}
					return err
				}
				groups := upd.Groups
				if groups == nil {
					groups = []string{}
				}
				b.Queue(qRosterUpsert, owner, contact, upd.Name, upd.Subscription, upd.PendingOut, upd.PendingIn, groups, upd.InRoster)
			}
			b.Queue(qRosterBump, owner).QueryRow(func(row pgx.Row) error { return row.Scan(&version) })
			changed = true
			return tx.SendBatch(ctx, b).Close()
		})
		if errors.Is(err, errUnchanged) || fnErr != nil {
			return nil // rolled back; fn's error is reported below
		}
		return err
	})
	if fnErr != nil {
		return storage.RosterItem{}, false, false, 0, fnErr
	}
	if err != nil {
		return storage.RosterItem{}, false, false, 0, err
	}
	return item, removed, changed, version, nil
}

// checkRosterQuota checks a write against the quota inside its
// transaction, which holds the owner's roster lock, so writers on other
// nodes wait; rows are counted only when one is created or a pending
// request added (one more round trip then).
func checkRosterQuota(ctx context.Context, tx pgx.Tx, owner string, q storage.RosterQuota, cur storage.RosterItem, exists bool, upd storage.RosterItem) error {
	checks, err := shared.CheckRosterWrite(q, cur, exists, upd)
	if err != nil || (!checks.Items && !checks.PendingIn) {
		return err
	}
	var rows, pending int
	b := &pgx.Batch{}
	if checks.Items {
		b.Queue(qRosterCountRows, owner, q.Items).QueryRow(func(row pgx.Row) error { return row.Scan(&rows) })
	}
	if checks.PendingIn {
		b.Queue(qRosterCountPending, owner, q.PendingIn).QueryRow(func(row pgx.Row) error { return row.Scan(&pending) })
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	switch {
	case checks.Items && rows >= q.Items:
		return storage.ErrRosterFull
	case checks.PendingIn && pending >= q.PendingIn:
		return storage.ErrTooManyPending
	}
	return nil
}

// RosterVersion returns the owner's roster version, 0 when none.
func (s *Store) RosterVersion(ctx context.Context, owner string) (int64, error) {
	var v int64
	err := s.do(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, qRosterVersion, owner).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	return v, err
}

// Subscribers returns the contacts with subscription from or both, sorted
// (a partial index holds exactly those).
func (s *Store) Subscribers(ctx context.Context, owner string) ([]string, error) {
	return s.strings(ctx, qSubscribers, owner)
}

// queueRoster adds the reads of owner's roster version and items to b
// (one round trip with what else the batch holds: the login reads the
// offline queue with them).
func queueRoster(b *pgx.Batch, owner string, items *[]storage.RosterItem, ver *int64) {
	b.Queue(qRosterVersion, owner).QueryRow(func(row pgx.Row) error {
		err := row.Scan(ver)
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
			*items = append(*items, it)
		}
		return rows.Err()
	})
}
