// Package gctune gives the garbage collector a floor on heap growth.
//
// Go's collector starts a cycle when the heap has grown by GOGC percent
// (100) of what was live after the last one. That scales with the node: a
// node holding 10,000 sessions has a live heap of a few hundred megabytes
// and collects rarely, but a node with a few thousand sessions lives in
// 20 MB, and a login storm (every login allocates TLS and XML state) then
// runs a cycle every few megabytes: ~20 collections a second, 7% of the
// CPU in the login benchmark. The same trade-off Uber's GC tuner and the
// JVM's minimum heap make: let the heap grow by at least a fixed amount
// (runtime.gc_min_headroom_mb, 64 MiB by default) and by GOGC=100 beyond
// that. Memory per session at scale is unchanged, since a large live heap
// already has more headroom than the floor.
package gctune

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// basePercent is Go's default GOGC, kept once the live heap passes the
// headroom floor.
const basePercent = 100

// maxPercent bounds the percent for a nearly empty heap (a node that just
// started), where headroom/live would be in the tens of thousands.
const maxPercent = 5000

var (
	startOnce sync.Once
	headroom  atomic.Int64 // bytes; <= 0 means off
	current   atomic.Int64 // the GC percent last set
)

// Start makes the collector keep at least minHeadroom bytes of growth
// between cycles, re-evaluated after every cycle. It is process-wide: a
// later call only changes the floor. minHeadroom <= 0, or GOGC set in the
// environment (the operator's choice wins), leaves the collector alone.
func Start(minHeadroom int64, log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		if minHeadroom > 0 {
			log.Info("gctune: GOGC is set in the environment; runtime.gc_min_headroom_mb is not applied")
		}
		return
	}
	headroom.Store(minHeadroom)
	startOnce.Do(func() {
		current.Store(basePercent)
		tune()
		arm()
	})
	if minHeadroom <= 0 {
		set(basePercent)
	}
}

// sentinel is garbage the moment it is allocated; its cleanup runs after
// the cycle that finds it, re-tunes and arms the next one.
type sentinel struct{ _ *int }

func arm() {
	s := &sentinel{}
	runtime.AddCleanup(s, func(struct{}) {
		tune()
		arm()
	}, struct{}{})
}

// sampleNames are the runtime metrics the collector's goal is computed from
// (Go 1.18+): goal = live + (live + stacks + globals) * GOGC/100.
var sampleNames = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

func tune() {
	h := headroom.Load()
	if h <= 0 {
		return
	}
	samples := make([]metrics.Sample, len(sampleNames))
	for i, n := range sampleNames {
		samples[i].Name = n
	}
	metrics.Read(samples)
	var base uint64
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			base += s.Value.Uint64()
		}
	}
	set(Percent(h, base))
}

// Percent is the GOGC that gives at least headroom bytes of growth over
// base (live heap, stacks and globals), and never less than Go's default.
func Percent(headroom int64, base uint64) int64 {
	if base == 0 {
		return maxPercent
	}
	p := int64(float64(headroom) * 100 / float64(base))
	return min(max(p, basePercent), maxPercent)
}

// set changes the percent when it moved by more than a tenth, so that a
// heap hovering around a value does not re-tune every cycle.
func set(p int64) {
	c := current.Load()
	if p == c || p != basePercent && max(p-c, c-p)*10 < c {
		return
	}
	current.Store(p)
	debug.SetGCPercent(int(p))
}

// Current reports the GC percent the tuner last set.
func Current() int64 { return current.Load() }
