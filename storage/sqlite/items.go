package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// The key/value and map stores share the table store_items: a key/value
// store is a map whose one collection is "". Every write goes through the
// one writer connection, so a limited write's count and write cannot
// interleave with another's.

const (
	qItemGet = `SELECT value, version FROM store_items
	WHERE owner = ? AND store = ? AND coll = ? AND key = ?`
	// INSERT OR REPLACE gives the row a new rowid, the next AUTOINCREMENT
	// value: the new version.
	qItemReplace = `INSERT OR REPLACE INTO store_items (owner, store, coll, key, value)
	VALUES (?, ?, ?, ?, ?) RETURNING version`
	qItemUsage = `SELECT count(*), coalesce(sum(length(value)), 0) FROM store_items
	WHERE owner = ? AND store = ? AND NOT (coll = ? AND key = ?)`
	qItemEvictable = `SELECT key, length(value) FROM store_items
	WHERE owner = ? AND store = ? AND coll = ? AND key <> ?
	ORDER BY version DESC LIMIT -1 OFFSET ?`
	qItemDelete     = `DELETE FROM store_items WHERE owner = ? AND store = ? AND coll = ? AND key = ?`
	qItemKeys       = `SELECT key FROM store_items WHERE owner = ? AND store = ? AND coll = ? ORDER BY key`
	qMapList        = `SELECT key, value, version FROM store_items WHERE owner = ? AND store = ? AND coll = ? ORDER BY version LIMIT ?`
	qMapListNewest  = `SELECT key, value, version FROM store_items WHERE owner = ? AND store = ? AND coll = ? ORDER BY version DESC LIMIT ?`
	qMapCount       = `SELECT count(*) FROM store_items WHERE owner = ? AND store = ? AND coll = ?`
	qMapCollections = `SELECT DISTINCT coll FROM store_items WHERE owner = ? AND store = ? ORDER BY coll`
	qMapDeleteColl  = `DELETE FROM store_items WHERE owner = ? AND store = ? AND coll = ?`
)

// KeyValue opens a key/value store.
func (s *Store) KeyValue(name string) storage.KeyValue { return shared.KeyValue(items{s, name}) }

// Map opens a map store.
func (s *Store) Map(name string) storage.Map { return shared.Map(items{s, name}) }

// items is one named store of store_items.
type items struct {
	s    *Store
	name string
}

func (it items) Get(ctx context.Context, owner, coll, key string) ([]byte, int64, error) {
	var v []byte
	var ver int64
	if err := it.s.pointRow(ctx, qItemGet, owner, it.name, coll, key).Scan(&v, &ver); err != nil {
		return nil, 0, mapErr(err)
	}
	return nonNil(v), ver, nil
}

// Set writes an item. A plain write without limits is one statement; the
// others read, check and write in one write transaction.
func (it items) Set(ctx context.Context, owner, coll, key string, value []byte, lim storage.Limits, cas bool, version int64) (int64, error) {
	value = nonNil(value)
	var out int64
	if !cas && !shared.Limited(lim) {
		ctx, cancel := bound(ctx)
		defer cancel()
		st, err := it.s.wst.prepare(ctx, qItemReplace)
		if err != nil {
			return 0, mapErr(err)
		}
		err = st.QueryRowContext(ctx, owner, it.name, coll, key, value).Scan(&out)
		return out, mapErr(err)
	}
	err := it.s.write(ctx, func(ctx context.Context, tx wtx) error {
		if cas {
			var cur int64
			err := tx.QueryRowContext(ctx, qItemGet, owner, it.name, coll, key).Scan(new([]byte), &cur)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return mapErr(err)
			}
			if cur != version {
				return storage.ErrConflict
			}
		}
		var evict []string
		if shared.Limited(lim) {
			var n int
			var bytes int64
			if err := tx.QueryRowContext(ctx, qItemUsage, owner, it.name, coll, key).Scan(&n, &bytes); err != nil {
				return mapErr(err)
			}
			if lim.Max > 0 {
				rows, err := tx.QueryContext(ctx, qItemEvictable, owner, it.name, coll, key, lim.Max-1)
				if err != nil {
					return mapErr(err)
				}
				for rows.Next() {
					var k string
					var size int64
					if err := rows.Scan(&k, &size); err != nil {
						rows.Close()
						return mapErr(err)
					}
					evict = append(evict, k)
					n--
					bytes -= size
				}
				if err := rows.Close(); err != nil {
					return mapErr(err)
				}
			}
			if err := shared.CheckQuota(lim, n, bytes, len(value)); err != nil {
				return err
			}
		}
		if err := tx.QueryRowContext(ctx, qItemReplace, owner, it.name, coll, key, value).Scan(&out); err != nil {
			return mapErr(err)
		}
		for _, k := range evict {
			if _, err := tx.ExecContext(ctx, qItemDelete, owner, it.name, coll, k); err != nil {
				return mapErr(err)
			}
		}
		return nil
	})
	return out, err
}

func (it items) Delete(ctx context.Context, owner, coll, key string) error {
	n, err := it.s.exec(ctx, qItemDelete, owner, it.name, coll, key)
	if err == nil && n == 0 {
		return storage.ErrNotFound
	}
	return err
}

func (it items) Keys(ctx context.Context, owner, coll string) ([]string, error) {
	rows, err := it.s.pointQuery(ctx, qItemKeys, owner, it.name, coll)
	if err != nil {
		return nil, mapErr(err)
	}
	return scanStrings(rows)
}

func (it items) DeleteCollection(ctx context.Context, owner, coll string) (int, error) {
	n, err := it.s.exec(ctx, qMapDeleteColl, owner, it.name, coll)
	return int(n), err
}

func (it items) List(ctx context.Context, owner, coll string, q storage.MapQuery) ([]storage.MapItem, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	query := qMapList
	if q.Newest {
		query = qMapListNewest
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	rows, err := it.s.query(ctx, query, owner, it.name, coll, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []storage.MapItem
	for rows.Next() {
		item := storage.MapItem{Collection: coll}
		if err := rows.Scan(&item.Key, &item.Value, &item.Version); err != nil {
			return nil, mapErr(err)
		}
		item.Value = nonNil(item.Value)
		out = append(out, item)
	}
	return out, mapErr(rows.Err())
}

func (it items) Count(ctx context.Context, owner, coll string) (int, error) {
	var n int
	err := it.s.pointRow(ctx, qMapCount, owner, it.name, coll).Scan(&n)
	return n, mapErr(err)
}

func (it items) Collections(ctx context.Context, owner string) ([]string, error) {
	rows, err := it.s.pointQuery(ctx, qMapCollections, owner, it.name)
	if err != nil {
		return nil, mapErr(err)
	}
	return scanStrings(rows)
}
