package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

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
