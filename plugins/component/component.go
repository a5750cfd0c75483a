// Package component is XEP-0114 external components: gateways, bridges
// and bots (biboumi, slidge, spectrum) that connect to the server over
// TCP with a shared secret and serve a subdomain of their own.
//
// Files:
//   - component.go: the plugin; each configured domain is claimed with
//     Host.ServeDomain, so the router hands every stanza for it (from
//     local clients, the server, other nodes' plugins and s2s peers) to
//     deliver; the cluster view of who holds connections.
//   - stream.go: the listener, the jabber:component:accept handshake and
//     one reader and one writer per connection.
//
// Cluster: a component may connect to any node, or to several. Each node
// keeps its own connections and tells every other node how many it holds
// per domain ("conns", a full snapshot with a sequence number, sent on
// every change and to each node that joins; a node that leaves or dies
// takes its entries with it). A stanza for the component is sent to one
// connection of the whole cluster, picked by a hash of the sender's full
// JID over the connections every node holds: one session's stanzas keep
// their order on one connection while sessions spread over all of them.
// A connection on another node is reached with Cluster.Send ("deliver");
// that node writes it to one of its connections, or bounces it when it
// has none any more.
//
// Nothing vanishes: with no connection anywhere a stanza is bounced with
// service-unavailable; one for a node that cannot be reached, or queued
// on a connection that closed before writing it, with
// remote-server-timeout; one that finds the connection's queue full, with
// resource-constraint.
package component

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0114.component"

// NS is the stream namespace of accepted components.
const NS = "jabber:component:accept"

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin accepts components and routes their domains.
type Plugin struct {
	host    plugins.Host
	cfg     conf.ComponentsConfig
	log     *slog.Logger
	cluster plugins.Cluster
	ln      net.Listener
	wg      sync.WaitGroup
	cleanup []func()
	stats   counters

	mu     sync.Mutex
	local  map[string][]*conn        // domain → this node's connections, in connection order
	remote map[string]remoteSnapshot // node → its connections per domain
	seq    uint64                    // this node's snapshot number, growing
	closed bool
}

// remoteSnapshot is one node's connection counts, newest by Seq.
type remoteSnapshot struct {
	Seq   uint64         `json:"seq"`
	Conns map[string]int `json:"conns"`
}

var _ plugins.Plugin = (*Plugin)(nil)

// New returns the plugin.
func New() *Plugin {
	return &Plugin{local: map[string][]*conn{}, remote: map[string]remoteSnapshot{}}
}

func (p *Plugin) ID() string { return ID }

// Addr returns the listener's address, or nil when components are off.
func (p *Plugin) Addr() net.Addr {
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host, p.log, p.cfg = host, host.Logger(), host.Config().Components
	// Snapshot numbers grow across restarts, so that a node that restarts
	// within cluster.node_ttl is not taken for its own past.
	p.seq = uint64(time.Now().UnixNano())
	if conf.Off(p.cfg.Listen) {
		return nil
	}
	p.cluster = host.Cluster()
	if r, ok := host.(interface{ Registry() prometheus.Registerer }); ok && r.Registry() != nil {
		p.cleanup = append(p.cleanup, p.registerMetrics(r.Registry()))
	}
	p.cleanup = append(p.cleanup,
		p.cluster.Handle("conns", p.onSnapshot),
		p.cluster.Handle("deliver", p.onDeliver),
		p.cluster.Handle("list", p.onList),
		p.cluster.OnMembersChange(p.onMembers))
	domains := make([]string, 0, len(p.cfg.Secrets))
	for d := range p.cfg.Secrets {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		release, err := host.ServeDomain(plugins.Service{Domain: d, Name: d, Handle: p.handle})
		if err != nil {
			p.stopCleanup()
			return err
		}
		p.cleanup = append(p.cleanup, release)
	}
	ln, err := net.Listen("tcp", conf.ListenAddr(p.cfg.Listen))
	if err != nil {
		p.stopCleanup()
		return err
	}
	p.ln = ln
	p.log.Info("component listener started", "addr", ln.Addr().String(), "domains", domains)
	p.wg.Add(1)
	go p.accept()
	// Nodes already in the cluster learn of us when they see us join;
	// ask them for theirs now, in case we saw them before we started.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.askAll()
	}()
	return nil
}

func (p *Plugin) stopCleanup() {
	for i := len(p.cleanup) - 1; i >= 0; i-- {
		p.cleanup[i]()
	}
	p.cleanup = nil
}

// Stop first releases the domains and the cluster handlers (so nothing
// new arrives and no callback starts work), then closes the listener and
// the connections, whose queued stanzas bounce, and waits for them.
func (p *Plugin) Stop(ctx context.Context) error {
	p.stopCleanup()
	p.mu.Lock()
	p.closed = true
	var all []*conn
	for _, cs := range p.local {
		all = append(all, cs...)
	}
	p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
	}
	for _, c := range all {
		c.close("server shutting down")
	}
	p.wg.Wait()
	return nil
}

// slot is one connection of the cluster: a node and the index of one of
// its connections to the domain.
type slot struct {
	node  string
	index int
}

// slots lists the domain's connections on every node, in an order every
// node computes alike (by node name, then index).
func (p *Plugin) slots(domain string) []slot {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := map[string]int{p.cluster.NodeName(): len(p.local[domain])}
	for node, s := range p.remote {
		counts[node] = s.Conns[domain]
	}
	nodes := make([]string, 0, len(counts))
	for n := range counts {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var out []slot
	for _, n := range nodes {
		for i := range counts[n] {
			out = append(out, slot{n, i})
		}
	}
	return out
}

// pick hashes the sender's JID over n choices.
func pick(from string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(from))
	return int(h.Sum32() % uint32(n))
}

// handle is the service's Handle: deliver, counting what the router
// bounces.
func (p *Plugin) handle(ctx context.Context, el *wire.Element) error {
	err := p.deliver(ctx, el)
	if err != nil {
		p.stats.bounced.Add(1)
	}
	return err
}

// deliver, on the node where a stanza for the component arrived, sends
// it to one of the component's connections.
func (p *Plugin) deliver(ctx context.Context, el *wire.Element) error {
	domain := wire.JIDOf(el.To()).Bare()
	if i := indexByte(domain, '@'); i >= 0 {
		domain = domain[i+1:]
	}
	// A node that cannot be reached is skipped for this stanza only: the
	// cluster drops it from the view when it lists it gone (onMembers),
	// and a link that fails for a moment must not hide its connections.
	var unreachable map[string]bool
	for {
		var slots []slot
		for _, s := range p.slots(domain) {
			if !unreachable[s.node] {
				slots = append(slots, s)
			}
		}
		if len(slots) == 0 {
			if unreachable != nil {
				return wire.ErrRemoteServerTimeout
			}
			return wire.ErrServiceUnavailable
		}
		s := slots[pick(el.From(), len(slots))]
		if s.node == p.cluster.NodeName() {
			return p.writeLocal(domain, s.index, el)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.cluster.Send(sctx, s.node, "deliver", wire.AppendBinary(nil, el))
		cancel()
		if err == nil {
			return nil
		}
		p.log.Warn("component: node holding a connection unreachable", "node", s.node, "domain", domain, "err", err)
		if unreachable == nil {
			unreachable = map[string]bool{}
		}
		unreachable[s.node] = true
	}
}

func indexByte(s string, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// writeLocal queues el on this node's connection index (any of them when
// that one is gone).
func (p *Plugin) writeLocal(domain string, index int, el *wire.Element) error {
	p.mu.Lock()
	cs := p.local[domain]
	if len(cs) == 0 {
		p.mu.Unlock()
		return wire.ErrServiceUnavailable
	}
	c := cs[index%len(cs)]
	p.mu.Unlock()
	return c.queue(el)
}

// onDeliver writes a stanza another node sent for one of our connections,
// or bounces it when we have none any more.
func (p *Plugin) onDeliver(ctx context.Context, from string, payload []byte) ([]byte, error) {
	el, _, err := wire.DecodeBinary(payload)
	if err != nil {
		return nil, err
	}
	domain := wire.JIDOf(el.To()).Bare()
	if i := indexByte(domain, '@'); i >= 0 {
		domain = domain[i+1:]
	}
	p.mu.Lock()
	n := len(p.local[domain])
	p.mu.Unlock()
	if n == 0 {
		p.bounce(ctx, el, wire.ErrServiceUnavailable)
		return nil, nil
	}
	if err := p.writeLocal(domain, pick(el.From(), n), el); err != nil {
		se, ok := err.(*wire.StanzaError)
		if !ok {
			se = wire.ErrInternalServerError
		}
		p.bounce(ctx, el, se)
	}
	return nil, nil
}

// bounce answers a stanza that could not reach the component with an
// error from the component's address, as the router does.
func (p *Plugin) bounce(ctx context.Context, el *wire.Element, se *wire.StanzaError) {
	p.stats.bounced.Add(1)
	if el.IsError() || el.From() == "" || (el.Name == "iq" && el.Type() == "result") {
		return
	}
	p.host.Route(ctx, wire.ErrorReply(el, se))
}

// register adds a connection that completed its handshake and tells the
// cluster.
func (p *Plugin) register(c *conn) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.local[c.domain] = append(p.local[c.domain], c)
	p.mu.Unlock()
	p.publish()
	return true
}

// unregister removes a closed connection and tells the cluster.
func (p *Plugin) unregister(c *conn) {
	p.mu.Lock()
	cs := slices.DeleteFunc(p.local[c.domain], func(x *conn) bool { return x == c })
	if len(cs) == 0 {
		delete(p.local, c.domain)
	} else {
		p.local[c.domain] = cs
	}
	p.mu.Unlock()
	p.publish()
}

// snapshot returns this node's connection counts, under a new number
// when bump (after a change).
func (p *Plugin) snapshot(bump bool) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bump {
		p.seq++
	}
	s := remoteSnapshot{Seq: p.seq, Conns: map[string]int{}}
	for d, cs := range p.local {
		s.Conns[d] = len(cs)
	}
	b, _ := json.Marshal(s)
	return b
}

// publish sends this node's snapshot to every other member.
func (p *Plugin) publish() {
	b := p.snapshot(true)
	for _, m := range p.cluster.Members() {
		if m.Name != p.cluster.NodeName() {
			p.sendSnapshot(m.Name, b)
		}
	}
}

func (p *Plugin) sendSnapshot(node string, b []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.cluster.Send(ctx, node, "conns", b); err != nil {
		p.log.Debug("component: could not send connections", "node", node, "err", err)
	}
}

// onSnapshot keeps another node's snapshot unless a newer one came first.
func (p *Plugin) onSnapshot(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var s remoteSnapshot
	if err := json.Unmarshal(payload, &s); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.remote[from]; !ok || s.Seq > old.Seq {
		p.remote[from] = s
	}
	return nil, nil
}

// onList answers a node that asks for this node's snapshot.
func (p *Plugin) onList(ctx context.Context, from string, payload []byte) ([]byte, error) {
	return p.snapshot(false), nil
}

// askAll asks every other member for its snapshot: a node that starts
// into a running cluster may have seen the others before its handlers
// were there to hear from them.
func (p *Plugin) askAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range p.cluster.CallAll(ctx, "list", nil) {
		if a.Err != nil || a.Node == p.cluster.NodeName() {
			continue
		}
		_, _ = p.onSnapshot(ctx, a.Node, a.Payload)
	}
}

// onMembers drops the entries of nodes that left and sends ours to nodes
// that joined (which send theirs when they see us).
func (p *Plugin) onMembers(ch plugins.MembersChange) {
	in := func(list []plugins.Member, name string) bool {
		return slices.ContainsFunc(list, func(m plugins.Member) bool { return m.Name == name })
	}
	var joined []string
	for _, m := range ch.Before {
		if !in(ch.After, m.Name) {
			p.forget(m.Name)
		}
	}
	for _, m := range ch.After {
		if m.Name != p.cluster.NodeName() && !in(ch.Before, m.Name) {
			joined = append(joined, m.Name)
		}
	}
	if len(joined) == 0 {
		return
	}
	b := p.snapshot(false)
	p.wg.Add(1)
	go func() { // callbacks must not block
		defer p.wg.Done()
		for _, n := range joined {
			p.sendSnapshot(n, b)
		}
	}()
}

func (p *Plugin) forget(node string) {
	p.mu.Lock()
	delete(p.remote, node)
	p.mu.Unlock()
}
