package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
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

// Insert adds every entry with one statement (one round trip, one
// commit); an entry whose ID collided is inserted again with the next ID,
// in the same transaction. A group-commit writer's batch goes over the
// writer lane's connections (storage.InWriterLane).
func (a archiveStore) Insert(ctx context.Context, es []storage.ArchiveEntry, ids []int64) error {
	pool := a.s.poolFor(ctx)
	return a.s.do(ctx, func(ctx context.Context) error {
		if len(es) == 1 {
			return a.insertOne(ctx, pool, es[0], &ids[0])
		}
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			owners := make([]string, len(es))
			withs := make([]string, len(es))
			values := make([][]byte, len(es))
			for i, e := range es {
				owners[i], withs[i], values[i] = e.Owner, e.With, nonNil(e.Value)
			}
			rows, err := tx.Query(ctx, qArchiveInsertBatch, a.name, owners, ids, withs, values)
			if err != nil {
				return err
			}
			type key struct {
				owner string
				id    int64
			}
			done := map[key]bool{}
			for rows.Next() {
				var k key
				if err := rows.Scan(&k.owner, &k.id); err != nil {
					rows.Close()
					return err
				}
				done[k] = true
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for i, e := range es {
				if !done[key{e.Owner, ids[i]}] {
					if err := a.insertOne(ctx, tx, e, &ids[i]); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (a archiveStore) insertOne(ctx context.Context, q execer, e storage.ArchiveEntry, id *int64) error {
	return shared.InsertArchiveEntry(a.name, e, id, func(id int64) (bool, error) {
		tag, err := q.Exec(ctx, qArchiveInsert, e.Owner, a.name, id, e.With, nonNil(e.Value))
		return tag.RowsAffected() == 1, err
	}, func(lo, hi int64) (int64, bool, error) {
		var top *int64
		if err := q.QueryRow(ctx, qArchiveHighest, e.Owner, a.name, lo, hi).Scan(&top); err != nil || top == nil {
			return 0, false, err
		}
		return *top, true, nil
	})
}

func (a archiveStore) Get(ctx context.Context, owner string, id int64) (storage.ArchiveEntry, error) {
	e := storage.ArchiveEntry{ID: id, Owner: owner, When: storage.ArchiveIDTime(id)}
	err := a.s.do(ctx, func(ctx context.Context) error {
		return a.s.pool.QueryRow(ctx, qArchiveGet, owner, a.name, id).Scan(&e.With, &e.Value)
	})
	if err != nil {
		return storage.ArchiveEntry{}, err
	}
	e.Value = nonNil(e.Value)
	return e, nil
}

// Page sends the page query and, when asked, the count in one batch (one
// round trip).
func (a archiveStore) Page(ctx context.Context, owner string, q storage.ArchiveQuery, lo, hi int64, limit int, clo, chi int64) ([]storage.ArchiveEntry, int, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	var out []storage.ArchiveEntry
	total := -1
	err := a.s.do(ctx, func(ctx context.Context) error {
		out = nil
		b := &pgx.Batch{}
		args := []any{owner, a.name, lo, hi}
		if q.With != "" {
			args = append(args, q.With)
		}
		b.Queue(shared.PageQuery(q, pageQueries), append(args, lim)...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var e storage.ArchiveEntry
				if err := rows.Scan(&e.ID, &e.With, &e.Value); err != nil {
					return err
				}
				out = append(out, e)
			}
			return rows.Err()
		})
		if q.Count {
			count, args := qArchiveCount, []any{owner, a.name, clo, chi}
			if q.With != "" {
				count, args = qArchiveCountWith, append(args, q.With)
			}
			b.Queue(count, args...).QueryRow(func(r pgx.Row) error { return r.Scan(&total) })
		}
		return a.s.pool.SendBatch(ctx, b).Close()
	})
	return out, total, err
}

func (a archiveStore) Update(ctx context.Context, owner string, id int64, value []byte) error {
	return a.s.execN(ctx, qArchiveUpdate, owner, a.name, id, nonNil(value))
}

func (a archiveStore) Delete(ctx context.Context, owner string, id int64) error {
	return a.s.execN(ctx, qArchiveDelete, owner, a.name, id)
}

func (a archiveStore) DeleteOwner(ctx context.Context, owner string) (int, error) {
	return a.s.execCount(ctx, qArchiveDeleteOwner, owner, a.name)
}

func (a archiveStore) DeleteBefore(ctx context.Context, owner string, before time.Time) (int, error) {
	if owner == "" {
		return a.s.execCount(ctx, qArchiveExpire, a.name, storage.ArchiveIDAt(before))
	}
	return a.s.execCount(ctx, qArchiveDeleteBefore, owner, a.name, storage.ArchiveIDAt(before))
}

// execCount runs a statement and returns the rows it affected.
func (s *Store) execCount(ctx context.Context, query string, args ...any) (int, error) {
	var n int64
	err := s.do(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, query, args...)
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}
