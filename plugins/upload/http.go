package upload

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/storage"
)

func escapeName(name string) string { return url.PathEscape(name) }

func chunkKey(i int) string { return fmt.Sprintf("c%08d", i) }

// ServeHTTP takes the PUT of a slot and serves GET and HEAD of a file,
// with the CORS headers browsers need (http.cors_origins).
func (p *Plugin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.setCORS(w, r)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !p.on {
		http.NotFound(w, r)
		return
	}
	id, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, Prefix), "/")
	if !ok || len(id) != 32 {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	ownerEntry, err := p.index.Get(ctx, p.domain, id)
	if errors.Is(err, storage.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		p.fail(w, "looking a file up", err)
		return
	}
	owner := string(ownerEntry.Value)
	m, err := p.meta(ctx, owner, id)
	if errors.Is(err, storage.ErrNotFound) { // the account, and its files, are gone
		http.NotFound(w, r)
		return
	}
	if err != nil {
		p.fail(w, "reading a file's description", err)
		return
	}
	switch r.Method {
	case http.MethodPut:
		p.put(ctx, w, r, owner, id, m)
	case http.MethodGet, http.MethodHead:
		p.get(ctx, w, r, owner, id, m)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (p *Plugin) setCORS(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	h := w.Header()
	switch {
	case slices.Contains(p.cors, "*"):
		h.Set("Access-Control-Allow-Origin", "*")
	case origin != "" && slices.Contains(p.cors, origin):
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	default:
		return
	}
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	h.Set("Access-Control-Max-Age", "86400")
}

func (p *Plugin) fail(w http.ResponseWriter, what string, err error) {
	p.log.Error("upload: "+what, "err", err)
	http.Error(w, "internal server error", http.StatusInternalServerError)
}

// put stores the body of a slot's upload chunk by chunk; on any failure
// what was stored is removed and the slot stays usable until it expires.
func (p *Plugin) put(ctx context.Context, w http.ResponseWriter, r *http.Request, owner, id string, m meta) {
	if !hmac.Equal([]byte(r.URL.Query().Get("token")), []byte(p.token(id))) {
		http.Error(w, "this URL does not authorize an upload", http.StatusForbidden)
		return
	}
	if m.Done {
		http.Error(w, "the file is already uploaded", http.StatusConflict)
		return
	}
	if p.Now().After(m.Expires) {
		http.Error(w, "the slot has expired", http.StatusForbidden)
		return
	}
	if r.ContentLength != int64(m.Size) {
		http.Error(w, fmt.Sprintf("Content-Length must be the slot's size, %d", m.Size), http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !sameType(ct, m.Type) {
		http.Error(w, "Content-Type must be the slot's, "+m.Type, http.StatusBadRequest)
		return
	}
	lim := storage.Limits{Bytes: int64(p.cfg.UserQuota) + metaSlack}
	body := http.MaxBytesReader(w, r.Body, int64(m.Size))
	rc := http.NewResponseController(w)
	buf := make([]byte, chunkSize)
	written := 0
	for i := 0; written < m.Size; i++ {
		// Each chunk has http.read_body_timeout to arrive (at least
		// 256 KiB in 30s by default), however long the whole file takes.
		_ = rc.SetReadDeadline(time.Now().Add(p.readTimeout))
		n, err := io.ReadFull(body, buf[:min(chunkSize, m.Size-written)])
		if err != nil {
			p.dropChunks(ctx, owner, id, i)
			http.Error(w, "the upload ended early", http.StatusBadRequest)
			return
		}
		if _, err := p.files.Set(ctx, owner, id, chunkKey(i), buf[:n], lim); err != nil {
			p.dropChunks(ctx, owner, id, i)
			if errors.Is(err, storage.ErrQuotaExceeded) {
				http.Error(w, fmt.Sprintf("upload quota of %d bytes reached", p.cfg.UserQuota), http.StatusRequestEntityTooLarge)
				return
			}
			p.fail(w, "storing a chunk", err)
			return
		}
		written += n
	}
	m.Done = true
	b, _ := json.Marshal(m)
	if _, err := p.files.Set(ctx, owner, id, metaKey, b, storage.Limits{}); err != nil {
		p.dropChunks(ctx, owner, id, (m.Size+chunkSize-1)/chunkSize)
		p.fail(w, "finishing an upload", err)
		return
	}
	if err := p.record(ctx, filesIndex, owner, id, p.Now()); err != nil {
		// The file is kept; only expire_after will not see it.
		p.log.Warn("upload: recording a file for expiry", "id", id, "err", err)
	}
	w.WriteHeader(http.StatusCreated)
}

// dropChunks removes chunks 0..n of an upload that failed.
func (p *Plugin) dropChunks(ctx context.Context, owner, id string, n int) {
	for i := 0; i <= n; i++ {
		if err := p.files.Delete(ctx, owner, id, chunkKey(i)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			p.log.Warn("upload: removing a chunk of a failed upload", "id", id, "err", err)
		}
	}
}

// get writes a file chunk by chunk.
func (p *Plugin) get(ctx context.Context, w http.ResponseWriter, r *http.Request, owner, id string, m meta) {
	if !m.Done {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.Type)
	h.Set("Content-Length", strconv.Itoa(m.Size))
	h.Set("X-Content-Type-Options", "nosniff")
	// A file is shown by the client, never run by the browser as a page
	// of the listener's origin.
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": m.Name}))
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	for i, sent := 0, 0; sent < m.Size; i++ {
		_ = rc.SetWriteDeadline(time.Now().Add(p.writeTimeout)) // per chunk, as for the upload
		it, err := p.files.Get(ctx, owner, id, chunkKey(i))
		if err != nil {
			p.log.Error("upload: reading a chunk", "id", id, "chunk", i, "err", err)
			return // the client sees a short body
		}
		if _, err := w.Write(it.Value); err != nil {
			return
		}
		sent += len(it.Value)
	}
}

// sameType compares content types without their parameters.
func sameType(a, b string) bool {
	ma, _, errA := mime.ParseMediaType(a)
	mb, _, errB := mime.ParseMediaType(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	return ma == mb
}
