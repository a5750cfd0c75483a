package c2s

import (
	"context"
	"math"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// The admission governor: the handshake and login rates follow how long
// this process's runnable goroutines wait for a CPU.
//
// c2s.max_tls_handshakes_per_second and c2s.max_logins_per_second are
// fixed ceilings, right for one machine and one load. Measured in a storm
// on three nodes of a two-core machine (server/balance/STORMS.md), the
// survivors of a SIGKILL took the dead node's clients as fast as those
// ceilings let them, which was faster than the CPU could serve them: the
// handshakes, logins and their database reads filled the run queue, and
// every message of the sessions the storm never touched waited behind
// them, seconds at the 99th percentile. No fixed rate is right for every
// machine, so the node measures the wait itself: the Go scheduler's
// latency histogram (runtime/metrics /sched/latencies:seconds), read every
// governorTick. When its 99th percentile over the tick is above
// c2s.admission_latency, both rates are cut by a quarter, down to
// governorFloor of their ceilings; when it is under half of it, they grow
// back by governorStep of their ceilings a tick (multiplicative decrease,
// additive increase, as TCP's congestion window and Netflix's
// concurrency limits do). A stream whose turn then lies further than
// c2s.admission_wait ahead is shed as before, and the node reports
// Shedding, so the dispatcher sends new clients to nodes with room.
//
// The established sessions are what it protects: nothing on their path
// waits on a pacer. The floor keeps a node that is slow for other reasons
// (a busy machine, a long garbage collection) taking clients at a tenth of
// its ceiling.
//
// It is off unless c2s.admission_latency is set. Measured on the storm
// of STORMS.md (two cores shared by three nodes, PostgreSQL, Hazelcast
// and the storm's own clients) it held the rates at their floor through
// the storm, cut the never-disturbed sessions' p99 by a tenth (2.45 s to
// 2.19 s) and doubled the time the storm's clients took to log back in
// (22 s to 46 s): there the latency left is the steady message load's on
// a starved machine, which admission cannot lower. Where logins are what
// a node's CPU spends (a dedicated machine, clients elsewhere) it is the
// tool; there it is worth turning on.
const (
	governorTick = 250 * time.Millisecond
	governorCut  = 0.75
	governorStep = 0.05
	// governorFloor is the lowest share of the ceilings.
	governorFloor = 0.1
	// governorMinSamples: a tick with fewer scheduling events does not
	// lower the rates (a few slow ones say little). The runtime records
	// one scheduling event in eight; a busy node has thousands a tick.

	governorMinSamples = 20
)

// schedWindow reads the scheduler's latency histogram and returns, per
// call, the 99th percentile of the waits since the call before.
type schedWindow struct {
	sample []metrics.Sample
	prev   []uint64
	diff   []uint64
}

const schedLatencies = "/sched/latencies:seconds"

func newSchedWindow() *schedWindow {
	w := &schedWindow{sample: []metrics.Sample{{Name: schedLatencies}}}
	w.next() // the baseline: waits before now are not this window's
	return w
}

// next returns the 99th percentile of the scheduling latencies since the
// last call (the upper bound of its histogram bucket) and how many there
// were.
func (w *schedWindow) next() (time.Duration, uint64) {
	metrics.Read(w.sample)
	if w.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0, 0
	}
	h := w.sample[0].Value.Float64Histogram()
	if len(w.prev) != len(h.Counts) {
		w.prev = make([]uint64, len(h.Counts))
		w.diff = make([]uint64, len(h.Counts))
	}
	var total uint64
	for i, c := range h.Counts {
		w.diff[i] = c - w.prev[i]
		total += w.diff[i]
	}
	copy(w.prev, h.Counts)
	return percentile99(w.diff, h.Buckets, total), total
}

// percentile99 is the upper bound of the bucket holding the 99th
// percentile of counts (len(buckets) == len(counts)+1).
func percentile99(counts []uint64, buckets []float64, total uint64) time.Duration {
	if total == 0 {
		return 0
	}
	rank := total - total/100
	var cum uint64
	for i, c := range counts {
		cum += c
		if cum >= rank {
			upper := buckets[i+1]
			if math.IsInf(upper, 1) {
				upper = buckets[i]
			}
			return time.Duration(upper * float64(time.Second))
		}
	}
	return 0
}

// governor sets the gate's pacers to a share of their ceilings.
type governor struct {
	target time.Duration // c2s.admission_latency; 0: off
	share  atomic.Uint64 // math.Float64bits of the share of the ceilings in force
	last   atomic.Int64  // the last tick's p99 scheduling latency (ns), for metrics
}

func newGovernor(target time.Duration) *governor {
	g := &governor{target: target}
	g.share.Store(math.Float64bits(1))
	return g
}

// Share is the share of the rate ceilings in force (1: all of them).
func (g *governor) Share() float64 { return math.Float64frombits(g.share.Load()) }

// step takes one tick's measurement and returns the new share, and
// whether it changed.
func (g *governor) step(p99 time.Duration, samples uint64) (float64, bool) {
	cur := g.Share()
	g.last.Store(int64(p99))
	next := cur
	switch {
	case p99 > g.target && samples >= governorMinSamples:
		next = max(cur*governorCut, governorFloor)
	case p99 < g.target/2:
		// Also a quiet tick (few waits, or none): an idle node is not
		// short of CPU.
		next = min(cur+governorStep, 1)
	}
	if next == cur {
		return cur, false
	}
	g.share.Store(math.Float64bits(next))
	return next, true
}

// Govern runs the admission governor until ctx ends (c2s.admission_latency
// 0: it returns at once). The node starts it.
func (srv *Server) Govern(ctx context.Context) {
	g := srv.gate.gov
	if g.target <= 0 || (srv.gate.handshakes == nil && srv.gate.logins == nil) {
		return
	}
	w := newSchedWindow()
	t := time.NewTicker(governorTick)
	defer t.Stop()
	log := srv.d.Logger
	var lowest float64 = 1
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		share, changed := g.step(w.next())
		srv.d.Metrics.governed(share, time.Duration(g.last.Load()))
		if !changed {
			continue
		}
		srv.gate.handshakes.setShare(share)
		srv.gate.logins.setShare(share)
		// Logged when the node starts and stops holding back, not at
		// every tick of a storm.
		switch {
		case share < 1 && lowest == 1:
			log.Info("c2s: scheduling latency over c2s.admission_latency; taking new streams more slowly",
				"p99", time.Duration(g.last.Load()), "target", g.target, "share", share)
			lowest = share
		case share < lowest:
			lowest = share
		case share == 1 && lowest < 1:
			log.Info("c2s: taking new streams at the full rate again", "lowest_share", lowest)
			lowest = 1
		}
	}
}
