package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// AppendArchive adds a message to the owner's archive. An empty ID gets a
// generated one, a zero Stamped the current time; a duplicate ID in the
// same archive is storage.ErrExists.
func (s *Store) AppendArchive(ctx context.Context, m storage.ArchivedMessage) error {
	if m.Stamped.IsZero() {
		m.Stamped = shared.Now()
	}
	if m.ID == "" {
		m.ID = shared.ArchiveID(m.Stamped)
	}
	return s.exec(ctx, `INSERT INTO archive (id, owner, with_jid, stanza, stamped) VALUES ($1, $2, $3, $4, $5)`,
		m.ID, m.Owner, m.With, nonNil(m.Stanza), m.Stamped)
}

// QueryArchive returns the owner's messages (only those with the with JID
// when it is not empty) stored after the message afterID, oldest first, at
// most limit (all when limit <= 0). An afterID not in the archive is
// storage.ErrNotFound.
func (s *Store) QueryArchive(ctx context.Context, owner, with, afterID string, limit int) ([]storage.ArchivedMessage, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	var out []storage.ArchivedMessage
	err := s.do(ctx, func(ctx context.Context) error {
		var after int64
		if afterID != "" {
			if err := s.pool.QueryRow(ctx, qArchiveAfter, owner, afterID).Scan(&after); err != nil {
				return err
			}
		}
		var rows pgx.Rows
		var err error
		if with == "" {
			rows, err = s.pool.Query(ctx, qArchive, owner, after, lim)
		} else {
			rows, err = s.pool.Query(ctx, qArchiveWith, owner, with, after, lim)
		}
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.ArchivedMessage, error) {
			m := storage.ArchivedMessage{Owner: owner}
			err := r.Scan(&m.ID, &m.With, &m.Stanza, &m.Stamped)
			m.Stamped = m.Stamped.UTC()
			return m, err
		})
		return err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}
