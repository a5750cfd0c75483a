package register

import (
	"sync"
	"time"
)

// registrationWindow is how long one address's count of registration
// attempts lasts (c2s.registration_limit is per hour).
const registrationWindow = time.Hour

// maxLimitEntries bounds the table against address spraying.
const maxLimitEntries = 100_000

// addrLimiter counts registration attempts per client address in fixed
// windows: an address may make limit attempts, then waits for its window
// to end. A fixed window lets a patient address make 2×limit around a
// window's end, which is fine for its purpose: 904 accounts per second
// from one address became 10 per hour. The count is per node (as
// XEP-0077 leaves it to the server; each node sees its own connections).
type addrLimiter struct {
	mu      sync.Mutex
	windows map[string]*attemptWindow
}

type attemptWindow struct {
	start time.Time
	n     int
}

// allow counts an attempt from addr and reports whether it is within
// limit, and if not, how long until the address may try again.
func (l *addrLimiter) allow(addr string, limit int, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.windows == nil {
		l.windows = map[string]*attemptWindow{}
	}
	w := l.windows[addr]
	if w == nil || now.Sub(w.start) >= registrationWindow {
		if w == nil && len(l.windows) >= maxLimitEntries {
			l.pruneLocked(now)
		}
		w = &attemptWindow{start: now}
		l.windows[addr] = w
	}
	if w.n >= limit {
		return false, w.start.Add(registrationWindow).Sub(now)
	}
	w.n++
	return true, 0
}

// pruneLocked drops ended windows; if that frees nothing, it starts over
// (forgetting some counts is better than unbounded memory).
func (l *addrLimiter) pruneLocked(now time.Time) {
	for k, w := range l.windows {
		if now.Sub(w.start) >= registrationWindow {
			delete(l.windows, k)
		}
	}
	if len(l.windows) >= maxLimitEntries {
		l.windows = map[string]*attemptWindow{}
	}
}
