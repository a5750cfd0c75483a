package balance

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

// Paths the service mounts on the HTTP listener.
const (
	// PathDispatch answers which node a client should connect to.
	PathDispatch = "/dispatch"
	// PathHealth answers 200 while this node accepts new clients and 503
	// while it is draining, full, shedding load (over its admission rates)
	// or over its load threshold: a check for HTTP load balancers
	// (HAProxy option httpchk).
	PathHealth = "/dispatch/health"
)

// DispatchAnswer is the dispatcher's JSON answer.
type DispatchAnswer struct {
	Node      string  `json:"node"`
	Transport string  `json:"transport"`
	Host      string  `json:"host,omitempty"` // c2s, c2s_tls
	Port      int     `json:"port,omitempty"` // c2s, c2s_tls
	URL       string  `json:"url,omitempty"`  // bosh, websocket
	Load      float64 `json:"load"`
}

type dispatchError struct {
	Error      string `json:"error"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

// DispatchHandler serves GET /dispatch?transport=c2s|c2s_tls|bosh|websocket
// (default c2s): JSON naming the node a client should use, chosen at
// random among the nodes that accept clients with a chance proportional to
// weight × headroom (load threshold − load), so a burst of clients asking
// at once does not all land on one node between two load publications.
// When no live node serves the transport it answers 404; when every node
// that serves it is draining, full or over its threshold, 503 with
// Retry-After (balance.retry_after) — a client then waits and asks again
// rather than overloading a node. A client that loses its connection asks
// again instead of retrying the node it had.
func (s *Service) DispatchHandler() http.Handler {
	return http.HandlerFunc(s.serveDispatch)
}

// HealthHandler serves PathHealth.
func (s *Service) HealthHandler() http.Handler {
	return http.HandlerFunc(s.serveHealth)
}

func (s *Service) serveDispatch(w http.ResponseWriter, r *http.Request) {
	if !corsGET(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	name := r.URL.Query().Get("transport")
	if name == "" {
		name = string(TransportC2S)
	}
	tr, ok := ParseTransport(name)
	if !ok {
		writeJSON(w, http.StatusBadRequest, dispatchError{Error: "transport must be c2s, c2s_tls, bosh or websocket"})
		return
	}
	members, policy, retry, ok := s.snapshot(r.Context())
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, dispatchError{Error: "not running"})
		return
	}
	m, status := choose(policy, members, tr, time.Now(), rand.Float64)
	switch status {
	case http.StatusNotFound:
		writeJSON(w, status, dispatchError{Error: "no live node serves transport " + name})
		return
	case http.StatusServiceUnavailable:
		secs := int(retry / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, status, dispatchError{Error: "every node is over its limit; retry later", RetryAfter: secs})
		return
	}
	writeJSON(w, http.StatusOK, Answer(m, tr))
}

// Answer builds the dispatcher's answer naming m for tr.
func Answer(m cluster.Member, tr Transport) DispatchAnswer {
	a := DispatchAnswer{Node: m.Name, Transport: string(tr), Load: m.Load}
	switch tr {
	case TransportC2S, TransportC2STLS:
		host, port, err := net.SplitHostPort(RedirectAddr(m, tr))
		if err == nil {
			a.Host = host
			a.Port, _ = strconv.Atoi(port)
		}
	default:
		a.URL = URL(m, tr)
	}
	return a
}

// choose picks a node for the dispatcher: 200 with the node, 404 when no
// live node serves tr, 503 when none of those accepts clients.
func choose(p Policy, members []cluster.Member, tr Transport, now time.Time, random func() float64) (cluster.Member, int) {
	cands := p.Candidates(members, tr, now)
	if len(cands) == 0 {
		for _, m := range members {
			if p.Live(m, now) && RedirectAddr(m, tr) != "" {
				return cluster.Member{}, http.StatusServiceUnavailable
			}
		}
		return cluster.Member{}, http.StatusNotFound
	}
	total := 0.0
	shares := make([]float64, len(cands))
	for i, m := range cands {
		share := p.Weight(m.Name) * (p.limit() - m.Load)
		if share < 1e-6 {
			share = 1e-6
		}
		shares[i] = share
		total += share
	}
	x := random() * total
	for i, sh := range shares {
		if x < sh {
			return cands[i], http.StatusOK
		}
		x -= sh
	}
	return cands[len(cands)-1], http.StatusOK
}

// snapshot returns the member list with this node's own record replaced by
// its current figures, re-reading the list when it is older than the
// publish interval.
func (s *Service) snapshot(ctx context.Context) ([]cluster.Member, Policy, time.Duration, bool) {
	s.mu.Lock()
	n := s.n
	stale := n != nil && time.Since(s.fetched) > s.cfg.Balance.PublishInterval
	s.mu.Unlock()
	if n == nil {
		return nil, Policy{}, 0, false
	}
	if stale {
		s.refresh(ctx)
	}
	addrs := s.clientAddrs()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		return nil, Policy{}, 0, false
	}
	me := s.selfLocked(0)
	out := make([]cluster.Member, 0, len(s.members)+1)
	found := false
	for _, m := range s.members {
		if m.Name == me.Name {
			found = true
			m.Sessions, m.Load, m.Draining, m.Shedding, m.Seen = me.Sessions, me.Load, me.Draining, me.Shedding, time.Now()
			m.ClientAddrs = addrs
		}
		out = append(out, m)
	}
	if !found {
		out = append(out, cluster.Member{Name: me.Name, Sessions: me.Sessions, Load: me.Load, Draining: me.Draining, Shedding: me.Shedding, ClientAddrs: addrs, Seen: time.Now()})
	}
	return out, s.policy, s.cfg.Balance.RetryAfter, true
}

func (s *Service) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !corsGET(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.mu.Lock()
	if s.n == nil {
		s.mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "stopped"})
		return
	}
	me := s.selfLocked(0)
	limit := s.policy.limit()
	s.mu.Unlock()
	status, code := "accepting", http.StatusOK
	switch {
	case me.Draining:
		status, code = "draining", http.StatusServiceUnavailable
	case me.Full():
		status, code = "full", http.StatusServiceUnavailable
	case me.Shedding:
		status, code = "shedding", http.StatusServiceUnavailable
	case me.Load >= limit:
		status, code = "overloaded", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "node": me.Name, "sessions": me.Sessions, "load": me.Load})
}

// corsGET allows GET/HEAD from any origin (browsers ask the dispatcher
// before opening a WebSocket); false when the request is answered.
func corsGET(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		writeJSON(w, http.StatusMethodNotAllowed, dispatchError{Error: "method not allowed"})
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
