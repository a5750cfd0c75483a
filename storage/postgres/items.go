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
func (s *Store) KeyValue(name string) storage.KeyValue { return kvStore{items{s, name}} }

// Map opens a map store.
func (s *Store) Map(name string) storage.Map { return mapStore{items{s, name}} }

// items is one named store of store_items.
type items struct {
	s    *Store
	name string
}

func (it items) get(ctx context.Context, owner, coll, key string) (value []byte, version int64, err error) {
	err = it.s.do(ctx, func(ctx context.Context) error {
		return it.s.pool.QueryRow(ctx, qItemGet, owner, it.name, coll, key).Scan(&value, &version)
	})
	return nonNil(value), version, err
}

// set writes an item. With cas it writes only over version (0: only
// when absent) and fails with storage.ErrConflict otherwise. Without
// limits it is one statement; with them it locks the owner's store
// (a transaction-scoped advisory lock), counts, and writes and evicts in
// one transaction.
func (it items) set(ctx context.Context, owner, coll, key string, value []byte, lim storage.Limits, cas bool, version int64) (int64, error) {
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

func (it items) delete(ctx context.Context, owner, coll, key string) error {
	return it.s.execN(ctx, qItemDelete, owner, it.name, coll, key)
}

func (it items) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	return it.s.strings(ctx, query, args...)
}

type kvStore struct{ items }

func (kv kvStore) Get(ctx context.Context, owner, key string) (storage.KVEntry, error) {
	v, ver, err := kv.get(ctx, owner, "", key)
	if err != nil {
		return storage.KVEntry{}, err
	}
	return storage.KVEntry{Value: v, Version: ver}, nil
}

func (kv kvStore) Set(ctx context.Context, owner, key string, value []byte, lim storage.Limits) (int64, error) {
	return kv.set(ctx, owner, "", key, value, lim, false, 0)
}

func (kv kvStore) CompareAndSet(ctx context.Context, owner, key string, version int64, value []byte, lim storage.Limits) (int64, error) {
	return kv.set(ctx, owner, "", key, value, lim, true, version)
}

func (kv kvStore) Delete(ctx context.Context, owner, key string) error {
	return kv.delete(ctx, owner, "", key)
}

func (kv kvStore) Keys(ctx context.Context, owner string) ([]string, error) {
	return kv.strings(ctx, qItemKeys, owner, kv.name, "")
}

type mapStore struct{ items }

func (m mapStore) Get(ctx context.Context, owner, coll, key string) (storage.MapItem, error) {
	v, ver, err := m.get(ctx, owner, coll, key)
	if err != nil {
		return storage.MapItem{}, err
	}
	return storage.MapItem{Collection: coll, Key: key, Value: v, Version: ver}, nil
}

func (m mapStore) Set(ctx context.Context, owner, coll, key string, value []byte, lim storage.Limits) (int64, error) {
	return m.set(ctx, owner, coll, key, value, lim, false, 0)
}

func (m mapStore) Delete(ctx context.Context, owner, coll, key string) error {
	return m.delete(ctx, owner, coll, key)
}

func (m mapStore) DeleteCollection(ctx context.Context, owner, coll string) (int, error) {
	return m.s.execCount(ctx, qMapDeleteCollection, owner, m.name, coll)
}

func (m mapStore) List(ctx context.Context, owner, coll string, q storage.MapQuery) ([]storage.MapItem, error) {
	var lim any
	if q.Limit > 0 {
		lim = q.Limit
	}
	query := qMapList
	if q.Newest {
		query = qMapListNewest
	}
	var out []storage.MapItem
	err := m.s.do(ctx, func(ctx context.Context) error {
		rows, err := m.s.pool.Query(ctx, query, owner, m.name, coll, lim)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.MapItem, error) {
			it := storage.MapItem{Collection: coll}
			err := r.Scan(&it.Key, &it.Value, &it.Version)
			return it, err
		})
		return err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

func (m mapStore) Count(ctx context.Context, owner, coll string) (int, error) {
	var n int
	err := m.s.do(ctx, func(ctx context.Context) error {
		return m.s.pool.QueryRow(ctx, qMapCount, owner, m.name, coll).Scan(&n)
	})
	return n, err
}

func (m mapStore) Collections(ctx context.Context, owner string) ([]string, error) {
	return m.strings(ctx, qMapCollections, owner, m.name)
}
