package certs

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMaintainLockAndFailure: a due name is not ordered while another
// node holds the ordering lock; once it is free, the attempt is made, and
// its failure is recorded for every node (Status) with the retry delay.
func TestMaintainLockAndFailure(t *testing.T) {
	ctx := context.Background()
	st := sqliteStore(t)
	cfg := testConfig("chat.example.com")
	cfg.TLS.ACME.Enabled = true
	cfg.TLS.ACME.Directory = "https://127.0.0.1:1/dir" // nothing listens there
	cfg.TLS.ACME.Names = []string{}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var checked [][]string
	m, err := New(Options{Config: ConfigFrom(cfg), Store: st, Logger: quietLogger(), Node: "n1",
		RetryBase: time.Minute, Poll: 7 * time.Second, Now: func() time.Time { return now },
		Checked: func(due []string) { checked = append(checked, due) }})
	if err != nil {
		t.Fatal(err)
	}
	unlock, ok, err := st.TryLock(ctx, lockName)
	if err != nil || !ok {
		t.Fatal("could not take the lock", err)
	}
	if wait := m.maintain(ctx); wait != 7*time.Second {
		t.Errorf("with the lock taken elsewhere, looks again in %v, want Poll", wait)
	}
	if s, _ := m.Status(ctx); len(s) != 1 || s[0].Failures != 0 || !s[0].Next.IsZero() {
		t.Errorf("an attempt was made without the lock: %+v", s)
	}
	unlock()

	if wait := m.maintain(ctx); wait != time.Minute {
		t.Errorf("after a failure, looks again in %v, want the retry delay", wait)
	}
	s, err := m.Status(ctx)
	if err != nil || len(s) != 1 || s[0].Failures != 1 || !s[0].Next.Equal(now.Add(time.Minute)) ||
		!strings.Contains(s[0].LastError, "registering with the ACME server") {
		t.Fatalf("Status after a failure: %+v, %v", s, err)
	}
	// Another manager on the same store (another node) sees the failure
	// and waits too.
	other, _ := New(Options{Config: ConfigFrom(cfg), Store: st, Logger: quietLogger(), RetryBase: time.Minute, Now: func() time.Time { return now }})
	if names, wait, _ := other.due(ctx); len(names) != 0 || wait != time.Minute {
		t.Errorf("the other node finds %v due (wait %v), want nothing for a minute", names, wait)
	}
	if len(checked) != 2 || len(checked[0]) != 1 || checked[0][0] != "chat.example.com" {
		t.Errorf("Checked calls %v", checked)
	}
	if _, ok, _ := st.TryLock(ctx, lockName); !ok {
		t.Error("the lock was not released after ordering")
	}
}
