package backend

import (
	"context"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

// RateMeter turns the node's stanza counters into per-second rates over
// windows of at least a second (so page reloads do not make noise).
type RateMeter struct {
	counts func() (in, out float64)

	mu              sync.Mutex
	lastAt          time.Time
	lastIn, lastOut float64
	rateIn, rateOut float64
}

// NewRateMeter measures the counters counts returns (totals since start).
func NewRateMeter(counts func() (in, out float64)) *RateMeter {
	return &RateMeter{counts: counts}
}

// Rates returns the stanzas per second received and sent over the last
// window.
func (r *RateMeter) Rates() (in, out float64) {
	ci, co := r.counts()
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if dt := now.Sub(r.lastAt).Seconds(); !r.lastAt.IsZero() && dt >= 1 {
		r.rateIn, r.rateOut = (ci-r.lastIn)/dt, (co-r.lastOut)/dt
	}
	if r.lastAt.IsZero() || now.Sub(r.lastAt) >= time.Second {
		r.lastAt, r.lastIn, r.lastOut = now, ci, co
	}
	return r.rateIn, r.rateOut
}

// publishRates puts this node's rates into its member record every
// interval until ctx ends, so that any node's console can show the
// cluster's total.
func publishRates(ctx context.Context, c cluster.Cluster, r *RateMeter, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in, out := r.Rates()
		c.UpdateSelf(func(m *cluster.Member) { m.StanzasIn, m.StanzasOut = in, out })
	}
}
