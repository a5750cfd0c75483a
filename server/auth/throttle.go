package auth

import (
	"sync"
	"time"
)

// throttle remembers recent SASL failures per client address. The delay
// after the n-th consecutive failure is base·2^(n-1), capped; a new attempt
// from the address waits until the last delay has passed. Records are
// forgotten after a quiet period, and the table is bounded.
type throttle struct {
	base, max time.Duration

	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	until    time.Time // no new attempt before this
	last     time.Time
}

// maxThrottleEntries bounds the table against address-spraying.
const maxThrottleEntries = 100_000

// forgetAfter is how long a quiet address keeps its failure count.
const forgetAfter = 15 * time.Minute

func newThrottle(base, max time.Duration) *throttle {
	return &throttle{base: base, max: max, entries: map[string]*throttleEntry{}}
}

func (t *throttle) wait(addr string, now time.Time) time.Duration {
	if t.base <= 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[addr]
	if e == nil || !now.Before(e.until) {
		return 0
	}
	return e.until.Sub(now)
}

func (t *throttle) fail(addr string, now time.Time) time.Duration {
	if t.base <= 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[addr]
	if e != nil && now.Sub(e.last) > forgetAfter {
		e.failures = 0
	}
	if e == nil {
		if len(t.entries) >= maxThrottleEntries {
			t.pruneLocked(now)
		}
		e = &throttleEntry{}
		t.entries[addr] = e
	}
	e.failures++
	d := t.base
	for i := 1; i < e.failures && d < t.max; i++ {
		d *= 2
	}
	if d > t.max {
		d = t.max
	}
	e.last = now
	e.until = now.Add(d)
	return d
}

func (t *throttle) reset(addr string) {
	t.mu.Lock()
	delete(t.entries, addr)
	t.mu.Unlock()
}

// pruneLocked drops quiet entries; if that frees nothing, it starts over
// (losing some history is better than unbounded memory).
func (t *throttle) pruneLocked(now time.Time) {
	for k, e := range t.entries {
		if now.Sub(e.last) > forgetAfter {
			delete(t.entries, k)
		}
	}
	if len(t.entries) >= maxThrottleEntries {
		t.entries = map[string]*throttleEntry{}
	}
}
