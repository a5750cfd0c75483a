// Package local is the one-node Cluster: routes live in memory, the only
// member is this node, and messages can only reach this node's own
// handlers. It is what `aviary serve` uses without Hazelcast, and what a
// Hazelcast node falls back to while clustering is off.
package local

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

var _ cluster.Cluster = (*Cluster)(nil)

// Cluster is a single-node cluster.Cluster. The zero value is not usable;
// call New. All methods are safe for concurrent use.
type Cluster struct {
	name string

	mu         sync.RWMutex
	membersFns []func()
	self       cluster.Member
	routes     map[string]map[string]cluster.Route // bare JID → full JID → route
	handlers   map[string]cluster.HandlerFunc
}

// New returns a one-node cluster named name (the host name when empty).
func New(name string) *Cluster {
	if name == "" {
		name, _ = os.Hostname()
		if name == "" {
			name = "local"
		}
	}
	now := time.Now()
	return &Cluster{
		name:     name,
		self:     cluster.Member{Name: name, Started: now, Seen: now},
		routes:   map[string]map[string]cluster.Route{},
		handlers: map[string]cluster.HandlerFunc{},
	}
}

// NodeName returns this node's name.
func (c *Cluster) NodeName() string { return c.name }

// Start does nothing: there is nothing to connect to.
func (c *Cluster) Start(ctx context.Context) error { return nil }

// Stop drops every route.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	c.routes = map[string]map[string]cluster.Route{}
	c.mu.Unlock()
	return nil
}

// Clustered is always false.
func (c *Cluster) Clustered() bool { return false }

// PutRoute stores r. Its Node is forced to this node's name.
func (c *Cluster) PutRoute(ctx context.Context, r cluster.Route) error {
	if r.JID == "" {
		return fmt.Errorf("cluster/local: route without JID")
	}
	r.Node = c.name
	bare := cluster.BareJID(r.JID)
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.routes[bare]
	if m == nil {
		m = map[string]cluster.Route{}
		c.routes[bare] = m
	}
	m[r.JID] = r
	return nil
}

// DeleteRoute removes the route of fullJID; removing a missing route is
// not an error.
func (c *Cluster) DeleteRoute(ctx context.Context, fullJID string) error {
	bare := cluster.BareJID(fullJID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.routes[bare]; m != nil {
		delete(m, fullJID)
		if len(m) == 0 {
			delete(c.routes, bare)
		}
	}
	return nil
}

// Routes returns the routes of bareJID sorted by full JID.
func (c *Cluster) Routes(ctx context.Context, bareJID string) ([]cluster.Route, error) {
	c.mu.RLock()
	m := c.routes[bareJID]
	if len(m) == 0 {
		c.mu.RUnlock()
		return nil, nil
	}
	out := make([]cluster.Route, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out, nil
}

// Send runs the handler for kind in the caller's goroutine when node is
// this node; any other node is ErrNodeGone. The handler's error is
// returned.
func (c *Cluster) Send(ctx context.Context, node, kind string, payload []byte) error {
	_, err := c.Call(ctx, node, kind, payload)
	return err
}

// Call runs the handler for kind in the caller's goroutine when node is
// this node and returns its reply; any other node is ErrNodeGone.
func (c *Cluster) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	if node != c.name {
		return nil, fmt.Errorf("cluster/local: %q: %w", node, cluster.ErrNodeGone)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.RLock()
	h := c.handlers[kind]
	c.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("cluster/local: kind %q: %w", kind, cluster.ErrNoHandler)
	}
	return h(ctx, c.name, payload)
}

// Handle registers h for kind, replacing any earlier handler.
func (c *Cluster) Handle(kind string, h cluster.HandlerFunc) {
	c.mu.Lock()
	c.handlers[kind] = h
	c.mu.Unlock()
}

// Members returns this node alone.
func (c *Cluster) Members(ctx context.Context) ([]cluster.Member, error) {
	c.mu.Lock()
	c.self.Seen = time.Now()
	m := copyMember(c.self)
	c.mu.Unlock()
	return []cluster.Member{m}, nil
}

// Senior is always true: the only node is the oldest.
func (c *Cluster) Senior() bool { return true }

// UpdateSelf applies fn to this node's member record. The name and start
// time cannot change. A change of Draining runs the OnMembersChange
// callbacks, in the caller's goroutine.
func (c *Cluster) UpdateSelf(fn func(m *cluster.Member)) {
	c.mu.Lock()
	m := copyMember(c.self)
	fn(&m)
	m.Name, m.Started = c.self.Name, c.self.Started
	drained := m.Draining != c.self.Draining
	c.self = m
	fns := c.membersFns
	c.mu.Unlock()
	if drained {
		for _, fn := range fns {
			fn()
		}
	}
}

// OnMembersChange registers fn, run when this node's Draining flag
// changes (the only change one node has).
func (c *Cluster) OnMembersChange(fn func()) {
	c.mu.Lock()
	c.membersFns = append(c.membersFns, fn)
	c.mu.Unlock()
}

// LinkStats reports no links: one node has none.
func (c *Cluster) LinkStats() (cluster.LinkStats, bool) { return cluster.LinkStats{}, false }

// OnNodeDown never fires on one node.
func (c *Cluster) OnNodeDown(fn func(node string, routes []cluster.Route)) {}

// OnClusteredChange never fires on one node.
func (c *Cluster) OnClusteredChange(fn func(clustered bool)) {}

func copyMember(m cluster.Member) cluster.Member {
	if m.ClientAddrs != nil {
		addrs := make(map[string]string, len(m.ClientAddrs))
		for k, v := range m.ClientAddrs {
			addrs[k] = v
		}
		m.ClientAddrs = addrs
	}
	return m
}

var _ cluster.Undelivered = (*Cluster)(nil)

// OnUndelivered never fires on one node: Send runs the handler directly.
func (c *Cluster) OnUndelivered(fn func(node, kind string, payload []byte)) {}
