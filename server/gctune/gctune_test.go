package gctune

import (
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		headroom int64
		base     uint64
		want     int64
	}{
		{64 * mib, 16 * mib, 400},       // small heap: the floor wins
		{64 * mib, 64 * mib, 100},       // at the floor: Go's default
		{64 * mib, 640 * mib, 100},      // large heap: never below the default
		{64 * mib, 0, maxPercent},       // nothing live yet
		{64 * mib, 1 * mib, maxPercent}, // bounded
	}
	for _, c := range cases {
		if got := Percent(c.headroom, c.base); got != c.want {
			t.Errorf("Percent(%d MiB, %d MiB) = %d, want %d", c.headroom/mib, c.base/mib, got, c.want)
		}
	}
}

// gogc reads the collector's percent as the runtime sees it.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// awaitGOGC runs collections until the runtime's percent satisfies ok
// (the tuner re-tunes from a cleanup that runs after each cycle).
func awaitGOGC(t *testing.T, ok func(uint64) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(gogc()) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d, want %s", gogc(), what)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// The tuner follows the live heap: a test binary's few megabytes get a
// large percent; once 128 MiB are live it is back to Go's default; when
// they are freed it rises again.
func TestFollowsLiveHeap(t *testing.T) {
	Start(64<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { Start(-1, slog.New(slog.NewTextHandler(io.Discard, nil))) })
	awaitGOGC(t, func(p uint64) bool { return p > 400 }, "> 400 with a small heap")

	big := make([][]byte, 128)
	for i := range big {
		big[i] = make([]byte, 1<<20)
	}
	awaitGOGC(t, func(p uint64) bool { return p == 100 }, "100 with 128 MiB live")
	runtime.KeepAlive(big)
	big = nil
	awaitGOGC(t, func(p uint64) bool { return p > 400 }, "> 400 once the heap is freed")

	Start(-1, slog.New(slog.NewTextHandler(io.Discard, nil)))
	awaitGOGC(t, func(p uint64) bool { return p == 100 }, "100 once turned off")
}
