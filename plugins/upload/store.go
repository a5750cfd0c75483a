package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// cleanupTimeout bounds removing what a failed upload wrote, which runs
// after the request's context may have ended.
const cleanupTimeout = 30 * time.Second

func chunkKey(i int) string { return fmt.Sprintf("c%08d", i) }

// chunkStore (upload.store: database) keeps a file's contents in the map
// store beside its meta item, in the same collection, as chunks of
// chunkSize under chunkKey(0), chunkKey(1)…; every chunk is written under
// the owner's Limits, so user_quota is checked again by the store as the
// bytes arrive.
type chunkStore struct {
	files storage.Map
	limit storage.Limits
	log   *slog.Logger
}

func (s *chunkStore) create(ctx context.Context, owner, id string) (fileWriter, error) {
	return &chunkWriter{s: s, ctx: ctx, owner: owner, id: id}, nil
}

func (s *chunkStore) open(ctx context.Context, owner, id string, size int) (io.ReadSeekCloser, error) {
	return &chunkReader{ctx: ctx, s: s, owner: owner, id: id, size: int64(size), cur: -1}, nil
}

// remove does nothing: the chunks share the file's collection with its
// meta item, and Plugin.remove deletes the collection.
func (s *chunkStore) remove(context.Context, string, string) error { return nil }

// sweep does nothing: an unfinished upload's chunks go with its slot.
func (s *chunkStore) sweep(context.Context, time.Duration) error { return nil }

type chunkWriter struct {
	s         *chunkStore
	ctx       context.Context
	owner, id string
	n         int // chunks written
}

func (w *chunkWriter) write(chunk []byte) error {
	if _, err := w.s.files.Set(w.ctx, w.owner, w.id, chunkKey(w.n), chunk, w.s.limit); err != nil {
		return err
	}
	w.n++
	return nil
}

// commit has nothing to do: each chunk was committed as it was written,
// and the meta item marked done is what makes the file served.
func (w *chunkWriter) commit() error { return nil }

func (w *chunkWriter) abort() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cleanupTimeout)
	defer cancel()
	for i := 0; i < w.n; i++ {
		if err := w.s.files.Delete(ctx, w.owner, w.id, chunkKey(i)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			w.s.log.Warn("upload: removing a chunk of a failed upload", "id", w.id, "err", err)
		}
	}
}

// chunkReader reads a file's chunks as one stream that can seek (so
// http.ServeContent answers Range requests), holding one chunk at a time.
type chunkReader struct {
	ctx       context.Context
	s         *chunkStore
	owner, id string
	size, off int64
	cur       int // the chunk in buf, or -1
	buf       []byte
}

func (r *chunkReader) Read(b []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	i := int(r.off / chunkSize)
	if i != r.cur {
		it, err := r.s.files.Get(r.ctx, r.owner, r.id, chunkKey(i))
		if err != nil {
			r.s.log.Error("upload: reading a chunk", "id", r.id, "chunk", i, "err", err)
			return 0, err
		}
		r.buf, r.cur = it.Value, i
	}
	n := copy(b, r.buf[min(int(r.off-int64(i)*chunkSize), len(r.buf)):])
	if n == 0 {
		r.s.log.Error("upload: a chunk is shorter than the file's size says", "id", r.id, "chunk", i)
		return 0, io.ErrUnexpectedEOF
	}
	r.off += int64(n)
	return n, nil
}

func (r *chunkReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	}
	if offset < 0 {
		return 0, errors.New("upload: seek before the start of a file")
	}
	r.off = offset
	return offset, nil
}

func (r *chunkReader) Close() error { return nil }
