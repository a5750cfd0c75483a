package api

import (
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"time"
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

// auditLog appends JSON lines to a file and mirrors them to slog. Every
// action, refused or not, is written.
type auditLog struct {
	mu   sync.Mutex
	f    *os.File
	log  *slog.Logger
	last []AuditEntry // recent entries for the console, newest last
}

func openAudit(path string, log *slog.Logger) (*auditLog, error) {
	a := &auditLog{log: log}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		a.f = f
	}
	return a, nil
}

func (a *auditLog) write(e AuditEntry) {
	e.Time = time.Now().UTC()
	line, _ := json.Marshal(e)
	a.mu.Lock()
	if a.f != nil {
		_, _ = a.f.Write(append(line, '\n'))
	}
	a.last = append(a.last, e)
	if len(a.last) > 200 {
		a.last = a.last[len(a.last)-200:]
	}
	a.mu.Unlock()
	a.log.Info("admin action", "admin", e.Admin, "action", e.Action, "target", e.Target, "result", e.Result, "remote", e.Remote)
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
