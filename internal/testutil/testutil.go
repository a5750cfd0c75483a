// Package testutil holds the helpers tests of every folder share. It is a
// leaf: it imports nothing of ours, so storage, cluster, s2s, server and
// admin tests may all use it (arch_test.go); no non-test file imports it.
package testutil

import (
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
