package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

const (
	qArchiveInsert = `INSERT INTO archive_entries (owner, store, id, with_jid, value)
	VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	qArchiveGet  = `SELECT with_jid, value FROM archive_entries WHERE owner = ? AND store = ? AND id = ?`
	qArchivePage = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = ? AND store = ? AND id >= ? AND id < ? ORDER BY id LIMIT ?`
	qArchivePageLast = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = ? AND store = ? AND id >= ? AND id < ? ORDER BY id DESC LIMIT ?`
	qArchivePageWith = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = ? AND store = ? AND id >= ? AND id < ? AND with_jid = ? ORDER BY id LIMIT ?`
	qArchivePageWithLast = `SELECT id, with_jid, value FROM archive_entries
	WHERE owner = ? AND store = ? AND id >= ? AND id < ? AND with_jid = ? ORDER BY id DESC LIMIT ?`
	qArchiveCount     = `SELECT count(*) FROM archive_entries WHERE owner = ? AND store = ? AND id >= ? AND id < ?`
	qArchiveCountWith = `SELECT count(*) FROM archive_entries
	WHERE owner = ? AND store = ? AND id >= ? AND id < ? AND with_jid = ?`
	qArchiveUpdate       = `UPDATE archive_entries SET value = ? WHERE owner = ? AND store = ? AND id = ?`
	qArchiveDelete       = `DELETE FROM archive_entries WHERE owner = ? AND store = ? AND id = ?`
	qArchiveDeleteOwner  = `DELETE FROM archive_entries WHERE owner = ? AND store = ?`
	qArchiveDeleteBefore = `DELETE FROM archive_entries WHERE owner = ? AND store = ? AND id < ?`
	qArchiveExpire       = `DELETE FROM archive_entries WHERE store = ? AND id < ?`
)

// maxIDTries bounds the retries of an append whose ID collided (another
// process picked the same one for the same owner in the same microsecond).
const maxIDTries = 8

// Archive opens an archive store.
func (s *Store) Archive(name string) storage.Archive { return archiveStore{s, name} }

type archiveStore struct {
	s    *Store
	name string
}

func (a archiveStore) Append(ctx context.Context, e storage.ArchiveEntry) (int64, error) {
	ids, err := a.AppendBatch(ctx, []storage.ArchiveEntry{e})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// AppendBatch inserts every entry in one write transaction (one commit).
func (a archiveStore) AppendBatch(ctx context.Context, es []storage.ArchiveEntry) ([]int64, error) {
	if len(es) == 0 {
		return nil, nil
	}
	for _, e := range es {
		if e.Owner == "" {
			return nil, errors.New("sqlite: archive entry without owner")
		}
	}
	ids := shared.NewArchiveIDs(es)
	err := a.s.write(ctx, func(ctx context.Context, tx wtx) error {
		for i, e := range es {
			if err := a.insert(ctx, tx, e, &ids[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// insert adds one entry, moving to the next ID while it collides.
func (a archiveStore) insert(ctx context.Context, tx wtx, e storage.ArchiveEntry, id *int64) error {
	for range maxIDTries {
		res, err := tx.ExecContext(ctx, qArchiveInsert, e.Owner, a.name, *id, e.With, nonNil(e.Value))
		if err != nil {
			return mapErr(err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return mapErr(err)
		}
		*id = shared.NextArchiveID(*id)
	}
	return fmt.Errorf("sqlite: archive %s: no free id for %s after %d tries", a.name, e.Owner, maxIDTries)
}

func (a archiveStore) Get(ctx context.Context, owner string, id int64) (storage.ArchiveEntry, error) {
	e := storage.ArchiveEntry{ID: id, Owner: owner, When: storage.ArchiveIDTime(id)}
	if err := a.s.pointRow(ctx, qArchiveGet, owner, a.name, id).Scan(&e.With, &e.Value); err != nil {
		return storage.ArchiveEntry{}, mapErr(err)
	}
	e.Value = nonNil(e.Value)
	return e, nil
}

// Query reads the page (one entry more than the limit, to know whether it
// is the last in its direction) and, when asked, the count.
func (a archiveStore) Query(ctx context.Context, owner string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	lo, hi := shared.ArchiveIDRange(q)
	if hi == 0 {
		hi = math.MaxInt64
	}
	limit := -1
	if q.Limit > 0 {
		limit = q.Limit + 1
	}
	query, args := qArchivePage, []any{owner, a.name, lo, hi}
	switch {
	case q.With == "" && q.Last:
		query = qArchivePageLast
	case q.With != "" && !q.Last:
		query = qArchivePageWith
	case q.With != "" && q.Last:
		query = qArchivePageWithLast
	}
	if q.With != "" {
		args = append(args, q.With)
	}
	rows, err := a.s.query(ctx, query, append(args, limit)...)
	if err != nil {
		return storage.ArchivePage{}, mapErr(err)
	}
	defer rows.Close()
	page := storage.ArchivePage{Total: -1}
	for rows.Next() {
		e := storage.ArchiveEntry{Owner: owner}
		if err := rows.Scan(&e.ID, &e.With, &e.Value); err != nil {
			return storage.ArchivePage{}, mapErr(err)
		}
		e.When = storage.ArchiveIDTime(e.ID)
		e.Value = nonNil(e.Value)
		page.Entries = append(page.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return storage.ArchivePage{}, mapErr(err)
	}
	if q.Count {
		clo, chi := shared.ArchiveIDRange(storage.ArchiveQuery{Start: q.Start, End: q.End})
		if chi == 0 {
			chi = math.MaxInt64
		}
		var err error
		if q.With == "" {
			err = a.s.queryRow(ctx, qArchiveCount, owner, a.name, clo, chi).Scan(&page.Total)
		} else {
			err = a.s.queryRow(ctx, qArchiveCountWith, owner, a.name, clo, chi, q.With).Scan(&page.Total)
		}
		if err != nil {
			return storage.ArchivePage{}, mapErr(err)
		}
	}
	page.Complete = q.Limit <= 0 || len(page.Entries) <= q.Limit
	if !page.Complete {
		page.Entries = page.Entries[:q.Limit]
	}
	if q.Last {
		shared.Reverse(page.Entries)
	}
	return page, nil
}

func (a archiveStore) Update(ctx context.Context, owner string, id int64, value []byte) error {
	n, err := a.s.exec(ctx, qArchiveUpdate, nonNil(value), owner, a.name, id)
	if err == nil && n == 0 {
		return storage.ErrNotFound
	}
	return err
}

func (a archiveStore) Delete(ctx context.Context, owner string, id int64) error {
	n, err := a.s.exec(ctx, qArchiveDelete, owner, a.name, id)
	if err == nil && n == 0 {
		return storage.ErrNotFound
	}
	return err
}

func (a archiveStore) DeleteOwner(ctx context.Context, owner string) (int, error) {
	n, err := a.s.exec(ctx, qArchiveDeleteOwner, owner, a.name)
	return int(n), err
}

func (a archiveStore) DeleteBefore(ctx context.Context, owner string, before time.Time) (int, error) {
	var n int64
	var err error
	if owner == "" {
		n, err = a.s.exec(ctx, qArchiveExpire, a.name, storage.ArchiveIDAt(before))
	} else {
		n, err = a.s.exec(ctx, qArchiveDeleteBefore, owner, a.name, storage.ArchiveIDAt(before))
	}
	return int(n), err
}
