package sqlite

import (
	"context"
)

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// BlockList returns the owner's blocked JIDs, sorted.
func (s *Store) BlockList(ctx context.Context, owner string) ([]string, error) {
	rows, err := s.pointQuery(ctx, "SELECT jid FROM blocklist WHERE owner = ? ORDER BY jid", owner)
	if err != nil {
		return nil, mapErr(err)
	}
	return scanStrings(rows)
}

const (
	qBlock      = "INSERT INTO blocklist (owner, jid) VALUES (?, ?) ON CONFLICT DO NOTHING"
	qUnblockOne = "DELETE FROM blocklist WHERE owner = ? AND jid = ?"
)

// Block adds JIDs to the owner's list; duplicates are ignored.
func (s *Store) Block(ctx context.Context, owner string, jids []string) error {
	if len(jids) == 0 {
		return nil
	}
	return s.write(ctx, func(ctx context.Context, tx wtx) error {
		for _, j := range jids {
			if _, err := tx.ExecContext(ctx, qBlock, owner, j); err != nil {
				return mapErr(err)
			}
		}
		return nil
	})
}

// Unblock removes JIDs from the owner's list; an empty list removes all.
func (s *Store) Unblock(ctx context.Context, owner string, jids []string) error {
	if len(jids) == 0 {
		_, err := s.exec(ctx, "DELETE FROM blocklist WHERE owner = ?", owner)
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx wtx) error {
		for _, j := range jids {
			if _, err := tx.ExecContext(ctx, qUnblockOne, owner, j); err != nil {
				return mapErr(err)
			}
		}
		return nil
	})
}
