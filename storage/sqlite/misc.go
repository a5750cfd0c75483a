package sqlite

import (
	"context"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// GetVCard returns the owner's vCard; storage.ErrNotFound.
func (s *Store) GetVCard(ctx context.Context, owner string) ([]byte, error) {
	return s.getBlob(ctx, "SELECT vcard FROM vcards WHERE owner = ?", owner)
}

// SetVCard stores (replaces) the owner's vCard.
func (s *Store) SetVCard(ctx context.Context, owner string, vcard []byte) error {
	_, err := s.exec(ctx, `INSERT INTO vcards (owner, vcard) VALUES (?, ?)
		ON CONFLICT (owner) DO UPDATE SET vcard = excluded.vcard`, owner, nonNil(vcard))
	return err
}

// GetPrivate returns a private XML fragment; storage.ErrNotFound.
func (s *Store) GetPrivate(ctx context.Context, owner, key string) ([]byte, error) {
	return s.getBlob(ctx, "SELECT data FROM private_xml WHERE owner = ? AND key = ?", owner, key)
}

// SetPrivate stores (replaces) a private XML fragment.
func (s *Store) SetPrivate(ctx context.Context, owner, key string, data []byte) error {
	_, err := s.exec(ctx, `INSERT INTO private_xml (owner, key, data) VALUES (?, ?, ?)
		ON CONFLICT (owner, key) DO UPDATE SET data = excluded.data`, owner, key, nonNil(data))
	return err
}

func (s *Store) getBlob(ctx context.Context, query string, args ...any) ([]byte, error) {
	var b []byte
	if err := s.pointRow(ctx, query, args...).Scan(&b); err != nil {
		return nil, mapErr(err)
	}
	return nonNil(b), nil
}

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

// GetLast returns when the owner last went offline and the status then;
// storage.ErrNotFound when never.
func (s *Store) GetLast(ctx context.Context, owner string) (time.Time, string, error) {
	var at int64
	var status string
	err := s.pointRow(ctx, "SELECT at, status FROM last_activity WHERE owner = ?", owner).Scan(&at, &status)
	if err != nil {
		return time.Time{}, "", mapErr(err)
	}
	return fromMicro(at), status, nil
}

// SetLast records when the owner went offline.
func (s *Store) SetLast(ctx context.Context, owner string, at time.Time, status string) error {
	_, err := s.exec(ctx, `INSERT INTO last_activity (owner, at, status) VALUES (?, ?, ?)
		ON CONFLICT (owner) DO UPDATE SET at = excluded.at, status = excluded.status`, owner, micro(at), status)
	return err
}

var _ storage.LastActivity = (*Store)(nil)
