package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// The key/value and map stores share the table store_items: a key/value
// store is a map whose one collection is "".

// KeyValue opens a key/value store.
func (s *Store) KeyValue(name string) storage.KeyValue { return shared.KeyValue(items{s, name}) }

// Map opens a map store.
func (s *Store) Map(name string) storage.Map { return shared.Map(items{s, name}) }

// items is one named store of store_items.
type items struct {
	s    *Store
	name string
}

func (it items) Get(ctx context.Context, owner, coll, key string) (value []byte, version int64, err error) {
	err = it.s.do(ctx, func(ctx context.Context) error {
		return it.s.pool.QueryRow(ctx, qItemGet, owner, it.name, coll, key).Scan(&value, &version)
	})
	return nonNil(value), version, err
}

// Set writes an item. Without limits it is one statement; with them it
// locks the owner's store (a transaction-scoped advisory lock), counts,
// and writes and evicts in one transaction.
func (it items) Set(ctx context.Context, owner, coll, key string, value []byte, lim storage.Limits, cas bool, version int64) (int64, error) {
	value = nonNil(value)
	var out int64
	write := func(ctx context.Context, q querier) error {
		var row pgx.Row
		switch {
		case !cas:
			row = q.QueryRow(ctx, qItemUpsert, owner, it.name, coll, key, value)
		case version == 0:
			row = q.QueryRow(ctx, qItemInsertNew, owner, it.name, coll, key, value)
		default:
			row = q.QueryRow(ctx, qItemCAS, owner, it.name, coll, key, value, version)
		}
		err := row.Scan(&out)
		if cas && errors.Is(err, pgx.ErrNoRows) {
			return storage.ErrConflict
		}
		return err
	}
	err := it.s.do(ctx, func(ctx context.Context) error {
		if !shared.Limited(lim) {
			return write(ctx, it.s.pool)
		}
		return pgx.BeginFunc(ctx, it.s.pool, func(tx pgx.Tx) error {
			var n int
			var bytes int64
			var evictKeys []string
			var evictN int
			var evictBytes int64
			b := &pgx.Batch{}
			b.Queue(qItemLock, owner, it.name)
			b.Queue(qItemUsage, owner, it.name, coll, key).QueryRow(func(r pgx.Row) error { return r.Scan(&n, &bytes) })
			if lim.Max > 0 {
				b.Queue(qItemEvictable, owner, it.name, coll, key, lim.Max-1).Query(func(rows pgx.Rows) error {
					for rows.Next() {
						var k string
						var size int64
						if err := rows.Scan(&k, &size); err != nil {
							return err
						}
						evictKeys = append(evictKeys, k)
						evictN++
						evictBytes += size
					}
					return rows.Err()
				})
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
			if err := shared.CheckQuota(lim, n-evictN, bytes-evictBytes, len(value)); err != nil {
				return err
			}
			if err := write(ctx, tx); err != nil {
				return err
			}
			if len(evictKeys) > 0 {
				_, err := tx.Exec(ctx, qItemDeleteKeys, owner, it.name, coll, evictKeys)
				return err
			}
			return nil
		})
	})
	return out, err
}

// querier is the pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (it items) Delete(ctx context.Context, owner, coll, key string) error {
	return it.s.execN(ctx, qItemDelete, owner, it.name, coll, key)
}

func (it items) Keys(ctx context.Context, owner, coll string) ([]string, error) {
	return it.s.strings(ctx, qItemKeys, owner, it.name, coll)
}

func (it items) DeleteCollection(ctx context.Context, owner, coll string) (int, error) {
	return it.s.execCount(ctx, qMapDeleteCollection, owner, it.name, coll)
}

func (it items) List(ctx context.Context, owner, coll string, q storage.MapQuery) ([]storage.MapItem, error) {
	var lim any
	if q.Limit > 0 {
		lim = q.Limit
	}
	query := qMapList
	if q.Newest {
		query = qMapListNewest
	}
	var out []storage.MapItem
	err := it.s.do(ctx, func(ctx context.Context) error {
		rows, err := it.s.pool.Query(ctx, query, owner, it.name, coll, lim)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.MapItem, error) {
			it := storage.MapItem{Collection: coll}
			err := r.Scan(&it.Key, &it.Value, &it.Version)
			it.Value = nonNil(it.Value)
			return it, err
		})
		return err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (it items) Count(ctx context.Context, owner, coll string) (int, error) {
	var n int
	err := it.s.do(ctx, func(ctx context.Context) error {
		return it.s.pool.QueryRow(ctx, qMapCount, owner, it.name, coll).Scan(&n)
	})
	return n, err
}

func (it items) Collections(ctx context.Context, owner string) ([]string, error) {
	return it.s.strings(ctx, qMapCollections, owner, it.name)
}
