package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/internal/shared"
)

// PutPlugin adds a plugin version; storage.ErrExists when that name and
// version is already there (it is left as it was). A zero Uploaded is
// stamped with the current time.
func (s *Store) PutPlugin(ctx context.Context, p storage.PluginRecord) error {
	if p.Uploaded.IsZero() {
		p.Uploaded = shared.Now()
	}
	return s.exec(ctx, `INSERT INTO plugins (name, version, checksum, artifact, enabled, uploaded)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		p.Name, p.Version, p.Checksum, nonNil(p.Artifact), p.Enabled, p.Uploaded)
}

// GetPlugin returns one plugin version with its artifact;
// storage.ErrNotFound.
func (s *Store) GetPlugin(ctx context.Context, name, version string) (storage.PluginRecord, error) {
	p := storage.PluginRecord{Name: name, Version: version}
	err := s.do(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT checksum, artifact, enabled, uploaded FROM plugins
			WHERE name = $1 AND version = $2`, name, version).Scan(&p.Checksum, &p.Artifact, &p.Enabled, &p.Uploaded)
	})
	if err != nil {
		return storage.PluginRecord{}, err
	}
	p.Uploaded = p.Uploaded.UTC()
	p.Artifact = nonNil(p.Artifact)
	return p, nil
}

// ListPlugins returns every version of every plugin without artifacts,
// sorted by name and version.
func (s *Store) ListPlugins(ctx context.Context) ([]storage.PluginRecord, error) {
	var out []storage.PluginRecord
	err := s.do(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, "SELECT name, version, checksum, enabled, uploaded FROM plugins ORDER BY name, version")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.PluginRecord, error) {
			var p storage.PluginRecord
			err := r.Scan(&p.Name, &p.Version, &p.Checksum, &p.Enabled, &p.Uploaded)
			p.Uploaded = p.Uploaded.UTC()
			return p, err
		})
		return err
	})
	return out, err
}

// SetPluginEnabled flags a plugin version; storage.ErrNotFound.
func (s *Store) SetPluginEnabled(ctx context.Context, name, version string, enabled bool) error {
	return s.execN(ctx, "UPDATE plugins SET enabled = $1 WHERE name = $2 AND version = $3", enabled, name, version)
}

// DeletePlugin removes a plugin version; storage.ErrNotFound.
func (s *Store) DeletePlugin(ctx context.Context, name, version string) error {
	return s.execN(ctx, "DELETE FROM plugins WHERE name = $1 AND version = $2", name, version)
}

// SetNodePlugin records what a node runs, replacing its earlier report for
// that plugin. A zero Updated is stamped with the current time.
func (s *Store) SetNodePlugin(ctx context.Context, np storage.NodePlugin) error {
	if np.Updated.IsZero() {
		np.Updated = shared.Now()
	}
	return s.exec(ctx, `INSERT INTO node_plugins (node, name, version, state, error, updated) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (node, name) DO UPDATE SET version = excluded.version,
		state = excluded.state, error = excluded.error, updated = excluded.updated`,
		np.Node, np.Name, np.Version, np.State, np.Error, np.Updated)
}

// ListNodePlugins returns every node's reports, sorted by node and name.
func (s *Store) ListNodePlugins(ctx context.Context) ([]storage.NodePlugin, error) {
	var out []storage.NodePlugin
	err := s.do(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, "SELECT node, name, version, state, error, updated FROM node_plugins ORDER BY node, name")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.NodePlugin, error) {
			var np storage.NodePlugin
			err := r.Scan(&np.Node, &np.Name, &np.Version, &np.State, &np.Error, &np.Updated)
			np.Updated = np.Updated.UTC()
			return np, err
		})
		return err
	})
	return out, err
}
