package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// CreateUser adds an account; storage.ErrExists when the name is taken.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	if u.Username == "" {
		return errors.New("sqlite: empty username")
	}
	at := u.CreatedAt
	if at.IsZero() {
		at = shared.Now()
	}
	c := u.Credentials
	_, err := s.exec(ctx, `INSERT INTO users (username,
		sha1_salt, sha1_iter, sha1_stored, sha1_server,
		sha256_salt, sha256_iter, sha256_stored, sha256_server, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.Username,
		c.SHA1.Salt, c.SHA1.Iterations, c.SHA1.StoredKey, c.SHA1.ServerKey,
		c.SHA256.Salt, c.SHA256.Iterations, c.SHA256.StoredKey, c.SHA256.ServerKey,
		micro(at))
	return err
}

// GetUser returns an account in one query; storage.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, username string) (storage.User, error) {
	u := storage.User{Username: username}
	c := &u.Credentials
	var at int64
	var locked sql.NullInt64
	err := s.pointRow(ctx, `SELECT
		sha1_salt, sha1_iter, sha1_stored, sha1_server,
		sha256_salt, sha256_iter, sha256_stored, sha256_server, created_at, locked_at
		FROM users WHERE username = ?`, username).Scan(
		&c.SHA1.Salt, &c.SHA1.Iterations, &c.SHA1.StoredKey, &c.SHA1.ServerKey,
		&c.SHA256.Salt, &c.SHA256.Iterations, &c.SHA256.StoredKey, &c.SHA256.ServerKey, &at, &locked)
	if err != nil {
		return storage.User{}, mapErr(err)
	}
	u.CreatedAt = fromMicro(at)
	if locked.Valid {
		u.LockedAt = fromMicro(locked.Int64)
	}
	return u, nil
}

// SetLocked locks (at) or unlocks (zero at) an account;
// storage.ErrNotFound.
func (s *Store) SetLocked(ctx context.Context, username string, at time.Time) error {
	var locked sql.NullInt64
	if !at.IsZero() {
		locked = sql.NullInt64{Int64: micro(at), Valid: true}
	}
	n, err := s.exec(ctx, `UPDATE users SET locked_at = CASE
		WHEN ? IS NULL THEN NULL ELSE coalesce(locked_at, ?) END
		WHERE username = ?`, locked, locked, username)
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// SetCredentials replaces an account's credentials; storage.ErrNotFound.
func (s *Store) SetCredentials(ctx context.Context, username string, c storage.Credentials) error {
	n, err := s.exec(ctx, `UPDATE users SET
		sha1_salt = ?, sha1_iter = ?, sha1_stored = ?, sha1_server = ?,
		sha256_salt = ?, sha256_iter = ?, sha256_stored = ?, sha256_server = ?
		WHERE username = ?`,
		c.SHA1.Salt, c.SHA1.Iterations, c.SHA1.StoredKey, c.SHA1.ServerKey,
		c.SHA256.Salt, c.SHA256.Iterations, c.SHA256.StoredKey, c.SHA256.ServerKey,
		username)
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// perUser lists the tables keyed by owner that DeleteUser clears.
// The tables of schema version 1 that version 2 moved onto the module
// stores stay in the list while they exist.
var perUser = []string{"roster_items", "roster_versions", "offline", "blocklist",
	"store_items", "archive_entries", "vcards", "private_xml", "last_activity", "archive"}

const qDeleteUser = "DELETE FROM users WHERE username = ?"

// deletePerUser is the statement clearing one of the perUser tables.
func deletePerUser(table string) string {
	return fmt.Sprintf("DELETE FROM %s WHERE owner = ? OR (owner >= ? AND owner < ?)", table)
}

// DeleteUser removes an account and everything stored for it, whether keyed
// by the username or by its bare JID, in one transaction. It returns
// storage.ErrNotFound when there was no account (after clearing any
// leftovers).
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	if username == "" {
		return errors.New("sqlite: empty username")
	}
	lo, hi := shared.OwnerRange(username)
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx wtx) error {
		for _, t := range perUser {
			if _, err := tx.ExecContext(ctx, deletePerUser(t), username, lo, hi); err != nil {
				return mapErr(err)
			}
		}
		res, err := tx.ExecContext(ctx, qDeleteUser, username)
		if err != nil {
			return mapErr(err)
		}
		n, err = res.RowsAffected()
		return mapErr(err)
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// ListUsers returns usernames containing the substring (case-sensitive),
// sorted, at most limit (all when limit <= 0) after skipping offset.
func (s *Store) ListUsers(ctx context.Context, contains string, limit, offset int) ([]string, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	if limit <= 0 {
		limit = -1
	}
	offset = max(offset, 0)
	rows, err := s.query(ctx, `SELECT username FROM users
		WHERE ? = '' OR instr(username, ?) > 0
		ORDER BY username LIMIT ? OFFSET ?`, contains, contains, limit, offset)
	if err != nil {
		return nil, mapErr(err)
	}
	return scanStrings(rows)
}

// CountUsers returns the number of accounts.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var n int
	err := s.queryRow(ctx, "SELECT count(*) FROM users").Scan(&n)
	return n, mapErr(err)
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, mapErr(err)
		}
		out = append(out, v)
	}
	return out, mapErr(rows.Err())
}
