package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

const rosterCols = `contact, name, subscription, pending_out, pending_in, groups_json, in_roster`

type rowScanner interface{ Scan(dest ...any) error }

func scanRosterItem(r rowScanner, owner string) (storage.RosterItem, error) {
	it := storage.RosterItem{Owner: owner}
	var groups string
	if err := r.Scan(&it.Contact, &it.Name, &it.Subscription, &it.PendingOut, &it.PendingIn, &groups, &it.InRoster); err != nil {
		return it, err
	}
	return it, decodeGroups(&it, groups)
}

func decodeGroups(it *storage.RosterItem, groups string) error {
	if groups != "" && groups != "[]" {
		if err := json.Unmarshal([]byte(groups), &it.Groups); err != nil {
			return fmt.Errorf("sqlite: roster groups of %s/%s: %w", it.Owner, it.Contact, err)
		}
	}
	return nil
}

const (
	qRosterItem       = "SELECT " + rosterCols + " FROM roster_items WHERE owner = ? AND contact = ?"
	qRosterVersion    = "SELECT version FROM roster_versions WHERE owner = ?"
	qDeleteRosterItem = "DELETE FROM roster_items WHERE owner = ? AND contact = ?"
	qUpsertRosterItem = `INSERT INTO roster_items (owner, ` + rosterCols + `)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (owner, contact) DO UPDATE SET name = excluded.name,
				subscription = excluded.subscription, pending_out = excluded.pending_out,
				pending_in = excluded.pending_in, groups_json = excluded.groups_json,
				in_roster = excluded.in_roster`
	qBumpRosterVersion = `INSERT INTO roster_versions (owner, version) VALUES (?, 1)
			ON CONFLICT (owner) DO UPDATE SET version = version + 1 RETURNING version`
	// qRoster reads the version (a first row with kind 0, when there is
	// one) and the items (kind 1, by contact) in one statement, so they
	// come from one snapshot without a transaction.
	qRoster = `SELECT 0 AS kind, version, '' AS contact, '', 'none', 0, 0, '[]', 0
			FROM roster_versions WHERE owner = ?
		UNION ALL
		SELECT 1, 0, ` + rosterCols + ` FROM roster_items WHERE owner = ?
		ORDER BY kind, contact`
	// qRosterHasOffline is qRoster with a last row (kind 2) telling
	// whether offline messages wait.
	qRosterHasOffline = `SELECT 0 AS kind, version, '' AS contact, '', 'none', 0, 0, '[]', 0
			FROM roster_versions WHERE owner = ?
		UNION ALL
		SELECT 1, 0, ` + rosterCols + ` FROM roster_items WHERE owner = ?
		UNION ALL
		SELECT 2, EXISTS (SELECT 1 FROM offline WHERE owner = ?), '', '', 'none', 0, 0, '[]', 0
		ORDER BY kind, contact`
)

// GetRoster returns every item of the owner (including items with InRoster
// false) sorted by contact, and the roster version, in one statement.
func (s *Store) GetRoster(ctx context.Context, owner string) ([]storage.RosterItem, int64, error) {
	items, ver, _, err := s.getRoster(ctx, owner, qRoster, owner, owner)
	return items, ver, err
}

// GetRosterReadOffline is GetRoster and ReadOfflineUpTo, what a user's
// initial presence needs: the roster read also tells whether anything
// waits offline, so the usual login with nothing waiting is one statement.
func (s *Store) GetRosterReadOffline(ctx context.Context, owner string, skip []int64, maxBytes int) ([]storage.RosterItem, int64, []storage.OfflineMessage, bool, error) {
	items, ver, has, err := s.getRoster(ctx, owner, qRosterHasOffline, owner, owner, owner)
	if err != nil || !has {
		return items, ver, nil, false, err
	}
	msgs, more, err := s.ReadOfflineUpTo(ctx, owner, skip, maxBytes)
	if err != nil {
		return nil, 0, nil, false, err
	}
	return items, ver, msgs, more, nil
}

// getRoster runs qRoster or qRosterHasOffline; has is true when the
// latter found offline messages.
func (s *Store) getRoster(ctx context.Context, owner, query string, args ...any) (items []storage.RosterItem, ver int64, has bool, err error) {
	rows, err := s.pointQuery(ctx, query, args...)
	if err != nil {
		return nil, 0, false, mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, v int64
		it := storage.RosterItem{Owner: owner}
		var groups string
		if err := rows.Scan(&kind, &v, &it.Contact, &it.Name, &it.Subscription, &it.PendingOut, &it.PendingIn, &groups, &it.InRoster); err != nil {
			return nil, 0, false, mapErr(err)
		}
		switch kind {
		case 0:
			ver = v
			continue
		case 2:
			has = v != 0
			continue
		}
		if err := decodeGroups(&it, groups); err != nil {
			return nil, 0, false, err
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, false, mapErr(err)
	}
	return items, ver, has, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func rosterVersion(ctx context.Context, q querier, owner string) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, qRosterVersion, owner).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, mapErr(err)
}

// GetRosterItem returns one item; storage.ErrNotFound when absent.
func (s *Store) GetRosterItem(ctx context.Context, owner, contact string) (storage.RosterItem, error) {
	row := s.pointRow(ctx, qRosterItem, owner, contact)
	it, err := scanRosterItem(row, owner)
	if err != nil {
		return storage.RosterItem{}, mapErr(err)
	}
	return it, nil
}

// UpdateRosterItem reads the item, lets fn decide and writes the result in
// one IMMEDIATE transaction on the writer connection, so concurrent updates
// serialize. The version is bumped only when something changed. On removal
// the returned item is the one that was removed.
func (s *Store) UpdateRosterItem(ctx context.Context, owner, contact string, quota storage.RosterQuota, fn storage.RosterUpdate) (item storage.RosterItem, removed, changed bool, version int64, err error) {
	err = s.write(ctx, func(ctx context.Context, tx wtx) error {
		cur, err := scanRosterItem(tx.QueryRowContext(ctx, qRosterItem, owner, contact), owner)
		exists := true
		if errors.Is(err, sql.ErrNoRows) {
			exists = false
			cur = storage.RosterItem{Owner: owner, Contact: contact, Subscription: storage.SubNone}
		} else if err != nil {
			return mapErr(err)
		}
		version, err = rosterVersion(ctx, tx, owner)
		if err != nil {
			return err
		}
		upd, remove, err := fn(cur, exists)
		if err != nil {
			return err
		}
		if remove {
			item = cur
			if !exists {
				return nil
			}
			if _, err := tx.ExecContext(ctx, qDeleteRosterItem, owner, contact); err != nil {
				return mapErr(err)
			}
			removed, changed = true, true
		} else {
			upd, err = shared.NormalizeRosterItem(upd, owner, contact)
			if err != nil {
				return err
			}
			item = upd
			if exists && shared.EqualRosterItem(cur, upd) {
				return nil
			}
			if err := checkRosterQuota(ctx, tx, owner, quota, cur, exists, upd); err != nil {
				return err
			}
			groups := "[]"
			if len(upd.Groups) > 0 {
				b, err := json.Marshal(upd.Groups)
				if err != nil {
					return err
				}
				groups = string(b)
			}
			if _, err := tx.ExecContext(ctx, qUpsertRosterItem,
				owner, contact, upd.Name, upd.Subscription, b2i(upd.PendingOut), b2i(upd.PendingIn), groups, b2i(upd.InRoster)); err != nil {
				return mapErr(err)
			}
			changed = true
		}
		return mapErr(tx.QueryRowContext(ctx, qBumpRosterVersion, owner).Scan(&version))
	})
	if err != nil {
		return storage.RosterItem{}, false, false, 0, err
	}
	return item, removed, changed, version, nil
}

const (
	qCountRosterRows    = "SELECT count(*) FROM (SELECT 1 FROM roster_items WHERE owner = ? LIMIT ?)"
	qCountRosterPending = "SELECT count(*) FROM (SELECT 1 FROM roster_items WHERE owner = ? AND pending_in LIMIT ?)"
)

// checkRosterQuota checks a write against the quota inside its
// transaction; rows are counted only when one is created or a pending
// request added.
func checkRosterQuota(ctx context.Context, tx wtx, owner string, q storage.RosterQuota, cur storage.RosterItem, exists bool, upd storage.RosterItem) error {
	checks, err := shared.CheckRosterWrite(q, cur, exists, upd)
	if err != nil {
		return err
	}
	count := func(query string, limit int, full error) error {
		var n int
		if err := tx.QueryRowContext(ctx, query, owner, limit).Scan(&n); err != nil {
			return mapErr(err)
		}
		if n >= limit {
			return full
		}
		return nil
	}
	if checks.Items {
		if err := count(qCountRosterRows, q.Items, storage.ErrRosterFull); err != nil {
			return err
		}
	}
	if checks.PendingIn {
		return count(qCountRosterPending, q.PendingIn, storage.ErrTooManyPending)
	}
	return nil
}

// RosterVersion returns the owner's roster version, 0 when none.
func (s *Store) RosterVersion(ctx context.Context, owner string) (int64, error) {
	var v int64
	err := s.pointRow(ctx, qRosterVersion, owner).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, mapErr(err)
}

// Subscribers returns the contacts with subscription from or both, sorted.
func (s *Store) Subscribers(ctx context.Context, owner string) ([]string, error) {
	rows, err := s.pointQuery(ctx, `SELECT contact FROM roster_items
		WHERE owner = ? AND subscription IN ('from', 'both') ORDER BY contact`, owner)
	if err != nil {
		return nil, mapErr(err)
	}
	return scanStrings(rows)
}
