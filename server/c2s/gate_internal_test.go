package c2s

import (
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
)

// TestPacer: a pacer of 4 turns a second hands out a second's burst
// without waiting, then one turn every 250 ms; a turn further away than
// the caller's wait is refused and takes nothing; once the clock has
// caught up the pacer is at ease again. No limit (0 or -1) never waits.
func TestPacer(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	p := newPacer(4)
	for i := range 4 {
		if wait, ok := p.reserve(now, 0); !ok || wait != 0 {
			t.Fatalf("burst turn %d: wait %v, %v; want 0, true", i, wait, ok)
		}
	}
	if wait, ok := p.reserve(now, 0); ok {
		t.Fatalf("fifth turn at once granted with wait %v", wait)
	}
	for i, want := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond, time.Second} {
		if wait, ok := p.reserve(now, time.Second); !ok || wait != want {
			t.Fatalf("paced turn %d: wait %v, %v; want %v, true", i, wait, ok, want)
		}
	}
	if _, ok := p.reserve(now, time.Second); ok {
		t.Fatal("a turn 1.25 s away granted under a 1 s wait")
	}
	if b := p.backlog(now); b != 1250*time.Millisecond {
		t.Fatalf("backlog %v, want 1.25s (the refused turns took nothing)", b)
	}
	later := now.Add(2 * time.Second)
	if b := p.backlog(later); b != 0 {
		t.Fatalf("backlog %v two seconds later, want 0", b)
	}
	if wait, ok := p.reserve(later, 0); !ok || wait != 0 {
		t.Fatalf("turn after catching up: wait %v, %v", wait, ok)
	}
	for _, rate := range []int{0, -1} {
		if p := newPacer(rate); p != nil {
			t.Fatalf("newPacer(%d) = %+v, want nil (no limit)", rate, p)
		}
		var none *pacer
		if wait, ok := none.reserve(now, 0); !ok || wait != 0 || none.backlog(now) != 0 {
			t.Fatal("a nil pacer waits")
		}
	}
}

// TestGateShedding: a gate reports Shedding while its login turns run
// more than half the admission wait ahead, and for shedHold after it shed
// a stream; it calls OnShed once when it starts shedding, not for every
// stream it sheds.
func TestGateShedding(t *testing.T) {
	g := newGate(conf.C2SConfig{MaxTLSHandshakesPerSecond: -1, MaxLoginsPerSecond: 10, AdmissionWait: 2 * time.Second, MaxNegotiating: -1})
	calls := make(chan struct{}, 10)
	fn := func() { calls <- struct{}{} }
	g.onShed.Store(&fn)
	now := time.Now()
	if g.shedding(now) {
		t.Fatal("a fresh gate sheds")
	}
	// Nineteen turns at once leave the next one a second away: half of
	// the 2 s wait, not more; one more turn passes it.
	for range 19 {
		if _, ok := g.logins.reserve(now, g.wait); !ok {
			t.Fatal("turn refused within the wait")
		}
	}
	if g.shedding(now) {
		t.Fatalf("shedding with a backlog of %v (wait %v)", g.logins.backlog(now), g.wait)
	}
	g.logins.reserve(now, g.wait)
	if !g.shedding(now) {
		t.Fatalf("not shedding with a backlog of %v (wait %v)", g.logins.backlog(now), g.wait)
	}
	if g.shedding(now.Add(time.Minute)) {
		t.Fatal("still shedding once the turns have caught up")
	}
	g.shed(nil, ShedLogins)
	g.shed(nil, ShedLogins)
	if !g.shedding(now.Add(time.Minute)) {
		t.Fatal("not shedding right after shedding a stream")
	}
	<-calls
	select {
	case <-calls:
		t.Fatal("OnShed called for each shed stream, want once when shedding starts")
	default:
	}
}
