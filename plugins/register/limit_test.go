package register

import (
	"testing"
	"time"
)

// An address may try again once its window has passed.
func TestAddrLimiterWindow(t *testing.T) {
	var l addrLimiter
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a", 3, t0.Add(time.Duration(i)*time.Minute)); !ok {
			t.Fatalf("attempt %d refused", i)
		}
	}
	ok, wait := l.allow("a", 3, t0.Add(10*time.Minute))
	if ok || wait != 50*time.Minute {
		t.Fatalf("fourth: ok %v, wait %v; want refused for 50m", ok, wait)
	}
	if ok, _ := l.allow("a", 3, t0.Add(time.Hour)); !ok {
		t.Fatal("refused after the window")
	}
}
