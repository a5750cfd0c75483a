package router

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// An IQ request forwarded to a session on another node is answered by
// that session's client. When the node dies before the answer comes
// back, nothing would ever answer it: the requester's client waits out
// its own timeout (often a minute), and a request the server had
// acknowledged with XEP-0198 is neither delivered nor bounced, which
// crash safety promises (CRASHSAFETY.md). So the node that forwarded the
// request remembers it until an answer reaches the requester through this
// node (any local delivery of a result or error with the same addresses
// and id), and, when the other node dies first, answers the requester
// with <service-unavailable/>, as RFC 6121 §8.5.3.2.2 has the server
// answer a request to a resource that is not online. Unless the
// resource is online again elsewhere by then (a resumption moved it):
// its answer may still come.
//
// Bounded: a request is forgotten after pendingIQKeep (clients give up
// long before) and at most pendingIQMax are remembered per node; past
// that a request is forwarded unremembered (counted).

const (
	pendingIQKeep = 2 * time.Minute
	pendingIQMax  = 100_000
)

// iqKey names an outstanding request by what its answer carries: the
// answer's to is the request's from and the other way round.
type iqKey struct{ requester, responder, id string }

type pendingReq struct {
	typ string
	at  time.Time
}

type pendingIQs struct {
	r *Router

	mu     sync.Mutex
	byNode map[string]map[iqKey]pendingReq
	n      atomic.Int64 // entries in byNode; changed under mu, read without
	swept  time.Time

	answeredDown, overflow prometheus.Counter
}

func newPendingIQs(r *Router, reg prometheus.Registerer) *pendingIQs {
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, not exported
	}
	return &pendingIQs{
		r:      r,
		byNode: map[string]map[iqKey]pendingReq{},
		answeredDown: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aviary_router_iq_answered_for_dead_node_total",
			Help: "IQ requests forwarded to a session on another node that died before its client answered, answered with service-unavailable.",
		})),
		overflow: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aviary_router_iq_pending_overflow_total",
			Help: "IQ requests forwarded to another node without being remembered, past the bound on outstanding ones.",
		})),
	}
}

// forwarding remembers a request about to be forwarded to node; the
// caller calls forgot if the forward failed. Remembered before the send,
// so an answer that comes back at once finds it.
//
// Only requests from this domain's users are remembered: their answers
// come back to a local session (of this node or, after a move, another),
// where answered sees them; an answer to another domain leaves through
// s2s, where nothing would.
func (p *pendingIQs) forwarding(node string, el *wire.Element, responder wire.JID) (iqKey, bool) {
	k := iqKey{el.From(), responder.String(), el.ID()}
	if k.id == "" || domainOf(k.requester) != p.r.domain {
		return k, false
	}
	now := p.r.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.swept) > pendingIQKeep/4 {
		p.sweepLocked(now)
	}
	if p.n.Load() >= pendingIQMax {
		p.overflow.Inc()
		return k, false
	}
	m := p.byNode[node]
	if m == nil {
		m = map[iqKey]pendingReq{}
		p.byNode[node] = m
	}
	if _, dup := m[k]; !dup {
		p.n.Add(1)
	}
	m[k] = pendingReq{typ: el.Type(), at: now}
	return k, true
}

// forgot drops a request whose forward failed (the caller answers it).
func (p *pendingIQs) forgot(node string, k iqKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.byNode[node]; m != nil {
		if _, ok := m[k]; ok {
			delete(m, k)
			p.n.Add(-1)
		}
	}
}

// answered notes an IQ result or error delivered to a local session:
// the request it answers, wherever it went, is no longer outstanding.
func (p *pendingIQs) answered(el *wire.Element) {
	if p.n.Load() == 0 {
		return // the usual case: no lock for every result a client gets
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := iqKey{el.To(), el.From(), el.ID()}
	for _, m := range p.byNode {
		if _, ok := m[k]; ok {
			delete(m, k)
			p.n.Add(-1)
			return
		}
	}
}

func (p *pendingIQs) sweepLocked(now time.Time) {
	p.swept = now
	for node, m := range p.byNode {
		for k, q := range m {
			if now.Sub(q.at) > pendingIQKeep {
				delete(m, k)
				p.n.Add(-1)
			}
		}
		if len(m) == 0 {
			delete(p.byNode, node)
		}
	}
}

// nodeDown answers the requests outstanding at node, which died.
func (p *pendingIQs) nodeDown(node string, _ []cluster.Route) {
	p.mu.Lock()
	m := p.byNode[node]
	delete(p.byNode, node)
	p.n.Add(-int64(len(m)))
	p.mu.Unlock()
	if len(m) == 0 {
		return
	}
	ctx := context.Background()
	n := 0
	for k, q := range m {
		if p.r.now().Sub(q.at) > pendingIQKeep {
			continue
		}
		if a, err := wire.ParseJID(k.responder); err == nil && a.Domain() == p.r.domain {
			if rt, ok := p.r.routeFor(ctx, a); ok && rt.Node != node {
				continue // online again elsewhere: its answer may come
			}
		}
		req := wire.New("iq", "type", q.typ, "from", k.requester, "to", k.responder, "id", k.id)
		p.r.bounce(ctx, req, wire.ErrServiceUnavailable)
		n++
	}
	if n > 0 {
		p.answeredDown.Add(float64(n))
		p.r.log.Info("router: answered IQ requests a dead node's sessions had not", "node", node, "requests", n)
	}
}

// outstanding returns how many requests are remembered.
func (p *pendingIQs) outstanding() int { return int(p.n.Load()) }

// domainOf is the domain part of a JID the server stamped (normalized).
func domainOf(full string) string {
	bare := wire.BareJID(full)
	if i := strings.IndexByte(bare, '@'); i >= 0 {
		return bare[i+1:]
	}
	return bare
}
