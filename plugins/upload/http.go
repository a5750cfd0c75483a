package upload

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aviary-im/aviary/storage"
)

func escapeName(name string) string { return url.PathEscape(name) }

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
	if !ok || !validID(id) {
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

// put stores the body of a slot's upload as it arrives; on any failure
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
	if err := p.room(ctx, owner, id, m.Size); err != nil {
		p.refusePut(w, "checking the quotas", err)
		return
	}
	// No node may take the slot for expired while the body arrives.
	slotEnd := m.Expires
	if end := p.Now().Add(time.Duration(m.Size/chunkSize+2) * p.readTimeout); end.After(m.Expires) {
		m.Expires = end
		if err := p.record(ctx, slotsIndex, owner, id, end); err != nil {
			p.fail(w, "moving a slot's end", err)
			return
		}
		if err := p.setMeta(ctx, owner, id, m); err != nil {
			p.fail(w, "moving a slot's end", err)
			return
		}
	}
	fw, err := p.store.create(ctx, owner, id)
	if err != nil {
		p.fail(w, "creating a file", err)
		return
	}
	if err := p.receive(ctx, w, r, fw, m.Size); err != nil {
		fw.abort()
		m.Expires = slotEnd
		if err := p.setMeta(context.WithoutCancel(ctx), owner, id, m); err != nil {
			p.log.Warn("upload: moving a slot's end back", "id", id, "err", err)
		}
		p.refusePut(w, "storing a file", err)
		return
	}
	m.Done = true
	if err := p.setMeta(ctx, owner, id, m); err != nil {
		fw.abort()
		p.fail(w, "finishing an upload", err)
		return
	}
	// The account may have been deleted while the body arrived: then its
	// files were removed and their reservations given back, this one's
	// too, and what was just written must go as well.
	if _, err := p.files.Get(ctx, p.ledgerOwner(), owner, id); errors.Is(err, storage.ErrNotFound) {
		if err := p.remove(context.WithoutCancel(ctx), owner, id); err != nil {
			p.log.Warn("upload: removing a file whose slot went away", "id", id, "err", err)
		}
		http.Error(w, "the slot was removed during the upload", http.StatusGone)
		return
	}
	if err := p.record(ctx, filesIndex, owner, id, p.Now()); err != nil {
		// The file is kept; only expire_after will not see it.
		p.log.Warn("upload: recording a file for expiry", "id", id, "err", err)
	}
	w.WriteHeader(http.StatusCreated)
}

// errEarlyEnd is a body shorter than its Content-Length.
var errEarlyEnd = errors.New("the upload ended early")

// receive copies size bytes of the body to fw chunk by chunk and commits
// them.
func (p *Plugin) receive(ctx context.Context, w http.ResponseWriter, r *http.Request, fw fileWriter, size int) error {
	body := http.MaxBytesReader(w, r.Body, int64(size))
	rc := http.NewResponseController(w)
	buf := make([]byte, min(chunkSize, size))
	for written := 0; written < size; {
		// Each chunk has http.read_body_timeout to arrive (at least
		// 256 KiB in 30s by default), however long the whole file takes.
		_ = rc.SetReadDeadline(time.Now().Add(p.readTimeout))
		n, err := io.ReadFull(body, buf[:min(chunkSize, size-written)])
		if err != nil {
			return errEarlyEnd
		}
		if err := fw.write(buf[:n]); err != nil {
			return err
		}
		written += n
	}
	return fw.commit()
}

// room checks, before a PUT stores anything, that the file still fits:
// the owner's files and live slots (this one among them) within
// user_quota, which slot requests made at once may have passed together,
// and the domain within domain_quota.
func (p *Plugin) room(ctx context.Context, owner, id string, size int) error {
	used, err := p.used(ctx, owner)
	if err != nil {
		return err
	}
	if used > p.cfg.UserQuota {
		return quotaError{"upload quota", int64(p.cfg.UserQuota), int64(used)}
	}
	return p.holdReservation(ctx, owner, id, size)
}

// refusePut answers a PUT that failed: 413 with the limit for a quota,
// 400 for a short body, else 500.
func (p *Plugin) refusePut(w http.ResponseWriter, what string, err error) {
	var qe quotaError
	switch {
	case errors.As(err, &qe):
		http.Error(w, qe.Error(), http.StatusRequestEntityTooLarge)
	case errors.Is(err, storage.ErrQuotaExceeded): // the store's check, at a chunk
		http.Error(w, fmt.Sprintf("upload quota of %d bytes reached", p.cfg.UserQuota), http.StatusRequestEntityTooLarge)
	case errors.Is(err, errEarlyEnd):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		p.fail(w, what, err)
	}
}

// get serves a file, whole or the ranges asked for.
func (p *Plugin) get(ctx context.Context, w http.ResponseWriter, r *http.Request, owner, id string, m meta) {
	if !m.Done {
		http.NotFound(w, r)
		return
	}
	f, err := p.store.open(ctx, owner, id, m.Size)
	if errors.Is(err, fs.ErrNotExist) { // removed since its meta item was read
		http.NotFound(w, r)
		return
	}
	if err != nil {
		p.fail(w, "opening a file", err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", m.Type)
	h.Set("X-Content-Type-Options", "nosniff")
	// A file is shown by the client, never run by the browser as a page
	// of the listener's origin.
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": m.Name}))
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", `"`+id+`"`) // a file never changes
	http.ServeContent(w, r, m.Name, m.Created, &paced{ReadSeeker: f, rc: http.NewResponseController(w), timeout: p.writeTimeout})
}

// paced gives the response a new write deadline (http.write_timeout) for
// every chunkSize bytes read, as the upload has a read deadline per
// chunk: a download lasts as long as it keeps moving.
type paced struct {
	io.ReadSeeker
	rc      *http.ResponseController
	timeout time.Duration
	left    int // bytes until the next deadline
}

func (pr *paced) Read(b []byte) (int, error) {
	if pr.left <= 0 {
		_ = pr.rc.SetWriteDeadline(time.Now().Add(pr.timeout))
		pr.left = chunkSize
	}
	n, err := pr.ReadSeeker.Read(b)
	pr.left -= n
	return n, err
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
