package c2s

import (
	"context"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestPercentile99(t *testing.T) {
	buckets := []float64{0, 0.001, 0.01, 0.1, math.Inf(1)}
	for _, c := range []struct {
		counts []uint64
		want   time.Duration
	}{
		{[]uint64{0, 0, 0, 0}, 0},
		{[]uint64{100, 0, 0, 0}, time.Millisecond},
		{[]uint64{98, 1, 1, 0}, 10 * time.Millisecond}, // the 99th of 100 is in (1ms, 10ms]
		{[]uint64{98, 0, 2, 0}, 100 * time.Millisecond},
		{[]uint64{990, 9, 1, 0}, time.Millisecond},
		{[]uint64{0, 0, 0, 5}, 100 * time.Millisecond}, // past the last bound: its lower bound
	} {
		var total uint64
		for _, n := range c.counts {
			total += n
		}
		if got := percentile99(c.counts, buckets, total); got != c.want {
			t.Errorf("percentile99(%v) = %v, want %v", c.counts, got, c.want)
		}
	}
}

// TestGovernorStep: over the target the share is cut by a quarter down to
// the floor, under half of it it grows back a step a tick, in between it
// holds; a tick with few waits does not cut, and a quiet one grows.
func TestGovernorStep(t *testing.T) {
	g := newGovernor(50 * time.Millisecond)
	if s, changed := g.step(200*time.Millisecond, governorMinSamples-1); changed || s != 1 {
		t.Fatalf("a tick of %d waits changed the share to %v", governorMinSamples-1, s)
	}
	want := 1.0
	for range 20 {
		want = max(want*governorCut, governorFloor)
		if s, _ := g.step(200*time.Millisecond, 1000); math.Abs(s-want) > 1e-9 {
			t.Fatalf("share %v, want %v", s, want)
		}
	}
	if s := g.Share(); s != governorFloor {
		t.Fatalf("share %v after a long overload, want the floor %v", s, governorFloor)
	}
	if s, changed := g.step(30*time.Millisecond, 1000); changed || s != governorFloor {
		t.Fatalf("between half the target and the target the share moved to %v", s)
	}
	g.step(10*time.Millisecond, 1000)
	if s := g.Share(); math.Abs(s-(governorFloor+governorStep)) > 1e-9 {
		t.Fatalf("share %v after a good tick, want %v", s, governorFloor+governorStep)
	}
	for range 40 {
		g.step(0, 0) // quiet
	}
	if s := g.Share(); s != 1 {
		t.Fatalf("share %v after quiet ticks, want 1", s)
	}
}

// TestPacerShare: at a tenth of its ceiling a pacer gives a tenth of the
// turns without waiting, and the later ones a tenth as often.
func TestPacerShare(t *testing.T) {
	free := func(p *pacer, now time.Time) int {
		n := 0
		for {
			w, ok := p.reserve(now, time.Hour)
			if !ok || w > 0 {
				return n
			}
			n++
		}
	}
	now := time.Now()
	if n := free(newPacer(100), now); n != 100 {
		t.Fatalf("%d turns without waiting at 100/s, want 100", n)
	}
	p := newPacer(100)
	p.setShare(0.1)
	if n := free(p, now); n != 10 {
		t.Fatalf("%d turns without waiting at a tenth of 100/s, want 10", n)
	}
	w1, _ := p.reserve(now, time.Hour)
	w2, _ := p.reserve(now, time.Hour)
	if d := w2 - w1; d != 100*time.Millisecond {
		t.Fatalf("turns %v apart at 10/s, want 100ms", d)
	}
	var nilPacer *pacer
	nilPacer.setShare(0.5) // no ceiling: nothing to do, no panic
}

// TestGovernShedsUnderCPUStarvation: the real loop, on this process's
// scheduler. While more goroutines spin than there are CPUs, runnable
// goroutines wait and the share of the rates falls (the metric says so);
// a stream then asks for a turn further ahead and the node sheds sooner.
// Once they stop the share comes back to 1.
func TestGovernShedsUnderCPUStarvation(t *testing.T) {
	c := conf.Default().C2S
	c.AdmissionLatency = time.Millisecond // any real contention is over it
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	srv := NewServer(Deps{Domain: conf.Default().Domain, C2S: c, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { srv.Govern(ctx); close(done) }()

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 8 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				// 2ms of work, then back to the run queue: each wait
				// is that times the spinners ahead of it per CPU.
				for start := time.Now(); time.Since(start) < 2*time.Millisecond; {
				}
				runtime.Gosched()
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for srv.gate.gov.Share() > 0.5 {
		if time.Now().After(deadline) {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("share %v after spinning %d goroutines on %d CPUs", srv.gate.gov.Share(), 8*runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0))
		}
		time.Sleep(10 * time.Millisecond)
	}
	var g dto.Metric
	if err := m.share.Write(&g); err != nil {
		t.Fatal(err)
	}
	if v := g.GetGauge().GetValue(); v >= 1 {
		t.Errorf("aviary_c2s_admission_share %v while the share is below one half", v)
	}
	p := srv.gate.logins
	p.mu.Lock()
	iv := p.interval
	p.mu.Unlock()
	if iv <= p.base {
		t.Errorf("logins pacer interval %v, not above its ceiling's %v", iv, p.base)
	}
	stop.Store(true)
	wg.Wait()
	deadline = time.Now().Add(30 * time.Second)
	for srv.gate.gov.Share() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("share %v 30s after the spinning stopped", srv.gate.gov.Share())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
