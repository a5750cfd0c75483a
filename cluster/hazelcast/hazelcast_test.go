package hazelcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/storage"
)

func TestMain(m *testing.M) {
	if env := os.Getenv("AVIARY_SIGKILL_CHILD"); env != "" {
		sigkillChild(env)
	}
	code := m.Run()
	hztest.StopShared()
	os.Exit(code)
}

// memProps is an in-memory storage.Properties.
type memProps struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *memProps) GetProperty(ctx context.Context, name string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[name]
	if !ok {
		return "", storage.ErrNotFound
	}
	return v, nil
}

func (p *memProps) SetProperty(ctx context.Context, name, value string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[name] = value
	return nil
}

func (p *memProps) DeleteProperty(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, name)
	return nil
}

func (p *memProps) ListProperties(ctx context.Context) (map[string]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for k, v := range p.m {
		out[k] = v
	}
	return out, nil
}

// events records a node's callbacks.
type events struct {
	mu      sync.Mutex
	down    map[string][][]cluster.Route
	changes []bool
	lost    []string
	// views are what Members returned in each OnMembersChange callback:
	// sorted names, a draining member marked with "*".
	views []string
}

func (e *events) sawView(v string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.views, v)
}

func (e *events) seenViews() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.views)
}

func viewOf(ms []cluster.Member) string {
	var out []string
	for _, m := range ms {
		s := m.Name
		if m.Draining {
			s += "*"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func (e *events) downs(node string) [][]cluster.Route {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.down[node])
}

// everFalse reports whether OnClusteredChange ever ran with false.
func (e *events) everFalse() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.changes, false)
}

func (e *events) lastChange() (bool, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.changes) == 0 {
		return false, 0
	}
	return e.changes[len(e.changes)-1], len(e.changes)
}

type node struct {
	*Cluster
	ev *events
}

type nodeOpt struct {
	secret string
	props  storage.Properties
	addrs  []string
	// switchPoll defaults to 100ms.
	switchPoll time.Duration
	noCache    bool
	opTimeout  time.Duration
	// heartbeat, when set, is the heartbeat interval (the TTL three
	// times it).
	heartbeat time.Duration
	// logger, when set, receives the node's log.
	logger *slog.Logger
}

func testConfig(addrs []string, clusterName, name, secret string) conf.ClusterConfig {
	return conf.ClusterConfig{
		Hazelcast:            addrs,
		HazelcastClusterName: clusterName,
		NodeName:             name,
		Listen:               "127.0.0.1:0",
		Secret:               secret,
		StartupRetries:       2,
		StartupRetryInterval: 3 * time.Second,
		OperationTimeout:     3 * time.Second,
		HeartbeatInterval:    250 * time.Millisecond,
		// Hazelcast keeps expiry times in whole seconds, so an entry may
		// expire up to a second early: keep the TTL well above that.
		NodeTTL: 3 * time.Second,
	}
}

func startNode(t testing.TB, m *hztest.Member, prefix, name string, o nodeOpt) *node {
	t.Helper()
	if o.secret == "" {
		o.secret = "s3cret"
	}
	if o.addrs == nil {
		o.addrs = []string{m.Addr()}
	}
	if o.switchPoll == 0 {
		o.switchPoll = 100 * time.Millisecond
	}
	cc := testConfig(o.addrs, m.ClusterName, name, o.secret)
	if o.opTimeout > 0 {
		cc.OperationTimeout = o.opTimeout
	}
	if o.heartbeat > 0 {
		cc.HeartbeatInterval, cc.NodeTTL = o.heartbeat, 3*o.heartbeat
	}
	c, err := NewWithOptions(Options{
		Cluster:      cc,
		Properties:   o.props,
		Prefix:       prefix,
		SwitchPoll:   o.switchPoll,
		NoRouteCache: o.noCache,
		SweepEvery:   5,
		Version:      "test",
		Logger:       o.logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Cluster: c, ev: &events{down: map[string][][]cluster.Route{}}}
	c.OnNodeDown(func(node string, routes []cluster.Route) {
		n.ev.mu.Lock()
		n.ev.down[node] = append(n.ev.down[node], routes)
		n.ev.mu.Unlock()
	})
	c.OnClusteredChange(func(v bool) {
		n.ev.mu.Lock()
		n.ev.changes = append(n.ev.changes, v)
		n.ev.mu.Unlock()
	})
	c.OnMembersChange(func() {
		ms, _ := c.Members(context.Background())
		n.ev.mu.Lock()
		n.ev.views = append(n.ev.views, viewOf(ms))
		n.ev.mu.Unlock()
	})
	c.OnUndelivered(func(node, kind string, p []byte) {
		n.ev.mu.Lock()
		n.ev.lost = append(n.ev.lost, node+"/"+kind)
		n.ev.mu.Unlock()
	})
	c.Handle("echo", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		return []byte(name + "<" + from + ":" + string(p)), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return n
}

// crash stops a node the way SIGKILL would: no goodbye, its Hazelcast
// entries stay until they expire or the survivors remove them.
func (c *Cluster) crash() {
	c.sw.Stop()
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
	c.clustered.Store(false)
	if o := c.objs(); o != nil {
		_ = o.client.Shutdown(context.Background())
		c.hzMu.Lock()
		c.hzObjs = nil
		c.hzMu.Unlock()
	}
	c.links.Close()
}

func prefix(t testing.TB) string {
	return strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + "."
}

func names(ms []cluster.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	slices.Sort(out)
	return out
}

func waitMembers(t testing.TB, want []string, nodes ...*node) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, n := range nodes {
			ms, err := n.Members(context.Background())
			if err != nil {
				return err
			}
			if got := names(ms); !reflect.DeepEqual(got, want) {
				return fmt.Errorf("%s sees members %v, want %v", n.NodeName(), got, want)
			}
		}
		return nil
	})
}

// waitRoutes polls n.Routes(bare) until it equals want: other nodes'
// writes reach the route replica asynchronously (milliseconds).
func waitRoutes(t testing.TB, n *node, bare string, want []cluster.Route) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		got, err := n.Routes(context.Background(), bare)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("%s: Routes(%s) = %+v, want %+v", n.NodeName(), bare, got, want)
		}
		return nil
	})
}

func TestMembership(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	c := startNode(t, m, p, "c", nodeOpt{})
	all := []*node{a, b, c}
	for _, n := range all {
		if !n.Clustered() {
			t.Fatalf("%s not clustered after Start", n.NodeName())
		}
	}
	waitMembers(t, []string{"a", "b", "c"}, all...)
	if !a.Senior() || b.Senior() || c.Senior() {
		t.Fatalf("senior: a %v b %v c %v, want only a", a.Senior(), b.Senior(), c.Senior())
	}
	b.UpdateSelf(func(mb *cluster.Member) { mb.Sessions = 7; mb.Draining = true })
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		ms, _ := c.Members(context.Background())
		for _, mb := range ms {
			if mb.Name == "b" && mb.Sessions == 7 && mb.Draining && mb.Version == "test" && mb.LinkAddr == b.LinkAddr() {
				return nil
			}
		}
		return fmt.Errorf("c does not see b's update: %+v", ms)
	})
	// OnMembersChange told every node about the join and the drain, b
	// about its own drain at once.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, n := range all {
			if !n.ev.sawView("a,b,c") || !n.ev.sawView("a,b*,c") {
				return fmt.Errorf("%s saw %v", n.NodeName(), n.ev.seenViews())
			}
		}
		return nil
	})
	// a leaves gracefully: b becomes senior, and the others see a down.
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, []string{"b", "c"}, b, c)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !b.Senior() || c.Senior() {
			return fmt.Errorf("senior after a left: b %v c %v", b.Senior(), c.Senior())
		}
		if len(b.ev.downs("a")) != 1 || len(c.ev.downs("a")) != 1 {
			return fmt.Errorf("down events for a: b %d c %d", len(b.ev.downs("a")), len(c.ev.downs("a")))
		}
		if !b.ev.sawView("b*,c") || !c.ev.sawView("b*,c") {
			return fmt.Errorf("members change after a left: b saw %v, c saw %v", b.ev.seenViews(), c.ev.seenViews())
		}
		return nil
	})
}

func TestRoutesAndLinks(t *testing.T) {
	for _, mode := range []struct {
		name    string
		noCache bool
	}{{"replica", false}, {"query", true}} {
		t.Run(mode.name, func(t *testing.T) { testRoutesAndLinks(t, mode.noCache) })
	}
}

func testRoutesAndLinks(t *testing.T, noCache bool) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{noCache: noCache})
	b := startNode(t, m, p, "b", nodeOpt{noCache: noCache})
	c := startNode(t, m, p, "c", nodeOpt{noCache: noCache})
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	ctx := context.Background()

	steps := []struct {
		name string
		do   func() error
		want []cluster.Route
	}{
		{"none", nil, nil},
		{"a puts", func() error {
			return a.PutRoute(ctx, cluster.Route{JID: "u@x/r1", Priority: 5, Available: true, Flags: cluster.FlagCarbons})
		}, []cluster.Route{{JID: "u@x/r1", Node: "a", Priority: 5, Available: true, Flags: cluster.FlagCarbons}}},
		{"b puts", func() error {
			return b.PutRoute(ctx, cluster.Route{JID: "u@x/r2", Priority: -1})
		}, []cluster.Route{
			{JID: "u@x/r1", Node: "a", Priority: 5, Available: true, Flags: cluster.FlagCarbons},
			{JID: "u@x/r2", Node: "b", Priority: -1},
		}},
		{"other user", func() error {
			return c.PutRoute(ctx, cluster.Route{JID: "v@x/r"})
		}, []cluster.Route{
			{JID: "u@x/r1", Node: "a", Priority: 5, Available: true, Flags: cluster.FlagCarbons},
			{JID: "u@x/r2", Node: "b", Priority: -1},
		}},
		{"a updates", func() error {
			return a.PutRoute(ctx, cluster.Route{JID: "u@x/r1", Priority: 1})
		}, []cluster.Route{
			{JID: "u@x/r1", Node: "a", Priority: 1},
			{JID: "u@x/r2", Node: "b", Priority: -1},
		}},
		{"b deletes", func() error { return b.DeleteRoute(ctx, "u@x/r2") },
			[]cluster.Route{{JID: "u@x/r1", Node: "a", Priority: 1}}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.do != nil {
				if err := s.do(); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range []*node{a, b, c} {
				if noCache {
					// Queries read Hazelcast directly: visible at once.
					got, err := n.Routes(ctx, "u@x")
					if err != nil || !reflect.DeepEqual(got, s.want) {
						t.Fatalf("%s: Routes = %+v, %v; want %+v", n.NodeName(), got, err, s.want)
					}
					continue
				}
				waitRoutes(t, n, "u@x", s.want)
			}
		})
	}

	t.Run("call and send", func(t *testing.T) {
		got := make(chan string, 1)
		c.Handle("note", func(ctx context.Context, from string, p []byte) ([]byte, error) {
			got <- from + ":" + string(p)
			return nil, nil
		})
		reply, err := a.Call(ctx, "c", "echo", []byte("hi"))
		if err != nil || string(reply) != "c<a:hi" {
			t.Fatalf("Call = %q, %v", reply, err)
		}
		reply, err = a.Call(ctx, "a", "echo", []byte("me"))
		if err != nil || string(reply) != "a<a:me" {
			t.Fatalf("Call to self = %q, %v", reply, err)
		}
		if err := b.Send(ctx, "c", "note", []byte("yo")); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s != "b:yo" {
			t.Fatalf("c got %q", s)
		}
		if _, err := a.Call(ctx, "c", "nope", nil); !errors.Is(err, cluster.ErrNoHandler) {
			t.Fatalf("unknown kind: %v", err)
		}
		if err := a.Send(ctx, "zz", "note", nil); !errors.Is(err, cluster.ErrNodeGone) {
			t.Fatalf("unknown node: %v", err)
		}
	})

	t.Run("wrong secret refused", func(t *testing.T) {
		d := startNode(t, m, p, "d", nodeOpt{secret: "other"})
		waitMembers(t, []string{"a", "b", "c", "d"}, a, d)
		if _, err := a.Call(ctx, "d", "echo", nil); !errors.Is(err, cluster.ErrNodeGone) {
			t.Fatalf("a→d with a different secret: %v", err)
		}
		if _, err := d.Call(ctx, "b", "echo", nil); !errors.Is(err, cluster.ErrNodeGone) {
			t.Fatalf("d→b with a different secret: %v", err)
		}
	})
}

func TestNodeKilled(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	k := startNode(t, m, p, "k", nodeOpt{})
	waitMembers(t, []string{"a", "b", "k"}, a, b, k)
	ctx := context.Background()
	want := []cluster.Route{
		{JID: "u@x/k1", Node: "k", Priority: 1, Available: true},
		{JID: "w@x/k2", Node: "k"},
	}
	for _, r := range want {
		if err := k.PutRoute(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.PutRoute(ctx, cluster.Route{JID: "u@x/a1"}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, b, "u@x", []cluster.Route{{JID: "u@x/a1", Node: "a"}, want[0]})
	start := time.Now()
	k.crash()
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		for _, n := range []*node{a, b} {
			d := n.ev.downs("k")
			if len(d) != 1 {
				return fmt.Errorf("%s: %d down events for k", n.NodeName(), len(d))
			}
			if !reflect.DeepEqual(d[0], want) {
				return fmt.Errorf("%s: down routes %+v, want %+v", n.NodeName(), d[0], want)
			}
		}
		return nil
	})
	t.Logf("survivors handled the crash after %v (TTL %v)", time.Since(start), a.cc.NodeTTL)
	for _, n := range []*node{a, b} {
		rs, err := n.Routes(ctx, "u@x")
		if err != nil || len(rs) != 1 || rs[0].Node != "a" {
			t.Fatalf("%s: Routes after crash = %+v, %v", n.NodeName(), rs, err)
		}
		if err := n.Send(ctx, "k", "echo", nil); !errors.Is(err, cluster.ErrNodeGone) {
			t.Fatalf("%s: Send to the dead node: %v", n.NodeName(), err)
		}
	}
	// The routes are gone from Hazelcast itself, not just filtered.
	o := a.objs()
	vals, err := o.routes.GetValues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		var rr routeRecord
		if fromValue(v, &rr) == nil && rr.Node == "k" {
			t.Fatalf("route of k left in Hazelcast: %+v", rr)
		}
	}
}

func TestSwitch(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	props := &memProps{}
	a := startNode(t, m, p, "a", nodeOpt{props: props})
	b := startNode(t, m, p, "b", nodeOpt{props: props})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	if err := b.PutRoute(ctx, cluster.Route{JID: "u@x/b1", Available: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.PutRoute(ctx, cluster.Route{JID: "u@x/a1"}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, a, "u@x", []cluster.Route{{JID: "u@x/a1", Node: "a"}, {JID: "u@x/b1", Node: "b", Available: true}})

	_ = props.SetProperty(ctx, cluster.SwitchProperty, "false")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, n := range []*node{a, b} {
			if n.Clustered() {
				return fmt.Errorf("%s still clustered", n.NodeName())
			}
			if v, _ := n.ev.lastChange(); v {
				return fmt.Errorf("%s: no OnClusteredChange(false)", n.NodeName())
			}
		}
		return nil
	})
	rs, _ := a.Routes(ctx, "u@x")
	if !reflect.DeepEqual(rs, []cluster.Route{{JID: "u@x/a1", Node: "a"}}) {
		t.Fatalf("disabled a sees %+v", rs)
	}
	// The node links outlive the switch: b is still reachable (BOSH
	// forwarding relies on it), though nothing of the routes is shared.
	if got, err := a.Call(ctx, "b", "echo", []byte("still there")); err != nil || string(got) != "b<a:still there" {
		t.Fatalf("disabled Call: %q, %v", got, err)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		d := a.ev.downs("b")
		if len(d) == 0 {
			return errors.New("a got no down event for b")
		}
		if !reflect.DeepEqual(d[len(d)-1], []cluster.Route{{JID: "u@x/b1", Node: "b", Available: true}}) {
			return fmt.Errorf("a's down event for b: %+v", d)
		}
		return nil
	})
	// While disabled b's session ends and another starts: only its local
	// index changes; on enable Hazelcast must match it.
	_ = b.DeleteRoute(ctx, "u@x/b1")
	_ = b.PutRoute(ctx, cluster.Route{JID: "u@x/b2", Priority: 3})

	_ = props.SetProperty(ctx, cluster.SwitchProperty, "true")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, n := range []*node{a, b} {
			if !n.Clustered() {
				return fmt.Errorf("%s not clustered again", n.NodeName())
			}
		}
		rs, err := a.Routes(ctx, "u@x")
		want := []cluster.Route{{JID: "u@x/a1", Node: "a"}, {JID: "u@x/b2", Node: "b", Priority: 3}}
		if err != nil || !reflect.DeepEqual(rs, want) {
			return fmt.Errorf("a sees %+v, %v; want %+v", rs, err, want)
		}
		return nil
	})
	if _, err := a.Call(ctx, "b", "echo", []byte("back")); err != nil {
		t.Fatalf("Call after re-enable: %v", err)
	}
}

// TestJoiningTogetherSeeEachOther: when the switch turns on, the nodes
// join within milliseconds of each other, and each then resyncs presence
// with what it sees at its OnClusteredChange(true) (router
// clusteredChange). Whichever joins second must see the first's routes
// there, or neither resends presence to the other's users (CI failure of
// server/clustertest TestClusterSwitch). The heartbeat is long here, so
// that a node whose entry said clustered only from its next heartbeat on
// would be invisible to the other at both joins.
func TestJoiningTogetherSeeEachOther(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	props := &memProps{}
	opt := nodeOpt{props: props, heartbeat: 2 * time.Second}
	a := startNode(t, m, p, "a", opt)
	b := startNode(t, m, p, "b", opt)
	ctx := context.Background()
	if err := a.PutRoute(ctx, cluster.Route{JID: "ua@x/r", Available: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutRoute(ctx, cluster.Route{JID: "ub@x/r", Available: true}); err != nil {
		t.Fatal(err)
	}
	// What each node sees of the other's user when it joins.
	var mu sync.Mutex
	seen := map[string][]bool{}
	watch := func(n *node, other string) {
		n.OnClusteredChange(func(v bool) {
			if !v {
				return
			}
			rs, _ := n.Routes(ctx, other)
			mu.Lock()
			seen[n.NodeName()] = append(seen[n.NodeName()], len(rs) == 1)
			mu.Unlock()
		})
	}
	watch(a, "ub@x")
	watch(b, "ua@x")
	waitMembers(t, []string{"a", "b"}, a, b)
	for round := range 4 {
		_ = props.SetProperty(ctx, cluster.SwitchProperty, "false")
		testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			for _, n := range []*node{a, b} {
				if n.Clustered() {
					return fmt.Errorf("%s still clustered", n.NodeName())
				}
			}
			return nil
		})
		// Until a heartbeat writes them, the entries still say clustered
		// and the join below would find them so anyway.
		testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
			for _, n := range []*node{a, b} {
				if entryClustered(t, a, n.NodeName()) {
					return fmt.Errorf("%s's entry still says clustered", n.NodeName())
				}
			}
			return nil
		})
		mu.Lock()
		clear(seen)
		mu.Unlock()
		_ = props.SetProperty(ctx, cluster.SwitchProperty, "true")
		testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(seen["a"]) == 0 || len(seen["b"]) == 0 {
				return fmt.Errorf("joins seen: %v", seen)
			}
			return nil
		})
		mu.Lock()
		sawA, sawB := seen["a"][0], seen["b"][0]
		mu.Unlock()
		if !sawA && !sawB {
			t.Fatalf("round %d: neither node saw the other's route when it joined", round)
		}
	}
}

// entryClustered reads node's membership entry through n's client.
func entryClustered(t testing.TB, n *node, name string) bool {
	t.Helper()
	o := n.objs()
	if o == nil {
		t.Fatal("no hazelcast client")
	}
	v, err := o.members.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var mr memberRecord
	return v != nil && fromValue(v, &mr) == nil && mr.Clustered
}

// TestMemberRestart: the only Hazelcast member dies and comes back
// empty. Meanwhile the nodes stay clustered on what they knew (detached):
// the links carry messages, the replicas still route, and route changes
// travel as announcements over the links. When the member is back they
// rejoin (one OnClusteredChange(true), never false) and Hazelcast holds
// every route again, the changes made meanwhile included.
func TestMemberRestart(t *testing.T) {
	m := hztest.StartMember(t, "aviary-restart")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	for i := range 50 {
		if err := a.PutRoute(ctx, cluster.Route{JID: fmt.Sprintf("u%d@x/a", i)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = b.PutRoute(ctx, cluster.Route{JID: "u0@x/b"})
	waitRoutes(t, b, "u49@x", []cluster.Route{{JID: "u49@x/a", Node: "a"}})
	m.Kill()
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, n := range []*node{a, b} {
			if !n.Detached() {
				return fmt.Errorf("%s not detached", n.NodeName())
			}
		}
		return nil
	})
	// Still clustered, and the callbacks never heard otherwise.
	changes := map[*node]int{}
	for _, n := range []*node{a, b} {
		if !n.Clustered() || n.ev.everFalse() {
			t.Fatalf("%s detached: clustered %v, OnClusteredChange(false) ran", n.NodeName(), n.Clustered())
		}
		_, changes[n] = n.ev.lastChange()
	}
	// The links and the members as last seen still work.
	if r, err := a.Call(ctx, "b", "echo", []byte("hi")); err != nil || string(r) != "b<a:hi" {
		t.Fatalf("Call without Hazelcast: %q, %v", r, err)
	}
	waitMembers(t, []string{"a", "b"}, a, b)
	if rs, err := b.Routes(ctx, "u0@x"); err != nil || len(rs) != 2 {
		t.Fatalf("b detached sees %+v, %v; want both nodes' routes", rs, err)
	}
	// Changes travel over the links.
	if err := a.PutRoute(ctx, cluster.Route{JID: "late@x/a", Available: true}); err != nil {
		t.Fatalf("PutRoute without Hazelcast: %v", err)
	}
	if err := a.DeleteRoute(ctx, "u1@x/a"); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, b, "late@x", []cluster.Route{{JID: "late@x/a", Node: "a", Available: true}})
	waitRoutes(t, b, "u1@x", nil)

	m.Restart(t)
	// Both notice, reconnect, re-register and republish.
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		for _, n := range []*node{a, b} {
			v, cnt := n.ev.lastChange()
			if !v || cnt <= changes[n] || !n.Clustered() || n.Detached() || n.ev.everFalse() {
				return fmt.Errorf("%s: clustered %v, detached %v after %d changes", n.NodeName(), v, n.Detached(), cnt)
			}
		}
		// Read Hazelcast itself, not the replica.
		vals, err := b.objs().routes.GetValues(ctx)
		if err != nil {
			return err
		}
		if len(vals) != 51 { // u0..u49 but u1, late, u0@x/b
			return fmt.Errorf("%d routes in Hazelcast, want 51", len(vals))
		}
		return nil
	})
	waitRoutes(t, b, "late@x", []cluster.Route{{JID: "late@x/a", Node: "a", Available: true}})
	waitRoutes(t, b, "u1@x", nil)
	waitRoutes(t, b, "u49@x", []cluster.Route{{JID: "u49@x/a", Node: "a"}})
	waitMembers(t, []string{"a", "b"}, a, b)
	if _, err := b.Call(ctx, "a", "echo", nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		if downs := n.ev.downs(map[string]string{"a": "b", "b": "a"}[n.NodeName()]); len(downs) > 0 {
			t.Errorf("%s ran OnNodeDown for a node that never went down: %v", n.NodeName(), downs)
		}
	}
}

func TestHazelcastUnreachable(t *testing.T) {
	if _, err := hztest.Jar(); err != nil {
		hztest.Unavailable(t, err)
	}
	c, err := NewWithOptions(Options{
		Cluster: func() conf.ClusterConfig {
			cc := testConfig([]string{"127.0.0.1:1"}, "nobody", "lonely", "s")
			cc.StartupRetries = 1
			cc.StartupRetryInterval = 500 * time.Millisecond
			return cc
		}(),
		Prefix: prefix(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	if c.Clustered() || !c.Senior() {
		t.Fatalf("clustered %v senior %v", c.Clustered(), c.Senior())
	}
	if err := c.PutRoute(ctx, cluster.Route{JID: "u@x/r"}); err != nil {
		t.Fatal(err)
	}
	rs, err := c.Routes(ctx, "u@x")
	if err != nil || len(rs) != 1 || rs[0].Node != "lonely" {
		t.Fatalf("Routes = %+v, %v", rs, err)
	}
	c.Handle("k", func(ctx context.Context, from string, p []byte) ([]byte, error) { return p, nil })
	if r, err := c.Call(ctx, "lonely", "k", []byte("x")); err != nil || string(r) != "x" {
		t.Fatalf("Call self = %q, %v", r, err)
	}
	if err := c.Send(ctx, "other", "k", nil); !errors.Is(err, cluster.ErrNodeGone) {
		t.Fatalf("Send to other: %v", err)
	}
}

// TestEntryLapsedWhileAlive: b's member entry vanishes (Hazelcast too
// busy for its heartbeats, as in a reconnection storm) while b runs and
// answers on its link. a asks b over the link instead of burying it: no
// down event, b's routes stay, and b claims its incarnation back and
// registers again under it (liveness.go). Without the two rules, a removed
// b's routes and b rejoined under a new incarnation: the cascade of
// issue 23.
func TestEntryLapsedWhileAlive(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	r := cluster.Route{JID: "u@x/b", Node: "b", Available: true}
	if err := b.PutRoute(ctx, r); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, a, "u@x", []cluster.Route{r})
	inc := b.incarnation()
	_, changes := b.ev.lastChange()
	// Delete b's entry until a poll of a has found it missing (b puts it
	// back at each heartbeat) and asked b over the link, or buried b.
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if a.lapsedAlive.Load() > 0 || len(a.ev.downs("b")) > 0 {
			return nil
		}
		if err := a.objs().members.Delete(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		return errors.New("a has not found b's entry missing yet")
	})
	// b registers again under the same incarnation.
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		v, err := a.objs().members.Get(ctx, "b")
		if err != nil || v == nil {
			return fmt.Errorf("b's entry not back: %v", err)
		}
		var mr memberRecord
		if err := fromValue(v, &mr); err != nil {
			return err
		}
		if mr.Inc != inc {
			return fmt.Errorf("b registered again as %s, not %s", mr.Inc, inc)
		}
		return nil
	})
	if d := a.ev.downs("b"); len(d) != 0 {
		t.Fatalf("a buried a live b: down events %+v", d)
	}
	if b.incarnation() != inc {
		t.Fatalf("b took a new incarnation %s", b.incarnation())
	}
	if _, n := b.ev.lastChange(); n != changes || b.Detached() {
		t.Fatalf("b rejoined: %d clustered changes (had %d), detached %v", n, changes, b.Detached())
	}
	rs, err := a.Routes(ctx, "u@x")
	if err != nil || !reflect.DeepEqual(rs, []cluster.Route{r}) {
		t.Fatalf("a's routes of u@x = %+v, %v", rs, err)
	}
	if _, err := a.Call(ctx, "b", "echo", nil); err != nil {
		t.Fatal(err)
	}
}

// TestDeclaredDeadWhileAlive: b's member entry vanishes and a survivor has
// already buried b's incarnation (its routes recorded under aviary.down,
// as a survivor does before removing them: here written by the test,
// since a live b answers a's probe). b cannot claim the incarnation back:
// it takes a new one and republishes, a runs its down event for the old
// one, and everyone ends up seeing b's sessions again.
func TestDeclaredDeadWhileAlive(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	r := cluster.Route{JID: "u@x/b", Node: "b", Available: true}
	if err := b.PutRoute(ctx, r); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, a, "u@x", []cluster.Route{r})
	oldInc := b.incarnation()
	buried, err := toJSON([]cluster.Route{r})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.objs().down.Set(ctx, oldInc, buried); err != nil {
		t.Fatal(err)
	}
	if err := a.objs().members.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if b.incarnation() == oldInc {
			return errors.New("b kept its incarnation")
		}
		if v, n := b.ev.lastChange(); !v || n < 2 || !b.Clustered() || b.Detached() {
			return fmt.Errorf("b: clustered %v after %d changes", v, n)
		}
		if len(a.ev.downs("b")) == 0 {
			return errors.New("a saw no down event for b's old incarnation")
		}
		return nil
	})
	waitRoutes(t, a, "u@x", []cluster.Route{r})
	if _, err := a.Call(ctx, "b", "echo", nil); err != nil {
		t.Fatal(err)
	}
}

// TestTwoMembers: with two Hazelcast members, losing one keeps the
// cluster whole: the clients fail over and the backups keep the data.
func TestTwoMembers(t *testing.T) {
	ms := hztest.StartMembers(t, "aviary-two", 2)
	p := prefix(t)
	addrs := []string{ms[0].Addr(), ms[1].Addr()}
	a := startNode(t, ms[0], p, "a", nodeOpt{addrs: addrs})
	b := startNode(t, ms[0], p, "b", nodeOpt{addrs: addrs})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	var want []cluster.Route
	for i := range 20 {
		r := cluster.Route{JID: fmt.Sprintf("u@x/r%02d", i), Node: "a"}
		want = append(want, r)
		if err := a.PutRoute(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	waitRoutes(t, b, "u@x", want)
	ms[0].Kill()
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, n := range []*node{a, b} {
			if !n.Clustered() {
				return fmt.Errorf("%s not clustered", n.NodeName())
			}
		}
		// Read Hazelcast itself, not the replica.
		vals, err := b.objs().routes.GetValues(ctx)
		if err != nil {
			return err
		}
		if len(vals) != len(want) {
			return fmt.Errorf("%d routes in Hazelcast, want %d", len(vals), len(want))
		}
		return nil
	})
	waitRoutes(t, b, "u@x", want)
	waitMembers(t, []string{"a", "b"}, a, b)
	if _, err := b.Call(ctx, "a", "echo", nil); err != nil {
		t.Fatal(err)
	}
	// The data survived in the backups: nobody had to leave and republish.
	for _, n := range []*node{a, b} {
		if v, cnt := n.ev.lastChange(); !v || cnt != 1 {
			t.Errorf("%s: %d clustered changes, want just the first join", n.NodeName(), cnt)
		}
	}
}

// TestOrphanSweep: routes of an incarnation with no member entry (its
// node died while no other node was around) are found by the senior's
// sweep and cleaned up like any dead node's.
func TestOrphanSweep(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	ghost := cluster.Route{JID: "u@x/ghost", Node: "ghost", Available: true}
	v, err := toJSON(routeRecord{Route: ghost, Bare: "u@x", Inc: "ghost#1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.objs().routes.Set(ctx, ghost.JID, v); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, n := range []*node{a} {
			d := n.ev.downs("ghost")
			if len(d) != 1 || !reflect.DeepEqual(d[0], []cluster.Route{ghost}) {
				return fmt.Errorf("%s: down events for ghost: %+v", n.NodeName(), d)
			}
		}
		got, err := a.objs().routes.Get(ctx, ghost.JID)
		if err != nil || got != nil {
			return fmt.Errorf("ghost route still stored: %v %v", got, err)
		}
		return nil
	})
	// Only the senior sweeps.
	if d := b.ev.downs("ghost"); len(d) != 0 {
		t.Fatalf("b (not senior) handled the orphan: %+v", d)
	}
}

// TestRouteWriteRetried: a route written while Hazelcast does not answer
// (frozen member, shorter than the TTL) is kept locally and written at a
// later heartbeat.
func TestRouteWriteRetried(t *testing.T) {
	m := hztest.StartMember(t, "aviary-freeze")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{opTimeout: 300 * time.Millisecond})
	b := startNode(t, m, p, "b", nodeOpt{opTimeout: 300 * time.Millisecond})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	r := cluster.Route{JID: "u@x/a", Node: "a", Available: true}
	err := a.PutRoute(ctx, r)
	a.pendingMu.Lock()
	_, pending := a.pending[r.JID]
	a.pendingMu.Unlock()
	_ = m.Thaw()
	if err != nil {
		t.Fatalf("PutRoute while Hazelcast hangs: %v", err)
	}
	if !pending {
		t.Fatal("the failed write was not kept for retry")
	}
	waitRoutes(t, b, "u@x", []cluster.Route{r})
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		a.pendingMu.Lock()
		defer a.pendingMu.Unlock()
		if len(a.pending) != 0 {
			return fmt.Errorf("pending writes: %v", a.pending)
		}
		return nil
	})
}

// TestCauseBeforeEffect: a route change made before a Send over the link
// is visible to the receiver's Routes while it handles that message, even
// though the replica learns it from Hazelcast later (announcements).
func TestCauseBeforeEffect(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	type seen struct {
		want int
		got  []cluster.Route
		err  error
	}
	results := make(chan seen, 1)
	b.Handle("check", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		var want int
		fmt.Sscan(string(p), &want)
		rs, err := b.Routes(ctx, "u@x")
		results <- seen{want, rs, err}
		return nil, nil
	})
	stale := 0
	for i := range 200 {
		if err := a.PutRoute(ctx, cluster.Route{JID: "u@x/r", Priority: i, Available: true}); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(ctx, "b", "check", fmt.Append(nil, i)); err != nil {
			t.Fatal(err)
		}
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(r.got) != 1 || r.got[0].Priority != r.want {
			stale++
			t.Errorf("message %d: b saw %+v", i, r.got)
		}
		if stale > 5 {
			t.FailNow()
		}
	}
}

// TestNameInUse: a second live node under a name already in use is
// refused at start (it would overwrite the first one's entry and routes),
// while a node restarted under its old name after a crash, its stale
// entry still there, starts.
func TestNameInUse(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	inc := a.incarnation()

	dup, err := NewWithOptions(Options{Cluster: testConfig([]string{m.Addr()}, m.ClusterName, "a", "s3cret"), Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = dup.Start(ctx)
	if !errors.Is(err, ErrNameInUse) {
		t.Fatalf("second node named a: Start = %v, want ErrNameInUse", err)
	}
	if !strings.Contains(err.Error(), "cluster.node_name") {
		t.Errorf("error %q does not name the key", err)
	}
	var mr memberRecord
	v, err := a.objs().members.Get(ctx, "a")
	if err != nil || fromValue(v, &mr) != nil || mr.Inc != inc {
		t.Fatalf("a's entry after the refused start: %+v %v, want incarnation %s", mr, err, inc)
	}

	c := startNode(t, m, p, "c", nodeOpt{})
	waitMembers(t, []string{"a", "c"}, a, c)
	c.crash()
	var log testutil.Buffer
	c2 := startNode(t, m, p, "c", nodeOpt{logger: slog.New(slog.NewTextHandler(&log, nil))}) // fails the test if refused
	waitMembers(t, []string{"a", "c"}, a, c2)
	// Replacing its own previous run's entry is no name clash: an
	// operator restarting a crashed node must not read an error.
	if strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "previous run") {
		t.Errorf("the restarted node's log:\n%s", log.String())
	}
}

// TestRoutesFromSourceSeeCompletedWrites: a route write another node has
// completed is seen by RoutesFromSource at once, even when what makes the
// reader look came by another way than that node's link (an offline
// message committed to PostgreSQL after the recipient's session wrote its
// route and took the queue), so no announcement orders it. Routes, from
// the replica, may miss it for a moment; the router reads from the
// source after an offline commit so that neither side misses the other.
func TestRoutesFromSourceSeeCompletedWrites(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	a := startNode(t, m, p, "a", nodeOpt{})
	b := startNode(t, m, p, "b", nodeOpt{})
	waitMembers(t, []string{"a", "b"}, a, b)
	ctx := context.Background()
	replicaBehind := 0
	for i := range 200 {
		full := fmt.Sprintf("src%d@x/r", i)
		if err := a.PutRoute(ctx, cluster.Route{JID: full, Available: true}); err != nil {
			t.Fatal(err)
		}
		// A side channel: a channel send here, not a link message.
		rs, err := b.RoutesFromSource(ctx, fmt.Sprintf("src%d@x", i))
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].JID != full {
			t.Fatalf("write %d: RoutesFromSource on b saw %+v", i, rs)
		}
		if cached, _ := b.Routes(ctx, fmt.Sprintf("src%d@x", i)); len(cached) == 0 {
			replicaBehind++
		}
	}
	t.Logf("the replica had not yet seen %d of 200 completed writes", replicaBehind)
}
