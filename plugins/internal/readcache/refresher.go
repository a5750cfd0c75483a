package readcache

import (
	"context"
	"sync"
	"time"
)

// Refresher runs background reads that bring a stale value up to date,
// at most one at a time per key: a caller that serves the old value (Peek)
// asks for a refresh on each use, and only the first of them reads.
type Refresher[K comparable] struct {
	mu   sync.Mutex
	busy map[K]bool
}

// Go runs read for k in the background, bounded by timeout, unless a read
// for k is running already.
func (r *Refresher[K]) Go(k K, timeout time.Duration, read func(ctx context.Context)) {
	r.mu.Lock()
	if r.busy[k] {
		r.mu.Unlock()
		return
	}
	if r.busy == nil {
		r.busy = map[K]bool{}
	}
	r.busy[k] = true
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.busy, k)
			r.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		read(ctx)
	}()
}

// Running reports how many reads are under way.
func (r *Refresher[K]) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.busy)
}
