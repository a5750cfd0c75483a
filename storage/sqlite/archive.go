package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// AppendArchive adds a message to the owner's archive. An empty ID gets a
// generated one, a zero Stamped the current time; a duplicate ID in the same
// archive is storage.ErrExists.
func (s *Store) AppendArchive(ctx context.Context, m storage.ArchivedMessage) error {
	if m.Stamped.IsZero() {
		m.Stamped = shared.Now()
	}
	if m.ID == "" {
		m.ID = shared.ArchiveID(m.Stamped)
	}
	_, err := s.exec(ctx, `INSERT INTO archive (id, owner, with_jid, stanza, stamped) VALUES (?, ?, ?, ?, ?)`,
		m.ID, m.Owner, m.With, nonNil(m.Stanza), micro(m.Stamped))
	return err
}

// QueryArchive returns the owner's messages (only those with the with JID
// when it is not empty) stored after the message afterID, oldest first, at
// most limit (all when limit <= 0). An afterID not in the archive is
// storage.ErrNotFound.
func (s *Store) QueryArchive(ctx context.Context, owner, with, afterID string, limit int) ([]storage.ArchivedMessage, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var after int64
	if afterID != "" {
		err := s.queryRow(ctx, "SELECT seq FROM archive WHERE owner = ? AND id = ?", owner, afterID).Scan(&after)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, storage.ErrNotFound
		} else if err != nil {
			return nil, mapErr(err)
		}
	}
	if limit <= 0 {
		limit = -1
	}
	q := "SELECT id, with_jid, stanza, stamped FROM archive WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?"
	args := []any{owner, after, limit}
	if with != "" {
		q = "SELECT id, with_jid, stanza, stamped FROM archive WHERE owner = ? AND with_jid = ? AND seq > ? ORDER BY seq LIMIT ?"
		args = []any{owner, with, after, limit}
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []storage.ArchivedMessage
	for rows.Next() {
		m := storage.ArchivedMessage{Owner: owner}
		var at int64
		if err := rows.Scan(&m.ID, &m.With, &m.Stanza, &at); err != nil {
			return nil, mapErr(err)
		}
		m.Stamped = fromMicro(at)
		out = append(out, m)
	}
	return out, mapErr(rows.Err())
}
