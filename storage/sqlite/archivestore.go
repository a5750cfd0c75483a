package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

const (
	qArchiveInsert = `INSERT INTO archive_entries (owner, store, id, with_jid, value)
	VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	qArchiveHighest = `SELECT max(id) FROM archive_entries WHERE owner = ? AND store = ? AND id >= ? AND id < ?`
	qArchiveGet     = `SELECT with_jid, value FROM archive_entries WHERE owner = ? AND store = ? AND id = ?`
	qArchivePage    = `SELECT id, with_jid, value FROM archive_entries
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

// Archive opens an archive store.
func (s *Store) Archive(name string) storage.Archive {
	return shared.ArchiveStore(archiveStore{s, name})
}

type archiveStore struct {
	s    *Store
	name string
}

var pageQueries = [4]string{qArchivePage, qArchivePageLast, qArchivePageWith, qArchivePageWithLast}

// Insert adds every entry in one write transaction (one commit).
func (a archiveStore) Insert(ctx context.Context, es []storage.ArchiveEntry, ids []int64) error {
	return a.s.write(ctx, func(ctx context.Context, tx wtx) error {
		for i, e := range es {
			err := shared.InsertArchiveEntry(a.name, e, &ids[i], func(id int64) (bool, error) {
				res, err := tx.ExecContext(ctx, qArchiveInsert, e.Owner, a.name, id, e.With, nonNil(e.Value))
				if err != nil {
					return false, mapErr(err)
				}
				n, err := res.RowsAffected()
				return n == 1, mapErr(err)
			}, func(lo, hi int64) (int64, bool, error) {
				var top sql.NullInt64
				if err := tx.QueryRowContext(ctx, qArchiveHighest, e.Owner, a.name, lo, hi).Scan(&top); err != nil {
					return 0, false, mapErr(err)
				}
				return top.Int64, top.Valid, nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (a archiveStore) Get(ctx context.Context, owner string, id int64) (storage.ArchiveEntry, error) {
	e := storage.ArchiveEntry{ID: id, Owner: owner, When: storage.ArchiveIDTime(id)}
	if err := a.s.pointRow(ctx, qArchiveGet, owner, a.name, id).Scan(&e.With, &e.Value); err != nil {
		return storage.ArchiveEntry{}, mapErr(err)
	}
	e.Value = nonNil(e.Value)
	return e, nil
}

// Page reads the page and, when asked, the count.
func (a archiveStore) Page(ctx context.Context, owner string, q storage.ArchiveQuery, lo, hi int64, limit int, clo, chi int64) ([]storage.ArchiveEntry, int, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	args := []any{owner, a.name, lo, hi}
	if q.With != "" {
		args = append(args, q.With)
	}
	rows, err := a.s.query(ctx, shared.PageQuery(q, pageQueries), append(args, limit)...)
	if err != nil {
		return nil, 0, mapErr(err)
	}
	defer rows.Close()
	var out []storage.ArchiveEntry
	for rows.Next() {
		var e storage.ArchiveEntry
		if err := rows.Scan(&e.ID, &e.With, &e.Value); err != nil {
			return nil, 0, mapErr(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, mapErr(err)
	}
	total := -1
	if q.Count {
		count, args := qArchiveCount, []any{owner, a.name, clo, chi}
		if q.With != "" {
			count, args = qArchiveCountWith, append(args, q.With)
		}
		if err := a.s.queryRow(ctx, count, args...).Scan(&total); err != nil {
			return nil, 0, mapErr(err)
		}
	}
	return out, total, nil
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
