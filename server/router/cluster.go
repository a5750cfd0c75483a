package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/wire"
)

// Message kinds the router exchanges with other nodes.
const (
	// KindStanza carries one stanza for one local full JID of the receiving
	// node: the full JID, a newline, then the stanza, either as a format
	// byte 0x01 followed by wire's binary element encoding (what this
	// version sends: several times cheaper to decode) or as XML starting
	// with '<' (accepted, for tools and other versions).
	KindStanza = "stanza"
	// KindKick asks the owning node to log out and close one session
	// (JSON kickRequest); the reply is "1" when a session was closed.
	KindKick = "kick"
)

type kickRequest struct {
	JID       string `json:"jid"`
	Condition string `json:"cond"`
	Text      string `json:"text,omitempty"`
}

// undeliveredNotifier is implemented by clusters whose Send queues: they
// report messages accepted but never written to their node.
type undeliveredNotifier interface {
	OnUndelivered(fn func(node, kind string, payload []byte))
}

// registerCluster installs the router's handlers on the cluster.
func (r *Router) registerCluster() {
	r.cluster.Handle(KindStanza, r.handleStanza)
	r.cluster.Handle(KindKick, r.handleKick)
	r.cluster.Handle(KindBacklog, r.handleBacklog)
	r.cluster.OnNodeDown(r.nodeDown)
	r.cluster.OnNodeDown(r.iqs.nodeDown)
	r.cluster.OnClusteredChange(r.clusteredChange)
	if u, ok := r.cluster.(undeliveredNotifier); ok {
		u.OnUndelivered(r.undelivered)
	}
}

// HandBack makes the router give back, unhandled, the stanzas and copies
// other nodes send it (cluster.ErrHandBack: their nodes route them again
// or fall back), from the moment a stopping node's sessions are gone and
// before its plugins stop: what arrives then has no session here, and
// offline storage would run it through plugins that are stopping (a
// stopped block list fails closed and refuses it; a stopped archive
// would miss it). It returns once the messages being handled when it was
// called are done (or ctx ends): those went through the plugins while
// they ran. HandBack(ctx, false) undoes it when the node starts again,
// and StopOfflineRetry too.
func (r *Router) HandBack(ctx context.Context, on bool) {
	if !on {
		r.handlers.open()
		r.retry.resume()
		return
	}
	r.handlers.close(ctx)
}

// handlerGate counts the link handlers running that HandBack waits for,
// and turns new ones away once closed. It is on every stanza another node
// sends, so entering and leaving are two atomic operations; the mutex is
// taken only while closing. (Not a sync.RWMutex: a handler may reach
// another of this router's handlers in the same goroutine, and a waiting
// writer would deadlock a nested read lock.) enter adds itself before it
// looks at closed and close sets closed before it looks at running, so
// either the handler sees the gate closed or close sees it running.
type handlerGate struct {
	running atomic.Int64
	closed  atomic.Bool

	mu   sync.Mutex
	idle chan struct{} // closed when running reaches 0, while closing
}

// enter reports whether a handler may run; if so, leave must follow.
func (g *handlerGate) enter() bool {
	g.running.Add(1)
	if g.closed.Load() {
		g.leave()
		return false
	}
	return true
}

func (g *handlerGate) leave() {
	if g.running.Add(-1) != 0 || !g.closed.Load() {
		return
	}
	g.mu.Lock()
	if g.idle != nil && g.running.Load() == 0 {
		close(g.idle)
		g.idle = nil
	}
	g.mu.Unlock()
}

func (g *handlerGate) close(ctx context.Context) {
	g.mu.Lock()
	g.closed.Store(true)
	if g.running.Load() == 0 {
		g.mu.Unlock()
		return
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

func (g *handlerGate) open() {
	g.mu.Lock()
	g.closed.Store(false)
	g.mu.Unlock()
}

// undelivered falls back for a stanza a link accepted but could not hand
// to its node (the node died with it in flight): stored offline or
// bounced, never dropped.
func (r *Router) undelivered(node, kind string, payload []byte) {
	switch kind {
	case KindDone, KindDrop:
		r.custody.noticeFailed(node, kind, payload, cluster.ErrNodeGone)
		return
	case KindStanza:
	default:
		return
	}
	full, el, err := r.parseStanzaMessage(payload)
	if err != nil {
		r.log.Warn("router: undeliverable cluster message", "node", node, "err", err)
		return
	}
	r.fallback(context.Background(), el, full)
}

// formatBinary marks a stanza in wire's binary element encoding.
const formatBinary = 0x01

// sendStanza sends a stanza to a full JID bound on another node. The
// payload is the link's to keep (it may be queued after Send returns).
func (r *Router) sendStanza(ctx context.Context, node, full string, el *wire.Element) error {
	payload := make([]byte, 0, len(full)+2+256)
	payload = append(payload, full...)
	payload = append(payload, '\n', formatBinary)
	payload = wire.AppendBinary(payload, el)
	// Not bounded here: a link may keep using the context while the
	// payload waits in its queue; it applies its own timeouts.
	return r.cluster.Send(ctx, node, KindStanza, payload)
}

// handleStanza delivers a stanza another node routed to a local session,
// falling back (offline storage, bounce) when the session is gone.
func (r *Router) handleStanza(ctx context.Context, fromNode string, payload []byte) ([]byte, error) {
	if !r.handlers.enter() {
		return nil, cluster.ErrHandBack
	}
	full, el, err := r.parseStanzaMessage(payload)
	if err != nil {
		r.handlers.leave()
		return nil, err
	}
	r.inbox.run(full, func() { // inbox.go; HandBack waits for it
		defer r.handlers.leave()
		if !r.deliverLocal(ctx, full, el) {
			r.fallback(ctx, el, full)
		}
	})
	return nil, nil
}

func (r *Router) parseStanzaMessage(payload []byte) (string, *wire.Element, error) {
	i := bytes.IndexByte(payload, '\n')
	if i <= 0 || i+1 >= len(payload) {
		return "", nil, errMalformedLink
	}
	full, body := string(payload[:i]), payload[i+1:]
	var el *wire.Element
	var err error
	switch body[0] {
	case formatBinary:
		var rest []byte
		el, rest, err = wire.DecodeBinary(body[1:])
		if err == nil && len(rest) != 0 {
			err = errMalformedLink
		}
	case '<':
		el, err = wire.Parse(body, r.linkLimits())
	default:
		err = errMalformedLink
	}
	if err != nil {
		return "", nil, err
	}
	if !el.IsStanza() {
		return "", nil, errMalformedLink
	}
	return full, el, nil
}

var errMalformedLink = errors.New("router: malformed stanza message from another node")

// kickRemote asks the node owning rt to log out and close that session,
// and waits for it, so that its route is gone before we publish ours.
func (r *Router) kickRemote(ctx context.Context, rt cluster.Route, cond, text string) bool {
	payload, _ := json.Marshal(kickRequest{JID: rt.JID, Condition: cond, Text: text})
	cctx, cancel := r.clusterCtx(ctx)
	defer cancel()
	reply, err := r.cluster.Call(cctx, rt.Node, KindKick, payload)
	if err != nil {
		r.log.Warn("router: kick on another node failed", "node", rt.Node, "jid", rt.JID, "err", err)
		return false
	}
	return string(reply) == "1"
}

func (r *Router) handleKick(ctx context.Context, fromNode string, payload []byte) ([]byte, error) {
	var req kickRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	r.mu.RLock()
	s := r.sessions[req.JID]
	r.mu.RUnlock()
	if s == nil || !r.logout(ctx, s, nil) {
		return []byte("0"), nil
	}
	s.s.Close(req.Condition, req.Text)
	return []byte("1"), nil
}

// nodeDown runs on every survivor when a node disappears, with the routes
// it owned (already removed from the table). For each user that was
// available there, unavailable presence goes out on the user's behalf as
// if the session had logged out. So that contacts get it exactly once
// without the survivors coordinating, each survivor delivers it only to
// its own local sessions; the senior node also sends it to other domains
// and records last activity.
func (r *Router) nodeDown(node string, routes []cluster.Route) {
	ctx := context.Background()
	senior := r.cluster.Senior()
	for _, rt := range routes {
		bare := cluster.BareJID(rt.JID)
		if rt.Available {
			un := wire.New("presence", "type", "unavailable", "from", rt.JID)
			subscribers := r.subscribers(ctx, bare, "presence after node down")
			for _, c := range subscribers {
				ca, err := wire.ParseJID(c)
				if err != nil {
					continue
				}
				if ca.Domain() == r.domain {
					r.deliverLocalAvailable(ctx, ca.Bare(), withTo(un, ca.Bare()))
				} else if senior && r.fed != nil {
					r.presenceOut(ctx, withTo(un, c))
				}
			}
			if !contains(subscribers, bare) {
				r.deliverLocalAvailable(ctx, bare, withTo(un, bare))
			}
		}
		if senior {
			if left, err := r.routes(ctx, bare); err == nil && len(left) == 0 {
				r.setLast(ctx, bare, "")
			}
		}
	}
}

// deliverLocalAvailable delivers to the available sessions of a user on
// this node only.
func (r *Router) deliverLocalAvailable(ctx context.Context, bare string, el *wire.Element) {
	r.mu.RLock()
	var targets []string
	for _, s := range r.byBare[bare] {
		if s.available {
			targets = append(targets, s.full)
		}
	}
	r.mu.RUnlock()
	for _, full := range targets {
		r.deliverLocal(ctx, full, el)
	}
}

// clusteredChange runs when the node (re)joins the cluster: it republishes
// every local route, so the shared table is whole again; hands local
// sessions what was stored offline for them meanwhile; then resends the
// presence of every available local session to its subscribers and probes
// its contacts, so presence learned or missed while apart is correct again.
func (r *Router) clusteredChange(clustered bool) {
	if !clustered {
		return
	}
	ctx := context.Background()
	r.republish(ctx)
	r.recheckAllOffline(ctx)
	r.resyncPresence(ctx)
}

// recheckAllOffline delivers the offline queue of every user with an
// available local session that takes offline messages (priority >= 0),
// now and once more offlineRecheck later. While the node was apart or
// rejoining (the switch off, Hazelcast away, the nodes re-registering one
// after another), another node may have found no route to such a session
// and stored a message for it; without this it would wait for the
// user's next login. The second look catches a message stored by a node
// whose copy of the routing table learnt this node's routes only after
// the first.
func (r *Router) recheckAllOffline(ctx context.Context) {
	if r.store == nil {
		return
	}
	seen := map[string]bool{}
	r.mu.RLock()
	var bares []string
	for _, s := range r.sessions {
		if s.available && s.priority >= 0 && !seen[s.bare] {
			seen[s.bare] = true
			bares = append(bares, s.bare)
		}
	}
	r.mu.RUnlock()
	flush := func() {
		for _, bare := range bares {
			r.flushOffline(ctx, bare)
		}
	}
	flush()
	// One timer for all of them: a timer each would query the store for
	// every online user at the same instant.
	time.AfterFunc(r.offlineRecheck, func() {
		if r.clustered() {
			flush()
		}
	})
}

// resyncPresence replays each available local session's presence: to its
// subscribers (other resources of the user already have it) and probes to
// the contacts it is subscribed to.
func (r *Router) resyncPresence(ctx context.Context) {
	type avail struct {
		full, bare string
		pres       *wire.Element
	}
	var list []avail
	r.mu.RLock()
	for _, s := range r.sessions {
		if s.available && s.presence != nil {
			list = append(list, avail{s.full, s.bare, s.presence})
		}
	}
	r.mu.RUnlock()
	for _, a := range list {
		dctx, cancel := r.dbCtx(ctx)
		items, _, err := r.store.GetRoster(dctx, a.bare)
		cancel()
		if err != nil {
			r.log.Warn("router: roster unavailable for presence resync", "jid", a.bare, "err", err)
			continue
		}
		for _, it := range items {
			st := stateOf(it)
			if st.from() && it.Contact != a.bare {
				r.presenceOut(ctx, withTo(a.pres, it.Contact))
			}
			if st.to() {
				r.presenceOut(ctx, wire.New("presence", "type", "probe", "id", randomID("probe-"), "from", a.full, "to", it.Contact))
			}
		}
	}
}

// republish writes every local session's route again.
func (r *Router) republish(ctx context.Context) {
	r.mu.RLock()
	routes := make([]cluster.Route, 0, len(r.sessions))
	for _, s := range r.sessions {
		routes = append(routes, s.routeLocked(r.node))
	}
	r.mu.RUnlock()
	for _, rt := range routes {
		if err := r.putRoute(ctx, rt); err != nil {
			r.log.Warn("router: republishing route failed", "jid", rt.JID, "err", err)
		}
	}
}
