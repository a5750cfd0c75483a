package auth

import (
	"sync"
	"time"
)

// throttle spaces out SASL attempts after failures, per key: a client
// address, or an account. After the n-th consecutive failure (beyond
// free ones) the spacing is base·2^(n-1), capped at max.
//
// Spacing means queueing. Each attempt reserves the next free slot of its
// key and sleeps until it: with 300 connections from one address waiting,
// they go one per spacing, not all at once when a shared deadline passes
// (which gave 32.8 guesses a second). A success clears the key.
//
// On an account key, slots are also taken in turns by address: an
// address may hold one future slot of an account at a time, and its next
// attempt reserves only once that slot has come. So an attacker's
// attempts on an account, however many connections and from however few
// addresses, sit in the queue next to the owner's, not ahead of them: the
// owner waits about (addresses attacking + 1) spacings, at most max each,
// and is slowed, never locked out. This is the middle way between what
// Prosody (mod_limit_auth: per address only, an account is never locked)
// and a classic lockout after N failures (which hands anyone the power to
// lock any account) do; ejabberd's mod_fail2ban bans addresses, not
// accounts, for the same reason.
//
// Records are forgotten after a quiet period, and the table is bounded.
type throttle struct {
	base, max time.Duration
	free      int // failures before spacing starts

	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	next     time.Time // the first free slot
	last     time.Time // the last failure
	// turns: on an account key, each address's latest reserved slot.
	turns map[string]time.Time
}

// maxThrottleEntries bounds each table against address or name spraying.
const maxThrottleEntries = 100_000

// forgetAfter is how long a quiet key keeps its failure count.
const forgetAfter = 15 * time.Minute

func newThrottle(base, max time.Duration, free int) *throttle {
	return &throttle{base: base, max: max, free: free, entries: map[string]*throttleEntry{}}
}

// off reports a throttle that never delays.
func (t *throttle) off() bool { return t == nil || t.base <= 0 }

// spacingLocked is the spacing after e's failures (0: none yet).
func (t *throttle) spacingLocked(e *throttleEntry) time.Duration {
	n := e.failures - t.free
	if n <= 0 {
		return 0
	}
	d := t.base
	for i := 1; i < n && d < t.max; i++ {
		d *= 2
	}
	return min(d, t.max)
}

// reserve takes key's next slot for an attempt from addr (addr is ""
// on an address key) and returns how long to sleep until it. again is
// true when addr still has a slot of key to come: sleep d, then reserve
// again.
func (t *throttle) reserve(key, addr string, now time.Time) (d time.Duration, again bool) {
	if t.off() {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e == nil || now.Sub(e.last) > forgetAfter {
		return 0, false
	}
	spacing := t.spacingLocked(e)
	if spacing == 0 && !now.Before(e.next) {
		return 0, false
	}
	if addr != "" {
		if turn, ok := e.turns[addr]; ok && turn.After(now) {
			return turn.Sub(now), true
		}
	}
	slot := now
	if e.next.After(slot) {
		slot = e.next
	}
	e.next = slot.Add(spacing)
	if addr != "" {
		if e.turns == nil {
			e.turns = map[string]time.Time{}
		}
		for a, turn := range e.turns {
			if !turn.After(now) {
				delete(e.turns, a)
			}
		}
		e.turns[addr] = slot
	}
	return slot.Sub(now), false
}

// fail records a failure of key and returns the spacing it now has. The
// next attempt waits at least that long after this failure.
func (t *throttle) fail(key string, now time.Time) time.Duration {
	if t.off() {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e != nil && now.Sub(e.last) > forgetAfter {
		e.failures, e.next, e.turns = 0, time.Time{}, nil
	}
	if e == nil {
		if len(t.entries) >= maxThrottleEntries {
			t.pruneLocked(now)
		}
		e = &throttleEntry{}
		t.entries[key] = e
	}
	e.failures++
	e.last = now
	d := t.spacingLocked(e)
	if until := now.Add(d); until.After(e.next) {
		e.next = until
	}
	return d
}

func (t *throttle) reset(key string) {
	if t.off() {
		return
	}
	t.mu.Lock()
	delete(t.entries, key)
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
