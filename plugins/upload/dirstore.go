package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// dirStore (upload.store: directory) keeps each file's contents in a file
// of its own under upload.directory, which every node of the cluster
// mounts: DIR/<the ID's first two hex digits>/<ID>. An upload is written
// to DIR/tmp/<ID>.*.part, synced, and renamed into place once whole, so a
// node sees no file or all of it (rename is atomic within one
// filesystem, NFS included, and a reader opens a file only after its
// meta item says done, so no node caches its absence). Neither direction
// holds a file in memory.
type dirStore struct{ dir string }

func newDirStore(dir string) (*dirStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o750); err != nil {
		return nil, err
	}
	return &dirStore{dir: dir}, nil
}

// path is where file id's contents are; ids are checked (validID)
// before they reach it, so none climbs out of the directory.
func (s *dirStore) path(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("upload: %q is not a file ID", id)
	}
	return filepath.Join(s.dir, id[:2], id), nil
}

func (s *dirStore) create(_ context.Context, _, id string) (fileWriter, error) {
	final, err := s.path(id)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), id+".*.part")
	if err != nil {
		return nil, err
	}
	return &dirWriter{f: f, final: final}, nil
}

func (s *dirStore) open(_ context.Context, _, id string, _ int) (io.ReadSeekCloser, error) {
	path, err := s.path(id)
	if err != nil {
		return nil, err
	}
	return os.Open(path)
}

func (s *dirStore) remove(_ context.Context, _, id string) error {
	path, err := s.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// sweep removes temporary files nothing wrote to for age: an upload in
// progress writes a chunk at least every http.read_body_timeout.
func (s *dirStore) sweep(_ context.Context, age time.Duration) error {
	tmp := filepath.Join(s.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-age)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue // gone meanwhile (renamed into place), or still written
		}
		if err := os.Remove(filepath.Join(tmp, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

type dirWriter struct {
	f         *os.File
	final     string
	committed bool
}

func (w *dirWriter) write(chunk []byte) error {
	_, err := w.f.Write(chunk)
	return err
}

// commit syncs the file before it is renamed into place, so what another
// node opens after the rename is the whole file.
func (w *dirWriter) commit() error {
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(w.final), 0o750); err != nil {
		return err
	}
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		return err
	}
	w.committed = true
	return nil
}

func (w *dirWriter) abort() {
	_ = w.f.Close() // already closed after a commit
	if w.committed {
		_ = os.Remove(w.final)
		return
	}
	_ = os.Remove(w.f.Name())
}
