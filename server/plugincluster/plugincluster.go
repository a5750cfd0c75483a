// Package plugincluster gives each plugin its view of the node's cluster
// (plugins.Cluster, what Host.Cluster returns) on top of cluster.Cluster.
//
// Every plugin message travels as one cluster message kind, Kind, whose
// payload names the plugin and the plugin's own kind, so plugins cannot
// meet each other's handlers and the cluster needs no registration per
// plugin (plugins start and stop while the node runs).
//
// Members is a snapshot taken when the cluster reports a change
// (cluster.Cluster.OnMembersChange), so Owner, which modules call for
// every stanza, costs one rendezvous over a slice and no lock; and every
// OnMembersChange callback sees the list Owner uses from then on. The
// snapshot is what the cluster shares: only this node while clustering is
// off, which makes every key owned here.
package plugincluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
)

// Kind is the cluster message kind that carries every plugin message.
// Payload: uvarint length and plugin ID, uvarint length and the plugin's
// kind, then the plugin's payload.
const Kind = "plugin"

// Net is one node's plugin messaging. Build it with New before the
// cluster starts; it is safe for concurrent use.
type Net struct {
	c         cluster.Cluster
	log       *slog.Logger
	opTimeout time.Duration

	mu       sync.RWMutex
	handlers map[string]*handler // plugin + "\x00" + kind
	watchers map[uint64]func(plugins.MembersChange)
	nextID   uint64

	members atomic.Pointer[[]plugins.Member]
	// refreshMu serializes snapshot refreshes and the callbacks they run,
	// so callbacks see changes one at a time and in order.
	refreshMu sync.Mutex
}

type handler struct{ h plugins.ClusterHandler }

// New returns the plugin net of the node whose cluster is c, registers
// Kind on c and follows c's membership. opTimeout bounds calls whose
// context has no deadline (cluster.operation_timeout).
func New(c cluster.Cluster, opTimeout time.Duration, log *slog.Logger) *Net {
	if log == nil {
		log = slog.Default()
	}
	if opTimeout <= 0 {
		opTimeout = 5 * time.Second
	}
	n := &Net{
		c: c, log: log.With("part", "plugincluster"), opTimeout: opTimeout,
		handlers: map[string]*handler{}, watchers: map[uint64]func(plugins.MembersChange){},
	}
	self := []plugins.Member{{Name: c.NodeName()}}
	n.members.Store(&self)
	c.Handle(Kind, n.receive)
	c.OnMembersChange(n.refresh)
	return n
}

// Refresh reads the members now; the node calls it once its cluster has
// started (changes after that arrive by themselves).
func (n *Net) Refresh() { n.refresh() }

// refresh takes a new members snapshot and tells the watchers when it
// differs from the last one.
func (n *Net) refresh() {
	n.refreshMu.Lock()
	defer n.refreshMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), n.opTimeout)
	ms, err := n.c.Members(ctx)
	cancel()
	if err != nil {
		n.log.Warn("plugin cluster: members unreadable; keeping the last list", "err", err)
		return
	}
	after := make([]plugins.Member, 0, len(ms))
	for _, m := range ms {
		after = append(after, plugins.Member{Name: m.Name, Draining: m.Draining})
	}
	slices.SortFunc(after, func(a, b plugins.Member) int { return strings.Compare(a.Name, b.Name) })
	before := *n.members.Load()
	if slices.Equal(before, after) {
		return
	}
	n.members.Store(&after)
	n.mu.RLock()
	fns := make([]func(plugins.MembersChange), 0, len(n.watchers))
	ids := make([]uint64, 0, len(n.watchers))
	for id := range n.watchers {
		ids = append(ids, id)
	}
	slices.Sort(ids) // registration order
	for _, id := range ids {
		fns = append(fns, n.watchers[id])
	}
	n.mu.RUnlock()
	n.log.Info("plugin cluster members changed", "before", names(before), "after", names(after))
	ch := plugins.MembersChange{Before: before, After: after}
	for _, fn := range fns {
		fn(ch)
	}
}

func names(ms []plugins.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
		if m.Draining {
			out[i] += "(draining)"
		}
	}
	return out
}

// For returns plugin's view of the cluster.
func (n *Net) For(plugin string) plugins.Cluster { return &view{n: n, plugin: plugin} }

// receive dispatches a plugin message to the plugin's handler.
func (n *Net) receive(ctx context.Context, from string, payload []byte) ([]byte, error) {
	plugin, kind, body, err := decode(payload)
	if err != nil {
		return nil, err
	}
	n.mu.RLock()
	h := n.handlers[plugin+"\x00"+kind]
	n.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("plugincluster: %s has no handler for %q: %w", plugin, kind, cluster.ErrNoHandler)
	}
	return h.h(ctx, from, body)
}

func encode(plugin, kind string, payload []byte) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen16+len(plugin)+len(kind)+len(payload))
	b = binary.AppendUvarint(b, uint64(len(plugin)))
	b = append(b, plugin...)
	b = binary.AppendUvarint(b, uint64(len(kind)))
	b = append(b, kind...)
	return append(b, payload...)
}

var errMalformed = errors.New("plugincluster: malformed plugin message")

func decode(b []byte) (plugin, kind string, payload []byte, err error) {
	next := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	var ok bool
	if plugin, ok = next(); !ok {
		return "", "", nil, errMalformed
	}
	if kind, ok = next(); !ok {
		return "", "", nil, errMalformed
	}
	return plugin, kind, b, nil
}

// view is one plugin's plugins.Cluster.
type view struct {
	n      *Net
	plugin string
}

var _ plugins.Cluster = (*view)(nil)

func (v *view) NodeName() string { return v.n.c.NodeName() }

func (v *view) Members() []plugins.Member { return slices.Clone(*v.n.members.Load()) }

func (v *view) Owner(key string) string { return plugins.Rendezvous(key, *v.n.members.Load()) }

func (v *view) Send(ctx context.Context, node, kind string, payload []byte) error {
	return mapErr(v.n.c.Send(ctx, node, Kind, encode(v.plugin, kind, payload)))
}

func (v *view) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.n.opTimeout)
		defer cancel()
	}
	b, err := v.n.c.Call(ctx, node, Kind, encode(v.plugin, kind, payload))
	return b, mapErr(err)
}

func (v *view) CallAll(ctx context.Context, kind string, payload []byte) []plugins.Answer {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.n.opTimeout)
		defer cancel()
	}
	return plugins.CallMembers(ctx, *v.n.members.Load(), func(ctx context.Context, node string) ([]byte, error) {
		return v.Call(ctx, node, kind, payload)
	})
}

func (v *view) Handle(kind string, h plugins.ClusterHandler) func() {
	key := v.plugin + "\x00" + kind
	reg := &handler{h: h}
	v.n.mu.Lock()
	v.n.handlers[key] = reg
	v.n.mu.Unlock()
	return func() {
		v.n.mu.Lock()
		if v.n.handlers[key] == reg {
			delete(v.n.handlers, key)
		}
		v.n.mu.Unlock()
	}
}

func (v *view) OnMembersChange(fn func(plugins.MembersChange)) func() {
	v.n.mu.Lock()
	id := v.n.nextID
	v.n.nextID++
	v.n.watchers[id] = fn
	v.n.mu.Unlock()
	return func() {
		v.n.mu.Lock()
		delete(v.n.watchers, id)
		v.n.mu.Unlock()
	}
}

// mapErr adds the plugins sentinels to the cluster's, keeping both
// matchable with errors.Is.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrNodeGone):
		return errors.Join(plugins.ErrNodeGone, err)
	case errors.Is(err, cluster.ErrNoHandler):
		return errors.Join(plugins.ErrNoHandler, err)
	}
	return err
}
