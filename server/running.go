package server

import (
	"context"
	"sync"
)

// Running holds the part a Service started (an s2s service, an HTTP
// server) for the goroutines that ask about it while the node runs: Start
// sets it, Stop takes it out and stops it. The zero value holds nothing.
type Running[T interface{ Stop(context.Context) error }] struct {
	mu  sync.Mutex
	cur T
	set bool
}

// Set records what Start started.
func (r *Running[T]) Set(v T) {
	r.mu.Lock()
	r.cur, r.set = v, true
	r.mu.Unlock()
}

// Get returns what runs, and false when nothing does.
func (r *Running[T]) Get() (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur, r.set
}

// Stop takes out what runs and stops it; with nothing running it does
// nothing.
func (r *Running[T]) Stop(ctx context.Context) error {
	r.mu.Lock()
	v, ok := r.cur, r.set
	var zero T
	r.cur, r.set = zero, false
	r.mu.Unlock()
	if !ok {
		return nil
	}
	return v.Stop(ctx)
}
