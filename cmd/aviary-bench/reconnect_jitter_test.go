package main

import (
	"testing"
	"time"
)

// TestJitteredSpreads: the wait before a reconnection is spread over
// [d/2, d), so clients that failed together do not retry together.
func TestJitteredSpreads(t *testing.T) {
	const d = 2 * time.Second
	seen := map[time.Duration]bool{}
	for range 1000 {
		w := jittered(d)
		if w < d/2 || w >= d {
			t.Fatalf("jittered(%v) = %v, outside [%v, %v)", d, w, d/2, d)
		}
		seen[w/(50*time.Millisecond)] = true
	}
	if len(seen) < 15 {
		t.Fatalf("1000 waits fell in %d of the 20 50-ms slots: not spread", len(seen))
	}
}
