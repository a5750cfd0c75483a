// Package balance spreads clients over the nodes of a cluster and moves
// them away from a node that is going down:
//
//   - load publishing: every node publishes its session count, a load
//     figure, its draining flag and its public client addresses in its
//     cluster.Member record (cluster.UpdateSelf), every
//     balance.publish_interval;
//   - redirects: a node that is draining, full (c2s.max_sessions) or over
//     balance.load_threshold answers new streams with the RFC 6120
//     <see-other-host/> stream error naming the least-loaded node that can
//     take them (RFC 7395 <close see-other-uri/> on WebSocket);
//   - draining: Service.Drain stops new sessions, sends every connected
//     client elsewhere (what they never acknowledged goes back through the
//     router: other resources or offline storage) and stops the node when it
//     is empty or at balance.drain_deadline;
//   - the dispatcher: GET /dispatch on the HTTP listener names the node a
//     client should connect to, or answers 503 with Retry-After when every
//     node is over its limit.
//
// README.md in this directory is the operator documentation (DNS SRV,
// HAProxy, when to use the dispatcher, the rolling restart script).
package balance

import (
	"math"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

// Transport names a way clients connect; the dispatcher's transport
// parameter takes the same names.
type Transport string

// Transports.
const (
	TransportC2S       Transport = "c2s"       // TCP with STARTTLS
	TransportC2STLS    Transport = "c2s_tls"   // TCP with direct TLS (XEP-0368)
	TransportBOSH      Transport = "bosh"      // XEP-0124/0206
	TransportWebSocket Transport = "websocket" // RFC 7395
)

// Keys of cluster.Member.ClientAddrs.
const (
	AddrC2S    = "c2s"
	AddrC2STLS = "c2s_tls"
	AddrHTTP   = "http"
	AddrHTTPS  = "https"
)

// HTTP paths of the BOSH and WebSocket endpoints (server/httpd).
const (
	pathBOSH      = "/http-bind"
	pathWebSocket = "/xmpp-websocket"
)

// ParseTransport maps a transport name to a Transport.
func ParseTransport(s string) (Transport, bool) {
	switch t := Transport(s); t {
	case TransportC2S, TransportC2STLS, TransportBOSH, TransportWebSocket:
		return t, true
	}
	return "", false
}

// Policy decides which nodes can take new clients.
//
// A node can take clients ("accepts") when it is live (its Seen is within
// TTL), not draining, not shedding load (over its admission rates, see
// server/c2s gate.go), has a weight above 0, and its published load is
// below LoadThreshold and below 1 (load 1 means full: c2s.max_sessions
// reached, or balance.capacity sessions).
type Policy struct {
	// TTL is how old a member's Seen may be before it counts as dead
	// (cluster.node_ttl). 0 trusts the member list.
	TTL time.Duration
	// LoadThreshold is balance.load_threshold.
	LoadThreshold float64
	// Weights are balance.weights (missing nodes weigh 1).
	Weights map[string]float64
}

// Weight returns a node's weight.
func (p Policy) Weight(node string) float64 {
	if w, ok := p.Weights[node]; ok {
		return w
	}
	return 1
}

// Live reports whether m was seen within TTL.
func (p Policy) Live(m cluster.Member, now time.Time) bool {
	if p.TTL <= 0 {
		return true
	}
	return !m.Seen.IsZero() && now.Sub(m.Seen) <= p.TTL
}

// limit is the load at and above which a node takes no new clients.
func (p Policy) limit() float64 {
	if p.LoadThreshold > 0 && p.LoadThreshold < 1 {
		return p.LoadThreshold
	}
	return 1
}

// Accepting reports whether m can take new clients: live, not draining,
// not shedding load, weighing more than 0 and under its load threshold.
func (p Policy) Accepting(m cluster.Member, now time.Time) bool {
	return p.Live(m, now) && !m.Draining && !m.Shedding && p.Weight(m.Name) > 0 && m.Load < p.limit()
}

// Pick returns the accepting member that serves tr with the lowest
// (load + extra[name]) / weight, ties broken by name; exclude (this node)
// is skipped. extra is load the caller has already sent a node's way
// since the figures were published (nil for none).
func (p Policy) Pick(members []cluster.Member, tr Transport, now time.Time, exclude string, extra map[string]float64) (cluster.Member, bool) {
	best, bestScore, found := cluster.Member{}, math.Inf(1), false
	for _, m := range members {
		if m.Name == exclude || !p.Accepting(m, now) || RedirectAddr(m, tr) == "" {
			continue
		}
		load := m.Load + extra[m.Name]
		if load >= p.limit() {
			continue
		}
		score := load / p.Weight(m.Name)
		if !found || score < bestScore || (score == bestScore && m.Name < best.Name) {
			best, bestScore, found = m, score, true
		}
	}
	return best, found
}

// Candidates returns the accepting members that serve tr, sorted by name.
func (p Policy) Candidates(members []cluster.Member, tr Transport, now time.Time) []cluster.Member {
	var out []cluster.Member
	for _, m := range members {
		if p.Accepting(m, now) && RedirectAddr(m, tr) != "" {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Self is this node's own, current figures.
type Self struct {
	Name        string
	Sessions    int // open client streams, the new one not counted
	MaxSessions int // c2s.max_sessions (0: no limit)
	Load        float64
	Draining    bool
	Shedding    bool // over its admission rates (server/c2s gate.go)
}

// Full reports whether the node is at c2s.max_sessions.
func (s Self) Full() bool { return s.MaxSessions > 0 && s.Sessions >= s.MaxSessions }

// Decision is what to do with a new stream. The zero value serves it.
type Decision struct {
	// Node and Addr name the node to redirect to (see-other-host).
	Node, Addr string
	// Refuse is the stream error condition to close with when no node can
	// take the stream: system-shutdown (draining) or resource-constraint
	// (full).
	Refuse string
}

// Serve reports whether the decision is to serve the stream here.
func (d Decision) Serve() bool { return d.Addr == "" && d.Refuse == "" }

// Stream error conditions of refusals (RFC 6120 §4.9.3).
const (
	CondSystemShutdown     = "system-shutdown"
	CondResourceConstraint = "resource-constraint"
)

// Decide decides for a new stream of transport tr:
//   - a node that is not draining, not full and under its load threshold
//     serves it;
//   - otherwise it redirects to Pick's choice among the other nodes;
//   - with nowhere to go, a draining node refuses with system-shutdown
//     (RFC 6120 §4.9.3.17: the server is being shut down), a full node with
//     resource-constraint (§4.9.3.16: it lacks the resources to serve the
//     stream), and a node that is only over its soft load threshold serves
//     it anyway (the threshold is a preference; c2s.max_sessions is the
//     hard limit).
func (p Policy) Decide(self Self, members []cluster.Member, tr Transport, now time.Time, extra map[string]float64) Decision {
	over := self.Load >= p.limit()
	if !self.Draining && !self.Full() && !over {
		return Decision{}
	}
	if m, ok := p.Pick(members, tr, now, self.Name, extra); ok {
		return Decision{Node: m.Name, Addr: RedirectAddr(m, tr)}
	}
	switch {
	case self.Draining:
		return Decision{Refuse: CondSystemShutdown}
	case self.Full():
		return Decision{Refuse: CondResourceConstraint}
	}
	return Decision{}
}

// RedirectAddr is what a see-other-host names for m and tr: host:port of
// the matching listener, and for WebSocket the endpoint URI (ws:// or
// wss://), which the WebSocket connector sends as see-other-uri. "" when m
// does not serve tr.
func RedirectAddr(m cluster.Member, tr Transport) string {
	switch tr {
	case TransportC2S:
		return m.ClientAddrs[AddrC2S]
	case TransportC2STLS:
		return m.ClientAddrs[AddrC2STLS]
	case TransportBOSH:
		if a := m.ClientAddrs[AddrHTTPS]; a != "" {
			return a
		}
		return m.ClientAddrs[AddrHTTP]
	case TransportWebSocket:
		return URL(m, tr)
	}
	return ""
}

// URL is the BOSH or WebSocket endpoint URL of m (HTTPS preferred), ""
// when m has no HTTP listener or tr is a TCP transport.
func URL(m cluster.Member, tr Transport) string {
	var path, plain, secure string
	switch tr {
	case TransportBOSH:
		path, plain, secure = pathBOSH, "http://", "https://"
	case TransportWebSocket:
		path, plain, secure = pathWebSocket, "ws://", "wss://"
	default:
		return ""
	}
	if a := m.ClientAddrs[AddrHTTPS]; a != "" {
		return secure + a + path
	}
	if a := m.ClientAddrs[AddrHTTP]; a != "" {
		return plain + a + path
	}
	return ""
}

// publicAddr turns a bound listener address into one clients can dial:
// a wildcard host (0.0.0.0, ::, empty) becomes host.
func publicAddr(bound, host string) string {
	h, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	ip := net.ParseIP(h)
	if h == "" || (ip != nil && ip.IsUnspecified()) {
		if host == "" {
			return bound
		}
		h = host
	}
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + port
	}
	return h + ":" + port
}
