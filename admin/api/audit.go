package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aviary-im/aviary/server/logsafe"
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Admin  string    `json:"admin"`
	Via    string    `json:"via"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Result string    `json:"result"` // ok or the error
	Remote string    `json:"remote"`
}

// Bounds of what the audit log keeps. Fields can carry client input (the
// username of a refused sign-in, the path of a refused request, an error
// quoting either): each is clipped, and the entries kept in memory for
// the console are bounded in bytes as well as in number. Five anonymous
// 50 MiB sign-in requests once added 262 MB to the file and the node log
// and kept 617 MB in memory.
const (
	auditFieldBytes  = logsafe.Field // admin, via, action, remote
	auditTextBytes   = 512           // target, result
	auditRecentCount = 200
	auditRecentBytes = 256 << 10
)

// auditLog appends JSON lines to a file and mirrors them to slog. Every
// action, refused or not, is written.
type auditLog struct {
	mu        sync.Mutex
	f         *os.File
	log       *slog.Logger
	last      []AuditEntry // recent entries for the console, newest last
	lastBytes int          // sum of size() over last
}

func openAudit(path string, log *slog.Logger) (*auditLog, error) {
	a := &auditLog{log: log}
	if path != "" {
		a.loadTail(path)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		a.f = f
	}
	return a, nil
}

// loadTail reads the newest entries of the file into the recent list, so
// the console's audit page shows what happened before the node restarted.
// It reads at most auditRecentBytes from the end; a line it cannot parse
// (cut by the read, or written by hand) is skipped.
func (a *auditLog) loadTail(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return
	}
	off := max(st.Size()-auditRecentBytes, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return
	}
	for _, line := range bytes.Split(buf, []byte{'\n'}) {
		var e AuditEntry
		if len(line) == 0 || json.Unmarshal(line, &e) != nil || e.Action == "" {
			continue
		}
		a.addLocked(e.clip())
	}
}

// clip bounds every field of e (see auditRecentBytes).
func (e AuditEntry) clip() AuditEntry {
	e.Admin = logsafe.Clip(e.Admin, auditFieldBytes)
	e.Via = logsafe.Clip(e.Via, auditFieldBytes)
	e.Action = logsafe.Clip(e.Action, auditFieldBytes)
	e.Remote = logsafe.Clip(e.Remote, auditFieldBytes)
	e.Target = logsafe.Clip(e.Target, auditTextBytes)
	e.Result = logsafe.Clip(e.Result, auditTextBytes)
	return e
}

// size is about what e holds in memory.
func (e AuditEntry) size() int {
	return len(e.Admin) + len(e.Via) + len(e.Action) + len(e.Target) + len(e.Result) + len(e.Remote) + 64
}

func (a *auditLog) write(e AuditEntry) {
	e = e.clip()
	e.Time = time.Now().UTC()
	line, _ := json.Marshal(e)
	a.mu.Lock()
	if a.f != nil {
		_, _ = a.f.Write(append(line, '\n'))
	}
	a.addLocked(e)
	a.mu.Unlock()
	a.log.Info("admin action", "admin", e.Admin, "action", e.Action, "target", e.Target, "result", e.Result, "remote", e.Remote)
}

// addLocked adds e to the recent entries, dropping the oldest past the
// bounds (a.mu held, or a not shared yet).
func (a *auditLog) addLocked(e AuditEntry) {
	a.last = append(a.last, e)
	a.lastBytes += e.size()
	drop := 0
	for len(a.last)-drop > auditRecentCount || (a.lastBytes > auditRecentBytes && len(a.last)-drop > 1) {
		a.lastBytes -= a.last[drop].size()
		drop++
	}
	if drop > 0 {
		// Copy rather than reslice, so the dropped entries' strings are freed.
		a.last = append([]AuditEntry(nil), a.last[drop:]...)
	}
}

func (a *auditLog) recent() []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AuditEntry(nil), a.last...)
}

func (a *auditLog) close() error {
	if a.f != nil {
		return a.f.Close()
	}
	return nil
}
