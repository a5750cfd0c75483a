package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// GetVCard returns the owner's vCard; storage.ErrNotFound.
func (s *Store) GetVCard(ctx context.Context, owner string) ([]byte, error) {
	return s.getBlob(ctx, qGetVCard, owner)
}

// SetVCard stores (replaces) the owner's vCard.
func (s *Store) SetVCard(ctx context.Context, owner string, vcard []byte) error {
	return s.exec(ctx, `INSERT INTO vcards (owner, vcard) VALUES ($1, $2)
		ON CONFLICT (owner) DO UPDATE SET vcard = excluded.vcard`, owner, nonNil(vcard))
}

// GetPrivate returns a private XML fragment; storage.ErrNotFound.
func (s *Store) GetPrivate(ctx context.Context, owner, key string) ([]byte, error) {
	return s.getBlob(ctx, qGetPrivate, owner, key)
}

// SetPrivate stores (replaces) a private XML fragment.
func (s *Store) SetPrivate(ctx context.Context, owner, key string, data []byte) error {
	return s.exec(ctx, `INSERT INTO private_xml (owner, key, data) VALUES ($1, $2, $3)
		ON CONFLICT (owner, key) DO UPDATE SET data = excluded.data`, owner, key, nonNil(data))
}

func (s *Store) getBlob(ctx context.Context, query string, args ...any) ([]byte, error) {
	var b []byte
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, query, args...).Scan(&b)
	})
	if err != nil {
		return nil, err
	}
	return nonNil(b), nil
}

func (s *Store) exec(ctx context.Context, query string, args ...any) error {
	return s.do(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, query, args...)
		return err
	})
}

// execN runs a statement and fails with "no rows" when it touched none.
func (s *Store) execN(ctx context.Context, query string, args ...any) error {
	return s.do(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, query, args...)
		if err == nil && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (s *Store) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	var out []string
	err := s.do(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// BlockList returns the owner's blocked JIDs, sorted.
func (s *Store) BlockList(ctx context.Context, owner string) ([]string, error) {
	return s.strings(ctx, qBlockList, owner)
}

// Block adds JIDs to the owner's list in one statement; duplicates are
// ignored.
func (s *Store) Block(ctx context.Context, owner string, jids []string) error {
	if len(jids) == 0 {
		return nil
	}
	return s.exec(ctx, `INSERT INTO blocklist (owner, jid)
		SELECT $1, j FROM unnest($2::text[]) AS j ON CONFLICT DO NOTHING`, owner, jids)
}

// Unblock removes JIDs from the owner's list; an empty list removes all.
func (s *Store) Unblock(ctx context.Context, owner string, jids []string) error {
	if len(jids) == 0 {
		return s.exec(ctx, "DELETE FROM blocklist WHERE owner = $1", owner)
	}
	return s.exec(ctx, "DELETE FROM blocklist WHERE owner = $1 AND jid = ANY($2::text[])", owner, jids)
}

// GetLast returns when the owner last went offline and the status then;
// storage.ErrNotFound when never.
func (s *Store) GetLast(ctx context.Context, owner string) (time.Time, string, error) {
	var at time.Time
	var status string
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, qGetLast, owner).Scan(&at, &status)
	})
	if err != nil {
		return time.Time{}, "", err
	}
	return at.UTC(), status, nil
}

// SetLast records when the owner went offline.
func (s *Store) SetLast(ctx context.Context, owner string, at time.Time, status string) error {
	return s.exec(ctx, `INSERT INTO last_activity (owner, at, status) VALUES ($1, $2, $3)
		ON CONFLICT (owner) DO UPDATE SET at = excluded.at, status = excluded.status`, owner, at, status)
}
