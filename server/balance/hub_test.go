package balance_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

// hub is an in-process cluster: shared routes and member records, and
// node-to-node messages delivered by calling the peer's handler, as
// cluster/hazelcast with its links would.
type hub struct {
	mu      sync.Mutex
	nodes   map[string]*hubNode
	routes  map[string]map[string]cluster.Route // bare → full → route
	members map[string]cluster.Member
	frozen  map[string]bool // members whose record UpdateSelf no longer refreshes
}

func newHub() *hub {
	return &hub{nodes: map[string]*hubNode{}, routes: map[string]map[string]cluster.Route{},
		members: map[string]cluster.Member{}, frozen: map[string]bool{}}
}

// node returns a cluster.Cluster for one node of the hub.
func (h *hub) node(name string) *hubNode {
	return &hubNode{h: h, name: name, handlers: map[string]cluster.HandlerFunc{}}
}

// setMember puts a member record as is (a synthetic node, or a node's
// record made stale or draining); frozen keeps it from being refreshed.
func (h *hub) setMember(m cluster.Member, frozen bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.members[m.Name] = m
	h.frozen[m.Name] = frozen
}

func (h *hub) removeMember(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.members, name)
	delete(h.frozen, name)
}

type hubNode struct {
	h        *hub
	name     string
	mu       sync.Mutex
	handlers map[string]cluster.HandlerFunc
	started  bool
}

var _ cluster.Cluster = (*hubNode)(nil)

func (n *hubNode) NodeName() string { return n.name }

func (n *hubNode) Start(ctx context.Context) error {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	n.h.nodes[n.name] = n
	now := time.Now()
	n.h.members[n.name] = cluster.Member{Name: n.name, Started: now, Seen: now}
	n.mu.Lock()
	n.started = true
	n.mu.Unlock()
	return nil
}

func (n *hubNode) Stop(ctx context.Context) error {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	delete(n.h.nodes, n.name)
	delete(n.h.members, n.name)
	for bare, m := range n.h.routes {
		for full, r := range m {
			if r.Node == n.name {
				delete(m, full)
			}
		}
		if len(m) == 0 {
			delete(n.h.routes, bare)
		}
	}
	n.mu.Lock()
	n.started = false
	n.mu.Unlock()
	return nil
}

func (n *hubNode) Clustered() bool { return true }

func (n *hubNode) PutRoute(ctx context.Context, r cluster.Route) error {
	r.Node = n.name
	bare := cluster.BareJID(r.JID)
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	if n.h.routes[bare] == nil {
		n.h.routes[bare] = map[string]cluster.Route{}
	}
	n.h.routes[bare][r.JID] = r
	return nil
}

func (n *hubNode) DeleteRoute(ctx context.Context, full string) error {
	bare := cluster.BareJID(full)
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	if m := n.h.routes[bare]; m != nil && m[full].Node == n.name {
		delete(m, full)
	}
	return nil
}

func (n *hubNode) Routes(ctx context.Context, bare string) ([]cluster.Route, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	var out []cluster.Route
	for _, r := range n.h.routes[bare] {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out, nil
}

func (n *hubNode) Send(ctx context.Context, node, kind string, payload []byte) error {
	_, err := n.Call(ctx, node, kind, payload)
	return err
}

func (n *hubNode) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	n.h.mu.Lock()
	peer := n.h.nodes[node]
	n.h.mu.Unlock()
	if peer == nil {
		return nil, fmt.Errorf("hub: %s: %w", node, cluster.ErrNodeGone)
	}
	peer.mu.Lock()
	hd := peer.handlers[kind]
	peer.mu.Unlock()
	if hd == nil {
		return nil, fmt.Errorf("hub: %s: %w", kind, cluster.ErrNoHandler)
	}
	return hd(ctx, n.name, payload)
}

func (n *hubNode) Handle(kind string, h cluster.HandlerFunc) {
	n.mu.Lock()
	n.handlers[kind] = h
	n.mu.Unlock()
}

func (n *hubNode) Members(ctx context.Context) ([]cluster.Member, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	out := make([]cluster.Member, 0, len(n.h.members))
	for _, m := range n.h.members {
		out = append(out, copyMember(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (n *hubNode) Senior() bool { return false }

func (n *hubNode) UpdateSelf(fn func(m *cluster.Member)) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	if n.h.frozen[n.name] {
		return
	}
	m := copyMember(n.h.members[n.name])
	fn(&m)
	m.Name, m.Seen = n.name, time.Now()
	n.h.members[n.name] = m
}

func (n *hubNode) OnNodeDown(fn func(node string, routes []cluster.Route)) {}
func (n *hubNode) OnClusteredChange(fn func(clustered bool))               {}
func (n *hubNode) OnMembersChange(fn func())                               {}
func (n *hubNode) LinkStats() (cluster.LinkStats, bool)                    { return cluster.LinkStats{}, false }

func copyMember(m cluster.Member) cluster.Member {
	if m.ClientAddrs != nil {
		a := make(map[string]string, len(m.ClientAddrs))
		for k, v := range m.ClientAddrs {
			a[k] = v
		}
		m.ClientAddrs = a
	}
	return m
}
