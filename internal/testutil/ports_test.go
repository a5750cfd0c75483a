package testutil

import (
	"os"
	"testing"
)

// Ports given are distinct, below the ephemeral range, and claimed: a
// second claim on one (another test process's, as the lock is per open
// file) is refused.
func TestFreePortsClaimed(t *testing.T) {
	ps, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := belowEphemeral()
	seen := map[int]bool{}
	for _, p := range ps {
		if seen[p] {
			t.Errorf("port %d given twice", p)
		}
		seen[p] = true
		if hi > lo && (p < lo || p >= hi) {
			t.Errorf("port %d outside [%d, %d)", p, lo, hi)
		}
		if f, ok := lockPort(os.TempDir()+"/aviary-test-ports", p); ok {
			f.Close()
			t.Errorf("port %d could be claimed again", p)
		}
	}
	more, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range more {
		if seen[p] {
			t.Errorf("port %d given again", p)
		}
	}
}
