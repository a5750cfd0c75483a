package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// maxIDTries bounds the retries of an append whose ID collided (another
// node picked the same one for the same owner in the same microsecond).
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

// AppendBatch inserts every entry with one statement (one round trip, one
// commit). An entry whose ID collided is inserted again with the next ID,
// in the same transaction.
func (a archiveStore) AppendBatch(ctx context.Context, es []storage.ArchiveEntry) ([]int64, error) {
	if len(es) == 0 {
		return nil, nil
	}
	for _, e := range es {
		if e.Owner == "" {
			return nil, errors.New("postgres: archive entry without owner")
		}
	}
	ids := shared.NewArchiveIDs(es)
	err := a.s.do(ctx, func(ctx context.Context) error {
		if len(es) == 1 {
			return a.appendOne(ctx, a.s.pool, es[0], &ids[0])
		}
		return pgx.BeginFunc(ctx, a.s.pool, func(tx pgx.Tx) error {
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
					if err := a.appendOne(ctx, tx, e, &ids[i]); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// appendOne inserts one entry, moving to the next ID while it collides.
func (a archiveStore) appendOne(ctx context.Context, q execer, e storage.ArchiveEntry, id *int64) error {
	for range maxIDTries {
		tag, err := q.Exec(ctx, qArchiveInsert, e.Owner, a.name, *id, e.With, nonNil(e.Value))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		*id = shared.NextArchiveID(*id)
	}
	return fmt.Errorf("postgres: archive %s: no free id for %s after %d tries", a.name, e.Owner, maxIDTries)
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

// Query runs the page query, and the count when asked, in one round trip.
// It fetches one entry more than the limit to know whether the page is
// the last in its direction.
func (a archiveStore) Query(ctx context.Context, owner string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	lo, hi := shared.ArchiveIDRange(q)
	if hi == 0 {
		hi = math.MaxInt64
	}
	var lim any
	if q.Limit > 0 {
		lim = q.Limit + 1
	}
	page := storage.ArchivePage{Total: -1}
	err := a.s.do(ctx, func(ctx context.Context) error {
		page.Entries = nil
		b := &pgx.Batch{}
		pageArgs := []any{owner, a.name, lo, hi}
		query := qArchivePage
		switch {
		case q.With == "" && q.Last:
			query = qArchivePageLast
		case q.With != "" && !q.Last:
			query = qArchivePageWith
		case q.With != "" && q.Last:
			query = qArchivePageWithLast
		}
		if q.With != "" {
			pageArgs = append(pageArgs, q.With)
		}
		pageArgs = append(pageArgs, lim)
		b.Queue(query, pageArgs...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				e := storage.ArchiveEntry{Owner: owner}
				if err := rows.Scan(&e.ID, &e.With, &e.Value); err != nil {
					return err
				}
				e.When = storage.ArchiveIDTime(e.ID)
				page.Entries = append(page.Entries, e)
			}
			return rows.Err()
		})
		if q.Count {
			clo, chi := shared.ArchiveIDRange(storage.ArchiveQuery{Start: q.Start, End: q.End})
			if chi == 0 {
				chi = math.MaxInt64
			}
			if q.With == "" {
				b.Queue(qArchiveCount, owner, a.name, clo, chi).QueryRow(func(r pgx.Row) error { return r.Scan(&page.Total) })
			} else {
				b.Queue(qArchiveCountWith, owner, a.name, clo, chi, q.With).QueryRow(func(r pgx.Row) error { return r.Scan(&page.Total) })
			}
		}
		return a.s.pool.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return storage.ArchivePage{}, err
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
