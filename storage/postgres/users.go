package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// CreateUser adds an account; storage.ErrExists when the name is taken.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	if u.Username == "" {
		return errors.New("postgres: empty username")
	}
	at := u.CreatedAt
	if at.IsZero() {
		at = shared.Now()
	}
	c := u.Credentials
	return s.do(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO users (username,
			sha1_salt, sha1_iter, sha1_stored, sha1_server,
			sha256_salt, sha256_iter, sha256_stored, sha256_server, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			u.Username,
			c.SHA1.Salt, c.SHA1.Iterations, c.SHA1.StoredKey, c.SHA1.ServerKey,
			c.SHA256.Salt, c.SHA256.Iterations, c.SHA256.StoredKey, c.SHA256.ServerKey, at)
		return err
	})
}

// GetUser returns an account with one query (one round trip: with the
// SCRAM exchange, login needs no other); storage.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, username string) (storage.User, error) {
	u := storage.User{Username: username}
	c := &u.Credentials
	var locked *time.Time
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, qGetUser, username).Scan(
			&c.SHA1.Salt, &c.SHA1.Iterations, &c.SHA1.StoredKey, &c.SHA1.ServerKey,
			&c.SHA256.Salt, &c.SHA256.Iterations, &c.SHA256.StoredKey, &c.SHA256.ServerKey, &u.CreatedAt, &locked)
	})
	if err != nil {
		return storage.User{}, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	if locked != nil {
		u.LockedAt = locked.UTC()
	}
	return u, nil
}

// SetLocked locks (at) or unlocks (zero at) an account;
// storage.ErrNotFound.
func (s *Store) SetLocked(ctx context.Context, username string, at time.Time) error {
	var lockedAt *time.Time
	if !at.IsZero() {
		lockedAt = &at
	}
	return s.do(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `UPDATE users SET locked_at = CASE
			WHEN $1::timestamptz IS NULL THEN NULL ELSE coalesce(locked_at, $1) END
			WHERE username = $2`, lockedAt, username)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// SetCredentials replaces an account's credentials; storage.ErrNotFound.
func (s *Store) SetCredentials(ctx context.Context, username string, c storage.Credentials) error {
	return s.do(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `UPDATE users SET
			sha1_salt = $1, sha1_iter = $2, sha1_stored = $3, sha1_server = $4,
			sha256_salt = $5, sha256_iter = $6, sha256_stored = $7, sha256_server = $8
			WHERE username = $9`,
			c.SHA1.Salt, c.SHA1.Iterations, c.SHA1.StoredKey, c.SHA1.ServerKey,
			c.SHA256.Salt, c.SHA256.Iterations, c.SHA256.StoredKey, c.SHA256.ServerKey, username)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

// perUser lists the tables keyed by owner that DeleteUser clears.
// The tables of schema version 1 that version 2 moved onto the module
// stores (vcards, private_xml, last_activity, archive) stay in the list
// while they exist: a node of the previous release may still write them
// during a rolling upgrade.
var perUser = []string{"roster_items", "roster_versions", "offline", "blocklist",
	"store_items", "archive_entries", "vcards", "private_xml", "last_activity", "archive"}

// DeleteUser removes an account and everything stored for it, whether keyed
// by the username or by its bare JID, in one transaction sent as one batch.
// It returns storage.ErrNotFound when there was no account (after clearing
// any leftovers).
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	if username == "" {
		return errors.New("postgres: empty username")
	}
	lo, hi := shared.OwnerRange(username)
	return s.do(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			for _, t := range perUser {
				b.Queue(fmt.Sprintf("DELETE FROM %s WHERE owner = $1 OR (owner >= $2 AND owner < $3)", t), username, lo, hi)
			}
			b.Queue("DELETE FROM users WHERE username = $1", username)
			br := tx.SendBatch(ctx, b)
			var last int64
			for range len(perUser) + 1 {
				tag, err := br.Exec()
				if err != nil {
					br.Close()
					return err
				}
				last = tag.RowsAffected()
			}
			if err := br.Close(); err != nil {
				return err
			}
			if last == 0 {
				// Commit the cleanup, then report the missing account.
				if err := tx.Commit(ctx); err != nil {
					return err
				}
				return pgx.ErrNoRows
			}
			return nil
		})
	})
}

// ListUsers returns usernames containing the substring (case-sensitive),
// sorted bytewise, at most limit (all when limit <= 0) after skipping
// offset.
func (s *Store) ListUsers(ctx context.Context, contains string, limit, offset int) ([]string, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	return s.strings(ctx, `SELECT username FROM users
			WHERE $1 = '' OR strpos(username, $1) > 0
			ORDER BY username LIMIT $2 OFFSET $3`, contains, lim, max(offset, 0))
}

// CountUsers returns the number of accounts.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n)
	})
	return n, err
}
