package bosh

import "sync/atomic"

// Stats are a node's BOSH counters since it started. The admin backend
// turns them into Prometheus metrics at scrape time (aviary_bosh_*), which
// keeps this package free of Prometheus.
type Stats struct {
	// Requests: HTTP requests with a body that reached this node's
	// endpoint (forwarded ones from other nodes are not counted again).
	Requests uint64
	// Forwarded: requests this node sent on to the node owning their
	// session (no sticky sessions at the balancer).
	Forwarded uint64
	// ItemNotFound: requests answered with terminate item-not-found (a
	// session this node and the cluster do not know: expired, or its
	// node gone).
	ItemNotFound uint64
	// Timeouts: sessions ended because no request came within their
	// inactivity period (a closed tab).
	Timeouts uint64
	// Sessions: sessions live on this node now.
	Sessions int
}

type counters struct {
	requests, forwarded, itemNotFound, timeouts atomic.Uint64
}

// Stats returns the node's BOSH counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Requests:     m.stats.requests.Load(),
		Forwarded:    m.stats.forwarded.Load(),
		ItemNotFound: m.stats.itemNotFound.Load(),
		Timeouts:     m.stats.timeouts.Load(),
		Sessions:     m.Len(),
	}
}
