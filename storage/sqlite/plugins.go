package sqlite

import (
	"context"

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
	_, err := s.exec(ctx, `INSERT INTO plugins (name, version, checksum, artifact, enabled, uploaded)
		VALUES (?, ?, ?, ?, ?, ?)`,
		p.Name, p.Version, p.Checksum, nonNil(p.Artifact), b2i(p.Enabled), micro(p.Uploaded))
	return err
}

// GetPlugin returns one plugin version with its artifact;
// storage.ErrNotFound.
func (s *Store) GetPlugin(ctx context.Context, name, version string) (storage.PluginRecord, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	p := storage.PluginRecord{Name: name, Version: version}
	var at int64
	err := s.queryRow(ctx, `SELECT checksum, artifact, enabled, uploaded FROM plugins
		WHERE name = ? AND version = ?`, name, version).Scan(&p.Checksum, &p.Artifact, &p.Enabled, &at)
	if err != nil {
		return storage.PluginRecord{}, mapErr(err)
	}
	p.Uploaded = fromMicro(at)
	p.Artifact = nonNil(p.Artifact)
	return p, nil
}

// ListPlugins returns every version of every plugin without artifacts,
// sorted by name and version.
func (s *Store) ListPlugins(ctx context.Context) ([]storage.PluginRecord, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.query(ctx, "SELECT name, version, checksum, enabled, uploaded FROM plugins ORDER BY name, version")
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []storage.PluginRecord
	for rows.Next() {
		var p storage.PluginRecord
		var at int64
		if err := rows.Scan(&p.Name, &p.Version, &p.Checksum, &p.Enabled, &at); err != nil {
			return nil, mapErr(err)
		}
		p.Uploaded = fromMicro(at)
		out = append(out, p)
	}
	return out, mapErr(rows.Err())
}

// SetPluginEnabled flags a plugin version; storage.ErrNotFound.
func (s *Store) SetPluginEnabled(ctx context.Context, name, version string, enabled bool) error {
	n, err := s.exec(ctx, "UPDATE plugins SET enabled = ? WHERE name = ? AND version = ?", b2i(enabled), name, version)
	if err == nil && n == 0 {
		return storage.ErrNotFound
	}
	return err
}

// DeletePlugin removes a plugin version; storage.ErrNotFound.
func (s *Store) DeletePlugin(ctx context.Context, name, version string) error {
	n, err := s.exec(ctx, "DELETE FROM plugins WHERE name = ? AND version = ?", name, version)
	if err == nil && n == 0 {
		return storage.ErrNotFound
	}
	return err
}

// SetNodePlugin records what a node runs, replacing its earlier report for
// that plugin. A zero Updated is stamped with the current time.
func (s *Store) SetNodePlugin(ctx context.Context, np storage.NodePlugin) error {
	if np.Updated.IsZero() {
		np.Updated = shared.Now()
	}
	_, err := s.exec(ctx, `INSERT INTO node_plugins (node, name, version, state, error, updated) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (node, name) DO UPDATE SET version = excluded.version,
		state = excluded.state, error = excluded.error, updated = excluded.updated`,
		np.Node, np.Name, np.Version, np.State, np.Error, micro(np.Updated))
	return err
}

// ListNodePlugins returns every node's reports, sorted by node and name.
func (s *Store) ListNodePlugins(ctx context.Context) ([]storage.NodePlugin, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.query(ctx, "SELECT node, name, version, state, error, updated FROM node_plugins ORDER BY node, name")
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []storage.NodePlugin
	for rows.Next() {
		var np storage.NodePlugin
		var at int64
		if err := rows.Scan(&np.Node, &np.Name, &np.Version, &np.State, &np.Error, &at); err != nil {
			return nil, mapErr(err)
		}
		np.Updated = fromMicro(at)
		out = append(out, np)
	}
	return out, mapErr(rows.Err())
}
