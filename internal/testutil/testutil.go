// Package testutil holds the helpers tests of every folder share:
// CheckFor instead of sleeping, Buffer for output read while written. It is a
// leaf: it imports nothing of ours, so storage, cluster, s2s, server and
// admin tests may all use it (arch_test.go); no non-test file imports it.
package testutil

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// CheckFor calls fn every poll until it returns nil, and fails the test
// with fn's last error once total has passed (fn runs at least once, and
// once more at the deadline). Use it instead of sleeping for something to
// happen.
func CheckFor(t testing.TB, total, poll time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", total, err)
		}
		time.Sleep(poll)
	}
}

// Buffer is a bytes.Buffer that a server or a child process may write
// while the test reads it (a log, a process's output).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Take returns what was written since the last Take and empties the
// buffer.
func (b *Buffer) Take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.String()
	b.b.Reset()
	return s
}
