package hazelcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hazelcast/hazelcast-go-client/types"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/link"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/storage"
)

var (
	_ cluster.Cluster     = (*Cluster)(nil)
	_ cluster.Undelivered = (*Cluster)(nil)
	_ cluster.Detacher    = (*Cluster)(nil)
	_ cluster.Notifier    = (*Cluster)(nil)
)

// Options build a Cluster. New fills them from conf.
type Options struct {
	// Cluster is the node's cluster configuration (conf.ClusterConfig with
	// defaults applied).
	Cluster conf.ClusterConfig
	// Properties holds the cluster-wide switch (cluster.Switch); nil means
	// always enabled. If it also has ListenProperty (storage/postgres),
	// changes are pushed.
	Properties storage.Properties
	// Links are the node's links to the other nodes (link.FromConfig,
	// named after cluster.node_name). The cluster tells them whom they may reach
	// and at which address, listens on cluster.listen if they do not listen
	// yet, and flushes them when it stops; their owner closes them after
	// Stop. When nil, the cluster makes its own from Cluster (secret,
	// plaintext_links, operation_timeout) and closes them at Stop.
	Links *link.Node
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Version is published in this node's Member record.
	Version string
	// Prefix names the Hazelcast objects: Prefix+"members",
	// Prefix+"routes", Prefix+"down", Prefix+"switch". Default "aviary.".
	// Tests sharing one Hazelcast member use distinct prefixes.
	Prefix string
	// SwitchPoll is how often the switch is re-read from storage, the
	// safety net under LISTEN/NOTIFY and the Hazelcast topic. Default 1s.
	SwitchPoll time.Duration
	// SweepEvery is how many heartbeats apart the senior looks for routes
	// of incarnations that are no longer members. Default 10.
	SweepEvery int
	// NoRouteCache makes Routes query Hazelcast (one indexed query per
	// call) instead of reading the local replica. For comparison and tests.
	NoRouteCache bool
	// ResyncEvery is how often the route replica is reloaded from a fresh
	// snapshot, repairing any lost event. Default 1m.
	ResyncEvery time.Duration
}

// Cluster is the Hazelcast-backed cluster.Cluster. See the package doc for
// the design. Methods are safe for concurrent use.
type Cluster struct {
	o       Options
	cc      conf.ClusterConfig
	log     *slog.Logger
	name    string
	started time.Time

	links    *link.Node
	ownLinks bool // made by New: closed at Stop
	linkAddr string
	sw       *cluster.Switch

	// Own routes: the local index, authoritative for this node.
	syncMu  sync.RWMutex // routes writers share it; reconcile and leaving take it
	stripes [64]sync.Mutex
	ownMu   sync.RWMutex
	own     map[string]map[string]cluster.Route // bare → full → route
	// writeThrough: route changes go to Hazelcast as they happen. Set
	// under syncMu (exclusive).
	writeThrough atomic.Bool
	pendingMu    sync.Mutex
	pending      map[string]struct{} // full JIDs whose Hazelcast write failed

	selfMu sync.Mutex
	self   cluster.Member
	inc    string // incarnation: name#registration time; guarded by selfMu

	hzMu      sync.Mutex
	hzObjs    *hzObjs
	hzUp      atomic.Bool // the client is connected
	clustered atomic.Bool
	// detached: clustered on the members and routes last seen while
	// Hazelcast is away or the node re-registers (see detach).
	detached atomic.Bool
	senior   atomic.Bool

	// Route replica (see cache.go); nil when not clustered or disabled.
	cache      atomic.Pointer[routeCache]
	building   atomic.Pointer[routeCache]
	resyncNow  atomic.Bool
	routesSub  types.UUID // loop-only
	lastResync time.Time  // loop-only

	seq     atomic.Uint64 // orders this node's route writes
	dirtyMu sync.Mutex
	dirty   map[string]dirtyMark // full JID → announced write not yet in the replica
	dirtyN  map[string]int       // bare JID → number of dirty full JIDs

	negMu sync.Mutex
	neg   map[string]time.Time // nodes recently found not visible

	viewMu sync.RWMutex
	view   map[string]memberRecord // visible members (live and clustered), by name, self excluded
	// reach: every live member, whatever its switch, self excluded. The
	// node links outlive the cluster-wide switch, so Send and Call still
	// reach these (BOSH requests that land on a node that does not own
	// their session are forwarded while clustering is off); nothing of
	// the routing table is shared with them.
	reach map[string]memberRecord

	cbMu       sync.Mutex
	downFns    []func(string, []cluster.Route)
	changeFns  []func(bool)
	membersFns []func()
	membersSig string // what OnMembersChange last reported; guarded by cbMu
	events     chan struct{}
	evMu       sync.Mutex
	evQueue    []func()

	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	// run-loop state (only the loop goroutine touches these)
	prevView map[string]memberRecord
	seen     map[string]seenMark
	handled  map[string]time.Time // incarnations already cleaned up
	// lapsedAlive counts polls that found a member's entry gone and the
	// member answering on its link (liveness.go).
	lapsedAlive atomic.Int64
	retryDead   map[string]struct{} // incarnations whose cleanup failed

	hbMu       sync.Mutex // serializes heartbeats; guards registered and previousRun
	registered bool
	// previousRun is the incarnation of this node's previous run whose
	// entry checkNameFree found and judged stale: the first heartbeat
	// replaces it, which is no name clash.
	previousRun string
	entryLost   atomic.Bool    // a heartbeat found the entry gone
	orphans     map[string]int // incarnation → sweeps seen without a member
	ticks       int
	lastTry     time.Time
}

type seenMark struct {
	seen  time.Time // the member's own Seen value
	local time.Time // when we saw it change
}

// New builds a Hazelcast cluster from the cluster section of the node's
// configuration (Hazelcast addresses, names, link listen address, secret,
// timings; defaults applied). props holds the cluster-wide switch
// (storage.Store satisfies it); nil means always enabled. It does not
// connect: call Handle for each message kind, then Start.
func New(cfg conf.ClusterConfig, props storage.Properties, logger *slog.Logger) (*Cluster, error) {
	return NewWithOptions(Options{Cluster: cfg, Properties: props, Logger: logger})
}

// NewWithOptions is New with every knob.
func NewWithOptions(o Options) (*Cluster, error) {
	cc := o.Cluster
	if len(cc.Hazelcast) == 0 {
		return nil, errors.New("cluster/hazelcast: no Hazelcast addresses (cluster.hazelcast)")
	}
	if cc.Secret == "" {
		return nil, errors.New("cluster/hazelcast: cluster.secret is required")
	}
	if cc.NodeName == "" {
		cc.NodeName, _ = os.Hostname()
		if cc.NodeName == "" {
			return nil, errors.New("cluster/hazelcast: cluster.node_name is required")
		}
	}
	if len(cc.NodeName) > 200 {
		return nil, errors.New("cluster/hazelcast: cluster.node_name longer than 200 bytes")
	}
	if cc.HazelcastClusterName == "" {
		cc.HazelcastClusterName = "aviary"
	}
	if cc.Listen == "" {
		cc.Listen = ":5290"
	}
	defDur(&cc.StartupRetryInterval, 3*time.Second)
	defDur(&cc.OperationTimeout, 5*time.Second)
	defDur(&cc.HeartbeatInterval, 2*time.Second)
	defDur(&cc.NodeTTL, 10*time.Second)
	if cc.StartupRetries <= 0 {
		cc.StartupRetries = 10
	}
	if cc.NodeTTL < 2*cc.HeartbeatInterval {
		return nil, fmt.Errorf("cluster/hazelcast: cluster.node_ttl (%v) must be at least twice cluster.heartbeat_interval (%v)", cc.NodeTTL, cc.HeartbeatInterval)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Prefix == "" {
		o.Prefix = "aviary."
	}
	if o.SwitchPoll <= 0 {
		o.SwitchPoll = time.Second
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = 10
	}
	if o.ResyncEvery <= 0 {
		o.ResyncEvery = time.Minute
	}
	now := time.Now().UTC()
	c := &Cluster{
		o: o, cc: cc, name: cc.NodeName, started: now,
		log:       o.Logger.With("part", "cluster", "node", cc.NodeName),
		own:       map[string]map[string]cluster.Route{},
		pending:   map[string]struct{}{},
		self:      cluster.Member{Name: cc.NodeName, Version: o.Version, Started: now, Seen: now},
		view:      map[string]memberRecord{},
		neg:       map[string]time.Time{},
		dirty:     map[string]dirtyMark{},
		dirtyN:    map[string]int{},
		events:    make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		prevView:  map[string]memberRecord{},
		seen:      map[string]seenMark{},
		handled:   map[string]time.Time{},
		retryDead: map[string]struct{}{},
		orphans:   map[string]int{},
	}
	c.senior.Store(true)
	c.sw = cluster.NewSwitch(o.Properties, cluster.SwitchOptions{Poll: o.SwitchPoll, Timeout: cc.OperationTimeout, Logger: c.log})
	c.sw.OnChange(func(bool) { c.wake() })
	c.links = o.Links
	if c.links == nil {
		c.links = link.FromConfig(cc, o.Logger)
		c.ownLinks = true
	} else if c.links.Name() != c.name {
		return nil, fmt.Errorf("cluster/hazelcast: the links are named %q, not %q (cluster.node_name)", c.links.Name(), c.name)
	}
	c.links.Handle(kindRoute, c.handleAnnounce)
	c.links.Handle(kindAlive, c.handleAlive)
	return c, nil
}

func defDur(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// NodeName is this node's name.
func (c *Cluster) NodeName() string { return c.name }

// LinkAddr is the link address this node publishes (after Start).
func (c *Cluster) LinkAddr() string { return c.linkAddr }

// Clustered reports whether routes are shared right now.
func (c *Cluster) Clustered() bool { return c.clustered.Load() }

// Detached reports whether the node routes on the members and routes it
// last saw because Hazelcast is away (or it is re-registering): still
// clustered over its links, but not reading or writing Hazelcast.
func (c *Cluster) Detached() bool { return c.detached.Load() }

// Senior reports whether this node is the oldest live member. A node that
// runs alone (switch off, Hazelcast never reached) counts itself senior; a
// detached one keeps what it last computed.
func (c *Cluster) Senior() bool { return c.senior.Load() }

// Handle registers the handler for kind on the node's links.
func (c *Cluster) Handle(kind string, h cluster.HandlerFunc) { c.links.Handle(kind, h) }

// LinkStats returns the counters of the node's links.
func (c *Cluster) LinkStats() (cluster.LinkStats, bool) { return c.links.Stats(), true }

// Enabled reports the cluster-wide switch as this node last read it.
func (c *Cluster) Enabled() bool { return c.sw.Enabled() }

// OnNodeDown registers fn; see the package doc for when it runs.
func (c *Cluster) OnNodeDown(fn func(node string, routes []cluster.Route)) {
	c.cbMu.Lock()
	c.downFns = append(c.downFns, fn)
	c.cbMu.Unlock()
}

// OnClusteredChange registers fn, run when Clustered flips.
func (c *Cluster) OnClusteredChange(fn func(clustered bool)) {
	c.cbMu.Lock()
	c.changeFns = append(c.changeFns, fn)
	c.cbMu.Unlock()
}

// OnMembersChange registers fn; see cluster.Cluster.
func (c *Cluster) OnMembersChange(fn func()) {
	c.cbMu.Lock()
	c.membersFns = append(c.membersFns, fn)
	c.cbMu.Unlock()
}

// OnUndelivered registers fn, run for each Send that was accepted but
// could not be written to its node (the link broke, the node left).
func (c *Cluster) OnUndelivered(fn func(node, kind string, payload []byte)) {
	c.links.OnUndelivered(fn)
}

// noteMembers runs the OnMembersChange callbacks (on the events
// goroutine, after what is queued) when what Members returns changed
// since they last ran: names, incarnations and draining flags.
func (c *Cluster) noteMembers() {
	var b strings.Builder
	self := c.selfMember()
	fmt.Fprintf(&b, "%v|%v", c.clustered.Load(), self.Draining)
	if c.clustered.Load() {
		c.viewMu.RLock()
		names := make([]string, 0, len(c.view))
		for name := range c.view {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			r := c.view[name]
			fmt.Fprintf(&b, "|%s#%s#%v", name, r.Inc, r.Draining)
		}
		c.viewMu.RUnlock()
	}
	sig := b.String()
	c.cbMu.Lock()
	if sig == c.membersSig {
		c.cbMu.Unlock()
		return
	}
	c.membersSig = sig
	fns := c.membersFns
	c.cbMu.Unlock()
	c.emit(func() {
		for _, fn := range fns {
			fn()
		}
	})
}

// emit queues a callback run on the events goroutine, in order. The queue
// is unbounded so slow callbacks never hold up heartbeats.
func (c *Cluster) emit(f func()) {
	c.evMu.Lock()
	c.evQueue = append(c.evQueue, f)
	c.evMu.Unlock()
	select {
	case c.events <- struct{}{}:
	default:
	}
}

func (c *Cluster) nextEvents() []func() {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	q := c.evQueue
	c.evQueue = nil
	return q
}

func (c *Cluster) fireDown(node string, routes []cluster.Route) {
	c.cbMu.Lock()
	fns := c.downFns
	c.cbMu.Unlock()
	c.log.Info("cluster node down", "down", node, "routes", len(routes))
	c.emit(func() {
		for _, fn := range fns {
			fn(node, routes)
		}
	})
}

func (c *Cluster) fireChange(v bool) {
	c.cbMu.Lock()
	fns := c.changeFns
	c.cbMu.Unlock()
	c.log.Info("cluster clustered changed", "clustered", v)
	c.emit(func() {
		for _, fn := range fns {
			fn(v)
		}
	})
}

func (c *Cluster) eventLoop() {
	for {
		select {
		case <-c.events:
			for _, f := range c.nextEvents() {
				f()
			}
		case <-c.stop:
			// Run what is queued so callers see every transition.
			for _, f := range c.nextEvents() {
				f()
			}
			return
		}
	}
}

func (c *Cluster) goFunc(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (c *Cluster) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// UpdateSelf changes what this node publishes at the next heartbeat. A
// change of Draining runs the OnMembersChange callbacks at once here.
func (c *Cluster) UpdateSelf(fn func(m *cluster.Member)) {
	c.selfMu.Lock()
	m := copyMember(c.self)
	fn(&m)
	m.Name, m.Started, m.LinkAddr = c.self.Name, c.self.Started, c.self.LinkAddr
	drained := m.Draining != c.self.Draining
	c.self = m
	c.selfMu.Unlock()
	if drained {
		c.noteMembers()
	}
}

func (c *Cluster) selfMember() cluster.Member {
	c.selfMu.Lock()
	defer c.selfMu.Unlock()
	return copyMember(c.self)
}

// Members returns the live, clustered members, this node first.
func (c *Cluster) Members(ctx context.Context) ([]cluster.Member, error) {
	self := c.selfMember()
	self.Seen = time.Now().UTC()
	out := []cluster.Member{self}
	if !c.clustered.Load() {
		return out, nil
	}
	c.viewMu.RLock()
	for _, r := range c.view {
		out = append(out, copyMember(r.Member))
	}
	c.viewMu.RUnlock()
	sortMembers(out[1:])
	return out, nil
}

// Reachable lists every live node, this one first, whatever its switch
// (cluster.Reacher): the members this node sees as clustered, and the
// others its links still reach.
func (c *Cluster) Reachable(ctx context.Context) ([]cluster.Reachable, error) {
	self := c.selfMember()
	self.Seen = time.Now().UTC()
	out := []cluster.Reachable{{Member: self, Clustered: c.clustered.Load()}}
	c.viewMu.RLock()
	for name, r := range c.reach {
		_, visible := c.view[name]
		out = append(out, cluster.Reachable{Member: copyMember(r.Member), Clustered: visible && c.clustered.Load()})
	}
	c.viewMu.RUnlock()
	sort.Slice(out[1:], func(i, j int) bool { return older(out[1+i].Member, out[1+j].Member) })
	return out, nil
}

// Send delivers a one-way message to node's handler for kind. To this
// node it runs the handler in the caller's goroutine.
func (c *Cluster) Send(ctx context.Context, node, kind string, payload []byte) error {
	if node == c.name {
		_, err := c.callLocal(ctx, kind, payload)
		return err
	}
	addr, err := c.linkOf(node)
	if err != nil {
		return err
	}
	return c.links.Send(ctx, node, addr, kind, payload)
}

// SendNotify is Send that reports whether node handled the message
// (cluster.Notifier).
func (c *Cluster) SendNotify(ctx context.Context, node, kind string, payload []byte, done func(handled bool)) error {
	if node == c.name {
		if _, err := c.callLocal(ctx, kind, payload); err != nil {
			return err
		}
		done(true)
		return nil
	}
	addr, err := c.linkOf(node)
	if err != nil {
		return err
	}
	return c.links.SendNotify(ctx, node, addr, kind, payload, done)
}

// Call sends a request to node and waits for the reply.
func (c *Cluster) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	if node == c.name {
		return c.callLocal(ctx, kind, payload)
	}
	addr, err := c.linkOf(node)
	if err != nil {
		return nil, err
	}
	return c.links.Call(ctx, node, addr, kind, payload)
}

func (c *Cluster) callLocal(ctx context.Context, kind string, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := c.links.Handler(kind)
	if h == nil {
		return nil, fmt.Errorf("cluster/hazelcast: kind %q: %w", kind, cluster.ErrNoHandler)
	}
	return h(ctx, c.name, payload)
}

func (c *Cluster) linkOf(node string) (string, error) {
	c.viewMu.RLock()
	r, ok := c.view[node]
	if !ok {
		r, ok = c.reach[node]
	}
	c.viewMu.RUnlock()
	if !ok {
		return "", fmt.Errorf("cluster/hazelcast: %q is not a live member: %w", node, cluster.ErrNodeGone)
	}
	return r.LinkAddr, nil
}

// advertise picks the link address other nodes dial.
func advertise(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	ta, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound.String()
	}
	if ta.IP != nil && !ta.IP.IsUnspecified() {
		return ta.String()
	}
	// Bound to all interfaces: the first non-loopback address.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), strconv.Itoa(ta.Port))
		}
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
}
