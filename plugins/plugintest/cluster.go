package plugintest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
)

// Net is an in-memory cluster for unit tests of cluster-aware plugins:
// named nodes, each with a plugins.Cluster per plugin (NetNode.For),
// messages delivered between their handlers in memory, and membership
// changed by the test. It separates the two halves of a node's death as
// a real cluster does: Crash cuts the node off at once (Send and Call to
// it fail with ErrNodeGone, its own fail too), while the others keep
// listing it as a member until Leave (what cluster.node_ttl does). Each
// node runs the Send handlers in the order the Sends came, and a Call to
// another node waits for the Sends queued there before it, as
// plugins.Cluster promises.
//
// It proves logic, not the network: the server's implementation
// (server/plugincluster) is tested on real nodes.
type Net struct {
	mu    sync.Mutex
	nodes map[string]*NetNode
}

// NewNet returns an empty net.
func NewNet() *Net { return &Net{nodes: map[string]*NetNode{}} }

// NetNode is one node of a Net.
type NetNode struct {
	net  *Net
	name string

	mu       sync.Mutex
	member   bool // listed in Members
	draining bool
	crashed  bool
	hung     bool                              // calls to it never answer (Hang)
	stuck    int                               // calls waiting on it while it hangs
	frozen   bool                              // its view of the members does not change (Freeze)
	alone    bool                              // clustering switched off for it (Alone)
	handlers map[string]plugins.ClusterHandler // plugin/kind
	watchers map[int]watcher
	nextID   int
	members  []plugins.Member // this node's view, sorted
	events   chan func()      // this node's event goroutine, in order
	sends    chan func()      // Send handlers run here, in order
	done     chan struct{}
}

type watcher struct {
	plugin string
	fn     func(plugins.MembersChange)
}

// Join adds a node named name (or returns it if it exists) and lists it
// as a member on every node; OnMembersChange callbacks run.
func (n *Net) Join(name string) *NetNode {
	n.mu.Lock()
	nd := n.nodes[name]
	if nd == nil {
		nd = &NetNode{
			net: n, name: name, handlers: map[string]plugins.ClusterHandler{}, watchers: map[int]watcher{},
			events: make(chan func(), 1024), sends: make(chan func(), 1024), done: make(chan struct{}),
		}
		go nd.run(nd.events)
		go nd.run(nd.sends)
		n.nodes[name] = nd
	}
	nd.mu.Lock()
	nd.member, nd.crashed = true, false
	nd.mu.Unlock()
	n.mu.Unlock()
	n.publish()
	return nd
}

// Node returns the node named name, or nil.
func (n *Net) Node(name string) *NetNode {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodes[name]
}

// Close stops every node's goroutines.
func (n *Net) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, nd := range n.nodes {
		select {
		case <-nd.done:
		default:
			close(nd.done)
		}
	}
}

// Crash cuts name off: messages to and from it fail with ErrNodeGone from
// now on, calls waiting on it fail. The others still list it until Leave.
func (n *Net) Crash(name string) {
	if nd := n.Node(name); nd != nil {
		nd.mu.Lock()
		nd.crashed = true
		nd.mu.Unlock()
	}
}

// Leave removes name from every node's members (a graceful stop, or the
// cluster noticing a crash); OnMembersChange callbacks run.
func (n *Net) Leave(name string) {
	if nd := n.Node(name); nd != nil {
		nd.mu.Lock()
		nd.member = false
		nd.mu.Unlock()
		n.publish()
	}
}

// Hang makes name stop answering without dying, as a stopped process
// does: calls to it wait until their context ends, sends to it vanish. The
// others keep listing it until Leave.
func (n *Net) Hang(name string) {
	if nd := n.Node(name); nd != nil {
		nd.mu.Lock()
		nd.hung = true
		nd.mu.Unlock()
	}
}

// Stuck returns how many calls wait on name while it hangs.
func (n *Net) Stuck(name string) int {
	nd := n.Node(name)
	if nd == nil {
		return 0
	}
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.stuck
}

// Alone switches clustering off (or back on) for name, as the
// cluster-wide switch does on every node: it sees only itself and the
// others stop listing it, while messages still reach it (the node links
// outlive the switch).
func (n *Net) Alone(name string, on bool) {
	if nd := n.Node(name); nd != nil {
		nd.mu.Lock()
		nd.alone = on
		nd.mu.Unlock()
		n.publish()
	}
}

// Freeze keeps name's view of the members as it is, whatever changes,
// until Thaw: views that differ for a while, as after a change that not
// every node has noticed yet.
func (n *Net) Freeze(name string) {
	if nd := n.Node(name); nd != nil {
		nd.mu.Lock()
		nd.frozen = true
		nd.mu.Unlock()
	}
}

// Thaw lets name see the current members again.
func (n *Net) Thaw(name string) {
	if nd := n.Node(name); nd != nil {
		nd.mu.Lock()
		nd.frozen = false
		nd.mu.Unlock()
		n.publish()
	}
}

// Drain sets name's draining flag; OnMembersChange callbacks run.
func (n *Net) Drain(name string, on bool) {
	if nd := n.Node(name); nd != nil {
		nd.mu.Lock()
		nd.draining = on
		nd.mu.Unlock()
		n.publish()
	}
}

// publish gives every live node the new member list and queues its
// callbacks when its view changed. A crashed node's view stays frozen.
func (n *Net) publish() {
	n.mu.Lock()
	var ms []plugins.Member
	nodes := make([]*NetNode, 0, len(n.nodes))
	for _, nd := range n.nodes {
		nd.mu.Lock()
		if nd.member && !nd.alone {
			ms = append(ms, plugins.Member{Name: nd.name, Draining: nd.draining})
		}
		nd.mu.Unlock()
		nodes = append(nodes, nd)
	}
	n.mu.Unlock()
	slices.SortFunc(ms, func(a, b plugins.Member) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	for _, nd := range nodes {
		nd.mu.Lock()
		view := ms
		if nd.alone {
			view = []plugins.Member{{Name: nd.name, Draining: nd.draining}}
		}
		if nd.crashed || nd.frozen || !nd.member || slices.Equal(nd.members, view) {
			nd.mu.Unlock()
			continue
		}
		ch := plugins.MembersChange{Before: nd.members, After: slices.Clone(view)}
		nd.members = ch.After
		ws := make([]watcher, 0, len(nd.watchers))
		for _, w := range nd.watchers {
			ws = append(ws, w)
		}
		nd.mu.Unlock()
		nd.events <- func() {
			for _, w := range ws {
				w.fn(ch)
			}
		}
	}
}

func (nd *NetNode) run(ch chan func()) {
	for {
		select {
		case f := <-ch:
			f()
		case <-nd.done:
			return
		}
	}
}

// Name is the node's name.
func (nd *NetNode) Name() string { return nd.name }

// For returns the node's plugins.Cluster for plugin id.
func (nd *NetNode) For(plugin string) plugins.Cluster { return &netView{nd: nd, plugin: plugin} }

func (nd *NetNode) isHung() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.hung
}

func (nd *NetNode) alive() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return !nd.crashed
}

// netView is one plugin's plugins.Cluster on a NetNode.
type netView struct {
	nd     *NetNode
	plugin string
}

var _ plugins.Cluster = (*netView)(nil)

func (v *netView) NodeName() string { return v.nd.name }

func (v *netView) Members() []plugins.Member {
	v.nd.mu.Lock()
	defer v.nd.mu.Unlock()
	if len(v.nd.members) == 0 {
		return []plugins.Member{{Name: v.nd.name, Draining: v.nd.draining}}
	}
	return slices.Clone(v.nd.members)
}

func (v *netView) Owner(key string) string { return plugins.Rendezvous(key, v.Members()) }

// target returns the handler for kind on node, or why there is none.
func (v *netView) target(node, kind string) (*NetNode, plugins.ClusterHandler, error) {
	if !v.nd.alive() {
		return nil, nil, fmt.Errorf("plugintest: %s is cut off: %w", v.nd.name, plugins.ErrNodeGone)
	}
	to := v.nd.net.Node(node)
	if to == nil || !to.alive() {
		return nil, nil, fmt.Errorf("plugintest: %s: %w", node, plugins.ErrNodeGone)
	}
	to.mu.Lock()
	h := to.handlers[v.plugin+"/"+kind]
	to.mu.Unlock()
	if h == nil {
		return nil, nil, fmt.Errorf("plugintest: %s on %s: %w", kind, node, plugins.ErrNoHandler)
	}
	return to, h, nil
}

func (v *netView) Send(ctx context.Context, node, kind string, payload []byte) error {
	to, h, err := v.target(node, kind)
	if err != nil {
		return err
	}
	if to.isHung() {
		return nil
	}
	p := append([]byte(nil), payload...)
	from := v.nd.name
	to.sends <- func() {
		if to.alive() {
			_, _ = h(context.Background(), from, p)
		}
	}
	return nil
}

func (v *netView) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	to, h, err := v.target(node, kind)
	if err != nil {
		return nil, err
	}
	if to.isHung() {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
		}
		to.mu.Lock()
		to.stuck++
		to.mu.Unlock()
		<-ctx.Done()
		to.mu.Lock()
		to.stuck--
		to.mu.Unlock()
		return nil, fmt.Errorf("plugintest: call %s to %s: %w", kind, node, ctx.Err())
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if to != v.nd {
		if err := v.afterSends(ctx, to); err != nil {
			return nil, err
		}
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	p := append([]byte(nil), payload...)
	go func() {
		b, err := h(ctx, v.nd.name, p)
		done <- result{b, err}
	}()
	// A crash of either end fails the call, as a broken link does.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if !to.alive() || !v.nd.alive() {
				return nil, fmt.Errorf("plugintest: %s died before answering: %w", node, plugins.ErrNodeGone)
			}
			return r.b, r.err
		case <-ctx.Done():
			return nil, fmt.Errorf("plugintest: call %s to %s: %w", kind, node, ctx.Err())
		case <-tick.C:
			if !to.alive() || !v.nd.alive() {
				return nil, fmt.Errorf("plugintest: %s died before answering: %w", node, plugins.ErrNodeGone)
			}
		}
	}
}

// afterSends waits until node to has run the handlers of the Sends
// queued to it so far, as plugins.Cluster promises for a Call: a real
// node reads each peer's connection in order and runs Send handlers in
// its reader (cluster/link). A call to this node itself does not wait (a
// Send handler may make one; the real clusters run a Send to the node
// itself at once).
func (v *netView) afterSends(ctx context.Context, to *NetNode) error {
	reached := make(chan struct{})
	select {
	case to.sends <- func() { close(reached) }:
	case <-ctx.Done():
		return fmt.Errorf("plugintest: call to %s: %w", to.name, ctx.Err())
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-reached:
			return nil
		case <-to.done:
			return fmt.Errorf("plugintest: %s is closed: %w", to.name, plugins.ErrNodeGone)
		case <-ctx.Done():
			return fmt.Errorf("plugintest: call to %s: %w", to.name, ctx.Err())
		case <-tick.C:
			if !to.alive() || !v.nd.alive() {
				return fmt.Errorf("plugintest: %s died before answering: %w", to.name, plugins.ErrNodeGone)
			}
		}
	}
}

func (v *netView) CallAll(ctx context.Context, kind string, payload []byte) []plugins.Answer {
	return plugins.CallMembers(ctx, v.Members(), func(ctx context.Context, node string) ([]byte, error) {
		return v.Call(ctx, node, kind, payload)
	})
}

func (v *netView) Handle(kind string, h plugins.ClusterHandler) func() {
	key := v.plugin + "/" + kind
	v.nd.mu.Lock()
	v.nd.handlers[key] = h
	v.nd.mu.Unlock()
	return func() {
		v.nd.mu.Lock()
		delete(v.nd.handlers, key)
		v.nd.mu.Unlock()
	}
}

func (v *netView) OnMembersChange(fn func(plugins.MembersChange)) func() {
	v.nd.mu.Lock()
	id := v.nd.nextID
	v.nd.nextID++
	v.nd.watchers[id] = watcher{plugin: v.plugin, fn: fn}
	v.nd.mu.Unlock()
	return func() {
		v.nd.mu.Lock()
		delete(v.nd.watchers, id)
		v.nd.mu.Unlock()
	}
}
