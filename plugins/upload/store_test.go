package upload_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
)

// TestStoresAcrossNodes runs both stores on two nodes over one
// PostgreSQL database (and, for the directory store, one directory): a
// file PUT through one node is served whole, by range and to HEAD by the
// other; expiry by one node and the deletion of an account on the other
// remove the contents.
func TestStoresAcrossNodes(t *testing.T) {
	for _, store := range []string{"database", "directory"} {
		t.Run(store, func(t *testing.T) {
			dir := ""
			if store == "directory" {
				dir = t.TempDir()
			}
			a, b := twoNodes(t, sharedStore(t), func(c *conf.UploadConfig) {
				c.Store, c.Directory, c.ExpireAfter = store, dir, 24*time.Hour
			}, nil)
			ctx := context.Background()
			// contentsOf is the contents the directory keeps for a slot's
			// file (nil without one); the database store keeps none there.
			contentsOf := func(rawURL string) []byte {
				if dir == "" {
					return nil
				}
				id := fileID(t, rawURL)
				data, _ := os.ReadFile(filepath.Join(dir, id[:2], id))
				return data
			}

			data := make([]byte, 600_000) // three chunks of the database store
			_, _ = rand.Read(data)
			put, get := a.mustSlot("romeo", "photo.bin", len(data))
			if w := a.do("PUT", put, data, "Content-Type", "text/plain"); w.Code != http.StatusCreated {
				t.Fatalf("PUT through a: %d %s", w.Code, w.Body)
			}
			if dir != "" {
				if got := contentsOf(put); !bytes.Equal(got, data) {
					t.Errorf("the directory holds %d bytes of the file", len(got))
				}
				if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
					t.Errorf("temporary files left: %v", left)
				}
			}

			w := b.do("GET", get, nil)
			if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), data) {
				t.Fatalf("GET through b: %d, %d bytes", w.Code, w.Body.Len())
			}
			if h := w.Header(); h.Get("Accept-Ranges") != "bytes" || h.Get("Content-Type") != "text/plain" || h.Get("ETag") == "" {
				t.Errorf("GET headers %v", h)
			}
			// A range across the first chunk boundary (256 KiB).
			w = b.do("GET", get, nil, "Range", "bytes=262000-262999")
			if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), data[262000:263000]) ||
				w.Header().Get("Content-Range") != "bytes 262000-262999/600000" {
				t.Errorf("range: %d %v, %d bytes", w.Code, w.Header(), w.Body.Len())
			}
			w = b.do("GET", get, nil, "Range", "bytes=-10")
			if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), data[len(data)-10:]) {
				t.Errorf("suffix range: %d, %q", w.Code, w.Body)
			}
			if w := b.do("HEAD", get, nil); w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "600000" {
				t.Errorf("HEAD: %d %v, %d bytes", w.Code, w.Header(), w.Body.Len())
			}

			// Expiry by b removes the file a took.
			a.clock.add(25 * time.Hour)
			if n, err := b.p.Expire(ctx); err != nil || n != 1 {
				t.Fatalf("expire: %d %v", n, err)
			}
			if w := a.do("GET", get, nil); w.Code != http.StatusNotFound {
				t.Errorf("GET after expiry: %d", w.Code)
			}
			if dir != "" && contentsOf(put) != nil {
				t.Error("the expired file is still in the directory")
			}

			// Deleting an account on a removes the file b took.
			put, get = b.mustSlot("juliet", "note.txt", 5)
			if w := b.do("PUT", put, []byte("hello")); w.Code != http.StatusCreated {
				t.Fatalf("PUT through b: %d %s", w.Code, w.Body)
			}
			if dir != "" && string(contentsOf(put)) != "hello" {
				t.Fatal("juliet's file is not in the directory")
			}
			if err := a.h.Users().DeleteUser(ctx, "juliet"); err != nil {
				t.Fatal(err)
			}
			if w := b.do("GET", get, nil); w.Code != http.StatusNotFound {
				t.Errorf("GET of a deleted account's file: %d", w.Code)
			}
			if dir != "" && contentsOf(put) != nil {
				t.Error("the deleted account's file is still in the directory")
			}
			if got := a.usage(); got != 0 {
				t.Errorf("usage %d with no file left", got)
			}
		})
	}
}

// TestDirectoryCleanup: a PUT that fails leaves nothing behind and the
// slot usable; Reconcile removes the files of an account deleted without
// the plugin hearing of it, and temporary files an upload abandoned.
func TestDirectoryCleanup(t *testing.T) {
	dir := t.TempDir()
	f := start(t, func(c *conf.UploadConfig) { c.Store, c.Directory = "directory", dir })
	ctx := context.Background()
	put, get := f.slot("a.txt", 10, "text/plain")
	req := httptest.NewRequest("PUT", strings.TrimPrefix(put, "https://files.example.com:5443"), strings.NewReader("short"))
	req.ContentLength = 10
	w := httptest.NewRecorder()
	f.m.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest {
		t.Errorf("PUT of a short body: %d", w.Code)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("a failed upload left %v", left)
	}
	if w := f.do("PUT", put, []byte("0123456789")); w.Code != http.StatusCreated {
		t.Fatalf("PUT again: %d %s", w.Code, w.Body)
	}
	id := fileID(t, put)
	file := filepath.Join(dir, id[:2], id)
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}

	abandoned, fresh := filepath.Join(dir, "tmp", "x.1.part"), filepath.Join(dir, "tmp", "y.2.part")
	for _, p := range []string{abandoned, fresh} {
		if err := os.WriteFile(p, []byte("part"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(abandoned, old, old); err != nil {
		t.Fatal(err)
	}
	if err := f.h.St.DeleteUser(ctx, "romeo"); err != nil { // as `aviary user delete` does: no hook
		t.Fatal(err)
	}
	if err := f.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the deleted account's file: %v", err)
	}
	if _, err := os.Stat(abandoned); !os.IsNotExist(err) {
		t.Errorf("the abandoned temporary file: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a temporary file still written to was removed: %v", err)
	}
	if w := f.do("GET", get, nil); w.Code != http.StatusNotFound {
		t.Errorf("GET: %d", w.Code)
	}
}

// putInTwo PUTs data in two parts and runs between once the handler has
// read the first (it is then storing the upload).
func (f *fixture) putInTwo(put string, data []byte, between func()) *httptest.ResponseRecorder {
	f.t.Helper()
	pr, pw := io.Pipe()
	req := httptest.NewRequest("PUT", strings.TrimPrefix(put, "https://files.example.com:5443"), pr)
	req.ContentLength = int64(len(data))
	w := httptest.NewRecorder()
	served := make(chan struct{})
	go func() {
		defer close(served)
		f.m.ServeHTTP(w, req)
	}()
	half := len(data) / 3
	if _, err := pw.Write(data[:half]); err != nil {
		f.t.Fatal(err)
	}
	between()
	if _, err := pw.Write(data[half:]); err != nil {
		f.t.Fatal(err)
	}
	pw.Close()
	<-served
	return w
}

// TestExpiryWaitsForRunningUpload: a slot whose PUT is under way when
// its time ends is not removed by expiry, and the upload completes.
func TestExpiryWaitsForRunningUpload(t *testing.T) {
	f := start(t, func(c *conf.UploadConfig) { c.SlotTimeout = time.Minute })
	ctx := context.Background()
	data := make([]byte, 300_000)
	_, _ = rand.Read(data)
	put, get := f.slot("big.bin", len(data), "application/octet-stream")
	w := f.putInTwo(put, data, func() {
		f.clock.add(70 * time.Second) // past the slot's end, within what the upload may take
		if n, err := f.p.Expire(ctx); err != nil || n != 0 {
			t.Errorf("expiry during the upload removed %d, %v", n, err)
		}
	})
	if w.Code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", get, nil); w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), data) {
		t.Errorf("GET: %d, %d bytes", w.Code, w.Body.Len())
	}
}

// TestAccountDeletedDuringUpload: an upload that ends after its account
// was deleted is refused and leaves no file behind.
func TestAccountDeletedDuringUpload(t *testing.T) {
	dir := t.TempDir()
	f := start(t, func(c *conf.UploadConfig) { c.Store, c.Directory = "directory", dir })
	ctx := context.Background()
	put, _ := f.slot("big.bin", 300_000, "application/octet-stream")
	w := f.putInTwo(put, make([]byte, 300_000), func() {
		if err := f.h.Users().DeleteUser(ctx, "romeo"); err != nil {
			t.Fatal(err)
		}
	})
	if w.Code != http.StatusGone {
		t.Errorf("PUT: %d %s", w.Code, w.Body)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*", "*")); len(files) != 0 {
		t.Errorf("left %v", files)
	}
	if got := f.usage(); got != 0 {
		t.Errorf("usage %d", got)
	}
}
