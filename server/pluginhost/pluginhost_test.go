package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
	"github.com/aviary-im/aviary/wire"
)

// fakeNet joins fake cluster nodes in one process: Call dispatches to the
// named node's handler, like a node link would. An isolated node (its
// clustering switched off, its links gone) sees only itself and is seen
// by nobody.
type fakeNet struct {
	mu    sync.Mutex
	nodes map[string]*fakeNode
}

type fakeNode struct {
	cluster.Cluster // unused methods panic: the host must not need them
	net             *fakeNet
	name            string
	started         time.Time
	isolated        bool
	handlers        map[string]cluster.HandlerFunc
}

func (n *fakeNode) NodeName() string { return n.name }
func (n *fakeNode) Handle(kind string, h cluster.HandlerFunc) {
	n.net.mu.Lock()
	n.handlers[kind] = h
	n.net.mu.Unlock()
}
func (n *fakeNode) OnClusteredChange(fn func(bool)) {}
func (n *fakeNode) Members(ctx context.Context) ([]cluster.Member, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if n.isolated {
		return []cluster.Member{{Name: n.name, Started: n.started}}, nil
	}
	var out []cluster.Member
	for _, m := range n.net.nodes {
		if !m.isolated {
			out = append(out, cluster.Member{Name: m.name, Started: m.started})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
func (n *fakeNode) Senior() bool {
	ms, _ := n.Members(context.Background())
	return seniorOf(ms) == n.name
}
func (n *fakeNode) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	n.net.mu.Lock()
	target := n.net.nodes[node]
	gone := target == nil || target.isolated || n.isolated
	var h cluster.HandlerFunc
	if !gone {
		h = target.handlers[kind]
	}
	n.net.mu.Unlock()
	if gone {
		return nil, cluster.ErrNodeGone
	}
	return h(ctx, n.name, payload)
}

func (n *fakeNode) setIsolated(on bool) {
	n.net.mu.Lock()
	n.isolated = on
	n.net.mu.Unlock()
}

type node struct {
	name string
	host *Host
	mgr  *plugins.Manager
	ph   *plugintest.Host
	fake *fakeNode
}

// guests are the modules the tests load: the two wordfilter versions, and
// "panicky", which traps on every stanza.
func buildGuests(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for v, dir := range map[string]string{
		"v1": "plugins/examples/wordfilter/v1", "v2": "plugins/examples/wordfilter/v2", "panicky": "plugins/runtime/testdata/panicky",
	} {
		data, err := os.ReadFile(exampletest.Build(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		out[v] = data
	}
	return out
}

// testRollout watches each node briefly: long enough for the traffic the
// tests send to reach the plugin many times.
var testRollout = Rollout{Window: 1500 * time.Millisecond, MaxFailures: 3, MaxFailureRatio: 0.1, Poll: 20 * time.Millisecond}

type clusterOpts struct {
	health func(node string) func(ctx context.Context, name, version string) error
	// slowTouch delays writes of CatalogueProperty (a busy database).
	slowTouch time.Duration
}

// slowStore delays writes of CatalogueProperty.
type slowStore struct {
	*sqlite.Store
	delay time.Duration
}

func (s slowStore) SetProperty(ctx context.Context, name, value string) error {
	if name == CatalogueProperty {
		time.Sleep(s.delay) // the database's latency, not a wait for something
	}
	return s.Store.SetProperty(ctx, name, value)
}

type testCluster struct {
	t     *testing.T
	store *sqlite.Store
	rt    *runtime.Runtime
	net   *fakeNet
	base  time.Time
	nodes []*node
	opts  clusterOpts
}

// newCluster makes n nodes sharing one catalogue store (not started), and
// compiles guests first, two at a time: compiling a Go guest takes seconds
// (a minute under -race on a busy machine) when the machine's cache of
// compiled plugins does not have it yet, and no timed wait of a test
// (an upgrade's progress) should include it.
func newCluster(t *testing.T, n int, guests map[string][]byte, o clusterOpts) *testCluster {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "aviary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rt, err := runtime.New(context.Background(), runtime.Options{CacheDir: exampletest.CompiledDir(t), MaxFailures: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for name, wasm := range guests {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// Loaded under its own name and stopped, each stays compiled
			// in this runtime as that name's rollback target.
			p, err := rt.Load(context.Background(), "precompiled-"+name, "0", wasm)
			if err != nil {
				t.Error(err)
				return
			}
			p.Stop(context.Background())
		})
	}
	wg.Wait()
	tc := &testCluster{t: t, store: store, rt: rt, net: &fakeNet{nodes: map[string]*fakeNode{}}, base: time.Now(), opts: o}
	for i := 0; i < n; i++ {
		tc.nodes = append(tc.nodes, tc.newNode(string(rune('a'+i))+"-node", i))
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			nd.host.Stop(context.Background())
		}
	})
	return tc
}

// newNode builds the i-th node's host (a restart builds a new one under
// the same name).
func (tc *testCluster) newNode(name string, i int) *node {
	fn := &fakeNode{net: tc.net, name: name, started: tc.base.Add(time.Duration(i) * time.Second), handlers: map[string]cluster.HandlerFunc{}}
	tc.net.mu.Lock()
	tc.net.nodes[name] = fn
	tc.net.mu.Unlock()
	ph := plugintest.NewHostWithStore(tc.t, tc.store)
	mgr := plugins.NewManager(ph, ph.Log, nil)
	var hc func(ctx context.Context, name, version string) error
	if tc.opts.health != nil {
		hc = tc.opts.health(name)
	}
	var store Store = tc.store
	if tc.opts.slowTouch > 0 {
		store = slowStore{tc.store, tc.opts.slowTouch}
	}
	h := New(Options{Store: store, Cluster: fn, Runtime: tc.rt, Set: mgr, PluginHost: ph, HealthCheck: hc,
		Rollout: testRollout, ReconcileEvery: time.Hour})
	return &node{name: name, host: h, mgr: mgr, ph: ph, fake: fn}
}

func (tc *testCluster) start() {
	tc.t.Helper()
	for _, nd := range tc.nodes {
		if err := nd.host.Start(context.Background()); err != nil {
			tc.t.Fatal(err)
		}
	}
}

func upload(t *testing.T, store storage.Store, name, version string, data []byte, enabled bool) {
	t.Helper()
	err := store.PutPlugin(context.Background(), storage.PluginRecord{Name: name, Version: version, Checksum: runtime.Checksum(data), Artifact: data, Enabled: enabled, Uploaded: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
}

func waitUpgrade(t *testing.T, h *Host, final ...string) Status {
	t.Helper()
	var st Status
	servertest.CheckFor(t, 3*time.Minute, time.Millisecond, func() error {
		var err error
		if st, err = h.Upgrade(context.Background()); err != nil {
			return err
		}
		for _, f := range final {
			if st.State == f {
				return nil
			}
		}
		return fmt.Errorf("upgrade is %s: %+v", st.State, st)
	})
	return st
}

// spamVerdict runs the node's interceptors on a spam message: v1 passes it,
// v2 drops it, which tells which version a node really runs.
func spamVerdict(nd *node) plugins.Verdict {
	el := wire.New("message", "from", "a@localhost/x", "to", "b@localhost").Append(wire.New("body").SetText("buy cheap pills"))
	v, _ := nd.mgr.Intercept(context.Background(), plugins.PointInbound, &plugins.Stanza{El: el})
	return v
}

// traffic sends a stanza through every node's plugins every few
// milliseconds until the test ends, as users would.
func traffic(t *testing.T, nodes []*node) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	for _, nd := range nodes {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				spamVerdict(nd)
			}
		})
	}
}

// report returns what the store says node runs of plugin name.
func report(t *testing.T, store storage.Store, node, name string) storage.NodePlugin {
	t.Helper()
	nps, err := store.ListNodePlugins(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, np := range nps {
		if np.Node == node && np.Name == name {
			return np
		}
	}
	return storage.NodePlugin{}
}

func TestStartLoadsEnabledAndRollingUpgrade(t *testing.T) {
	guests := buildGuests(t)
	tc := newCluster(t, 3, guests, clusterOpts{})
	nodes, store := tc.nodes, tc.store
	upload(t, store, "wordfilter", "1.0.0", guests["v1"], true)
	upload(t, store, "wordfilter", "2.0.0", guests["v2"], false)
	tc.start()
	for _, nd := range nodes {
		if got := nd.host.Loaded()["wordfilter"]; got != "1.0.0" {
			t.Fatalf("loaded at start = %q", got)
		}
		if spamVerdict(nd) != plugins.Continue {
			t.Fatal("v1 should pass spam")
		}
	}
	traffic(t, nodes)
	// Ask a non-senior node: it forwards to the senior, which coordinates.
	if err := nodes[2].host.StartUpgrade(context.Background(), "wordfilter", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	st := waitUpgrade(t, nodes[0].host, "done", "failed", "rolled-back")
	if st.State != "done" || st.From != "1.0.0" || st.To != "2.0.0" || len(st.Steps) != 3 || st.Coordinator != "a-node" {
		t.Fatalf("status = %+v", st)
	}
	for i, nd := range nodes {
		if st.Steps[i].State != "healthy" || nd.host.Loaded()["wordfilter"] != "2.0.0" || spamVerdict(nd) != plugins.Drop {
			t.Errorf("node %d after upgrade: step %+v, loaded %v", i, st.Steps[i], nd.host.Loaded())
		}
		if st.Steps[i].Calls == 0 || st.Steps[i].Failures != 0 {
			t.Errorf("node %d was judged on %d calls, %d failed: want traffic and no failure", i, st.Steps[i].Calls, st.Steps[i].Failures)
		}
	}
	// The catalogue now enables 2.0.0 only, so a restarted node loads it.
	recs, _ := store.ListPlugins(context.Background())
	for _, r := range recs {
		if r.Enabled != (r.Version == "2.0.0") {
			t.Errorf("catalogue %s enabled=%v", r.Version, r.Enabled)
		}
	}
	nps, _ := store.ListNodePlugins(context.Background())
	if len(nps) != 3 {
		t.Errorf("node plugin reports = %+v", nps)
	}
	// Every node reconciles (a catalogue notification arrived meanwhile):
	// nothing moves back.
	for _, nd := range nodes {
		if err := nd.host.Reconcile(context.Background(), true); err != nil || nd.host.Loaded()["wordfilter"] != "2.0.0" {
			t.Errorf("%s after reconciling: %v %v", nd.name, nd.host.Loaded(), err)
		}
	}
	// A node rolled back to 1.0.0 would not compile it again: this
	// runtime keeps the last version each plugin stopped using, and it
	// compiled each artifact once for the three nodes.
	if n := tc.rt.Compiled(); n != len(guests) {
		t.Errorf("runtime holds %d compiled artifacts, want %d (each guest once)", n, len(guests))
	}
}

// TestNextUpgradeRightAfterDone: an operator may start the next upgrade as
// soon as the last one shows "done". The coordinator used to save "done",
// tell the nodes (a database write) and only then count itself free, so
// the next request got "already running" (409) meanwhile.
func TestNextUpgradeRightAfterDone(t *testing.T) {
	guests := buildGuests(t)
	tc := newCluster(t, 1, guests, clusterOpts{slowTouch: 300 * time.Millisecond})
	upload(t, tc.store, "wordfilter", "1.0.0", guests["v1"], true)
	upload(t, tc.store, "wordfilter", "2.0.0", guests["v2"], false)
	tc.start()
	h := tc.nodes[0].host
	for _, v := range []string{"2.0.0", "1.0.0", "2.0.0"} {
		if err := h.StartUpgrade(context.Background(), "wordfilter", v); err != nil {
			t.Fatalf("upgrade to %s right after the last one was done: %v", v, err)
		}
		if st := waitUpgrade(t, h, "done", "failed", "rolled-back"); st.State != "done" || st.To != v {
			t.Fatalf("upgrade to %s: %+v", v, st)
		}
	}
}

func TestRollingUpgradeRollsBackOnFailure(t *testing.T) {
	guests := buildGuests(t)
	// The third node fails its health check for 2.0.0.
	tc := newCluster(t, 3, guests, clusterOpts{health: func(node string) func(ctx context.Context, name, version string) error {
		return func(ctx context.Context, name, version string) error {
			if node == "c-node" && version == "2.0.0" {
				return errors.New("self-test failed")
			}
			return nil
		}
	}})
	nodes, store := tc.nodes, tc.store
	upload(t, store, "wordfilter", "1.0.0", guests["v1"], true)
	upload(t, store, "wordfilter", "2.0.0", guests["v2"], false)
	tc.start()
	if err := nodes[0].host.StartUpgrade(context.Background(), "wordfilter", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	st := waitUpgrade(t, nodes[0].host, "rolled-back", "failed", "done")
	if st.Coordinator != "a-node" {
		t.Errorf("coordinator %q", st.Coordinator)
	}
	if st.State != "rolled-back" || st.Steps[2].State != "rolled-back" || !strings.Contains(st.Error, "self-test failed") {
		t.Errorf("status = %+v", st)
	}
	for i, nd := range nodes {
		if v := nd.host.Loaded()["wordfilter"]; v != "1.0.0" || spamVerdict(nd) != plugins.Continue {
			t.Errorf("node %d runs %q after rollback", i, v)
		}
	}
	recs, _ := store.ListPlugins(context.Background())
	for _, r := range recs {
		if r.Enabled != (r.Version == "1.0.0") {
			t.Errorf("catalogue changed by a failed upgrade: %s enabled=%v", r.Version, r.Enabled)
		}
	}
}

// TestFailingVersionRollsBackOnRealCalls is issue 17's "healthy" rollout
// of a plugin that fails on every stanza: version 2.0.0 traps on each call.
// The first node's window sees the failures, so the rollout stops there:
// that node goes back to 1.0.0, the others never move, the catalogue
// keeps 1.0.0, and the status says why with the counts.
func TestFailingVersionRollsBackOnRealCalls(t *testing.T) {
	guests := buildGuests(t)
	tc := newCluster(t, 3, guests, clusterOpts{})
	nodes, store := tc.nodes, tc.store
	upload(t, store, "wordfilter", "1.0.0", guests["v1"], true)
	upload(t, store, "wordfilter", "2.0.0", guests["panicky"], false)
	tc.start()
	traffic(t, nodes)
	if err := nodes[1].host.StartUpgrade(context.Background(), "wordfilter", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	st := waitUpgrade(t, nodes[0].host, "done", "failed", "rolled-back")
	if st.State != "rolled-back" {
		t.Fatalf("a version that fails on every stanza ended %q: %+v", st.State, st)
	}
	first := st.Steps[0]
	if first.State != "rolled-back" || first.Version != "1.0.0" || first.Failures == 0 || first.Traps != first.Failures ||
		!strings.Contains(first.Error, "calls failed") || !strings.Contains(st.Error, "a-node") {
		t.Errorf("first step %+v, error %q: want rolled back after traps", first, st.Error)
	}
	for _, s := range st.Steps[1:] {
		if s.State != "pending" || s.Version != "1.0.0" {
			t.Errorf("the rollout went on after an unhealthy node: %+v", s)
		}
	}
	for _, nd := range nodes {
		if v := nd.host.Loaded()["wordfilter"]; v != "1.0.0" || spamVerdict(nd) != plugins.Continue {
			t.Errorf("%s runs %q after the rollback", nd.name, v)
		}
		if np := report(t, store, nd.name, "wordfilter"); np.State != StateLoaded || np.Version != "1.0.0" {
			t.Errorf("%s reports %+v", nd.name, np)
		}
	}
	recs, _ := store.ListPlugins(context.Background())
	for _, r := range recs {
		if r.Enabled != (r.Version == "1.0.0") {
			t.Errorf("catalogue changed by a failed upgrade: %s enabled=%v", r.Version, r.Enabled)
		}
	}
}

// TestEnableAndDisableReachEveryNode: enabling a version in the catalogue
// loads it on every node at once, disabling unloads it (issue 17: nothing
// happened until a rolling upgrade). A node whose links are gone
// (clustering off) follows through the catalogue's notification; a node
// that was down follows when it starts.
func TestEnableAndDisableReachEveryNode(t *testing.T) {
	guests := buildGuests(t)
	tc := newCluster(t, 3, guests, clusterOpts{})
	nodes, store := tc.nodes, tc.store
	upload(t, store, "wordfilter", "1.0.0", guests["v1"], false)
	upload(t, store, "wordfilter", "2.0.0", guests["v2"], false)
	tc.start()
	ctx := context.Background()
	for _, nd := range nodes {
		if len(nd.host.Loaded()) != 0 {
			t.Fatalf("%s runs %v with nothing enabled", nd.name, nd.host.Loaded())
		}
	}
	// c-node is cut off from the others (clustering switched off there).
	nodes[2].fake.setIsolated(true)
	if err := SetEnabled(ctx, store, "wordfilter", "1.0.0", true); err != nil {
		t.Fatal(err)
	}
	res := nodes[1].host.SyncCluster(ctx, "wordfilter")
	if len(res) != 2 {
		t.Fatalf("sync reached %+v, want the two connected nodes", res)
	}
	for _, r := range res {
		if r.Err != nil || len(r.States) != 1 || r.States[0].State != StateLoaded || r.States[0].Version != "1.0.0" {
			t.Errorf("%s answered %+v", r.Node, r)
		}
	}
	for _, nd := range nodes[:2] {
		if nd.host.Loaded()["wordfilter"] != "1.0.0" || spamVerdict(nd) != plugins.Continue {
			t.Errorf("%s runs %v after enable", nd.name, nd.host.Loaded())
		}
	}
	servertest.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		if v := nodes[2].host.Loaded()["wordfilter"]; v != "1.0.0" {
			return fmt.Errorf("the isolated node runs %q", v)
		}
		return nil
	})
	nodes[2].fake.setIsolated(false)

	// Enabling another version moves every node to it.
	if err := SetEnabled(ctx, store, "wordfilter", "2.0.0", true); err != nil {
		t.Fatal(err)
	}
	nodes[0].host.SyncCluster(ctx, "wordfilter")
	for _, nd := range nodes {
		if nd.host.Loaded()["wordfilter"] != "2.0.0" || spamVerdict(nd) != plugins.Drop {
			t.Errorf("%s runs %v after enabling 2.0.0", nd.name, nd.host.Loaded())
		}
	}

	// c-node goes down; the plugin is disabled meanwhile; c-node starts
	// again and runs nothing, reporting so.
	nodes[2].host.Stop(ctx)
	if np := report(t, store, "c-node", "wordfilter"); np.State != StateUnloaded {
		t.Errorf("a stopped node reports %+v", np)
	}
	if err := SetEnabled(ctx, store, "wordfilter", "2.0.0", false); err != nil {
		t.Fatal(err)
	}
	nodes[0].host.SyncCluster(ctx, "")
	for _, nd := range nodes[:2] {
		if len(nd.host.Loaded()) != 0 || spamVerdict(nd) != plugins.Continue {
			t.Errorf("%s runs %v after disable", nd.name, nd.host.Loaded())
		}
		if np := report(t, store, nd.name, "wordfilter"); np.State != StateUnloaded {
			t.Errorf("%s reports %+v after disable", nd.name, np)
		}
	}
	if err := SetEnabled(ctx, store, "wordfilter", "1.0.0", true); err != nil {
		t.Fatal(err)
	}
	restarted := tc.newNode("c-node", 2)
	tc.nodes[2] = restarted
	if err := restarted.host.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if v := restarted.host.Loaded()["wordfilter"]; v != "1.0.0" {
		t.Errorf("the restarted node runs %q, want the enabled 1.0.0", v)
	}
}

// TestNodeReportsWhatItReallyRuns: a node never runs nothing silently
// while the catalogue enables a plugin. A version that fails to load is
// reported failed with the reason; what an earlier run of the node
// reported is replaced, not left standing.
func TestNodeReportsWhatItReallyRuns(t *testing.T) {
	guests := buildGuests(t)
	tc := newCluster(t, 1, guests, clusterOpts{})
	store, ctx := tc.store, context.Background()
	// The catalogue enables 1.0.0 of "broken", whose artifact does not
	// match its checksum; an earlier run of the node said it ran
	// wordfilter 1.0.0, which is no longer enabled.
	if err := store.PutPlugin(ctx, storage.PluginRecord{Name: "broken", Version: "1.0.0", Checksum: runtime.Checksum(guests["v2"]), Artifact: guests["v1"], Enabled: true}); err != nil {
		t.Fatal(err)
	}
	upload(t, store, "wordfilter", "1.0.0", guests["v1"], false)
	if err := store.SetNodePlugin(ctx, storage.NodePlugin{Node: "a-node", Name: "wordfilter", Version: "1.0.0", State: StateLoaded}); err != nil {
		t.Fatal(err)
	}
	tc.start()
	if np := report(t, store, "a-node", "broken"); np.State != StateFailed || np.Version != "1.0.0" || !strings.Contains(np.Error, "checksum") {
		t.Errorf("a plugin that failed to load is reported %+v", np)
	}
	if np := report(t, store, "a-node", "wordfilter"); np.State != StateUnloaded {
		t.Errorf("an earlier run's report stands: %+v", np)
	}
	// A corrupt new version leaves the running one, and says so. (No
	// catalogue notification here: its reconcile pass would rightly
	// report the node as running 1.0.0 without the error.)
	if err := setEnabled(ctx, store, "wordfilter", "1.0.0", true); err != nil {
		t.Fatal(err)
	}
	tc.nodes[0].host.SyncCluster(ctx, "")
	bad := append([]byte(nil), guests["v2"]...)
	bad[len(bad)/2] ^= 0xff
	if err := store.PutPlugin(ctx, storage.PluginRecord{Name: "wordfilter", Version: "2.0.0", Checksum: runtime.Checksum(guests["v2"]), Artifact: bad}); err != nil {
		t.Fatal(err)
	}
	if err := tc.nodes[0].host.ApplyLocal(ctx, "wordfilter", "2.0.0"); !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if v := tc.nodes[0].host.Loaded()["wordfilter"]; v != "1.0.0" {
		t.Errorf("a corrupt artifact replaced the running version: %q", v)
	}
	if np := report(t, store, "a-node", "wordfilter"); np.State != StateLoaded || np.Version != "1.0.0" || !strings.Contains(np.Error, "loading 2.0.0 failed") {
		t.Errorf("report after a failed load beside a running version: %+v", np)
	}
	// Unloading at run time.
	if err := tc.nodes[0].host.ApplyLocal(ctx, "wordfilter", ""); err != nil {
		t.Fatal(err)
	}
	if len(tc.nodes[0].mgr.IDs()) != 0 {
		t.Errorf("still running: %v", tc.nodes[0].mgr.IDs())
	}
}

// TestDisabledByTheNodeIsReported: a plugin the node switched off after
// repeated failures is reported "disabled" with the reason (the console
// showed it loaded); enabling it again loads it afresh.
func TestDisabledByTheNodeIsReported(t *testing.T) {
	guests := buildGuests(t)
	tc := newCluster(t, 1, guests, clusterOpts{})
	store, ctx, nd := tc.store, context.Background(), tc.nodes[0]
	upload(t, store, "boom", "1.0.0", guests["panicky"], true)
	tc.start()
	if np := report(t, store, "a-node", "boom"); np.State != StateLoaded {
		t.Fatalf("report at start %+v", np)
	}
	for range 5 { // the runtime disables it at the fifth failure
		spamVerdict(nd)
	}
	servertest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if np := report(t, store, "a-node", "boom"); np.State != StateDisabled || !strings.Contains(np.Error, "5 failures") {
			return fmt.Errorf("report %+v", np)
		}
		return nil
	})
	if hl := nd.host.LocalHealth("boom"); hl.State != StateDisabled || hl.Traps != 5 {
		t.Errorf("health %+v", hl)
	}
	// A pass of the reconcile loop leaves it disabled (no flapping)...
	if err := nd.host.Reconcile(ctx, false); err != nil {
		t.Fatal(err)
	}
	if np := report(t, store, "a-node", "boom"); np.State != StateDisabled {
		t.Errorf("after a reconcile: %+v", np)
	}
	// ...and the operator's enable brings it back.
	if err := SetEnabled(ctx, store, "boom", "1.0.0", true); err != nil {
		t.Fatal(err)
	}
	res := nd.host.SyncCluster(ctx, "boom")
	if len(res) != 1 || res[0].Err != nil || len(res[0].States) != 1 || res[0].States[0].State != StateLoaded {
		t.Errorf("enable again: %+v", res)
	}
	if hl := nd.host.LocalHealth("boom"); hl.State != StateLoaded || hl.Calls != 0 {
		t.Errorf("a fresh instance: %+v", hl)
	}
}

// TestDeleteRefusedWhileInUse: a version is deleted only when it is not
// enabled and no live node runs it.
func TestDeleteRefusedWhileInUse(t *testing.T) {
	guests := buildGuests(t)
	tc := newCluster(t, 2, guests, clusterOpts{})
	store, ctx := tc.store, context.Background()
	upload(t, store, "wordfilter", "1.0.0", guests["v1"], true)
	upload(t, store, "wordfilter", "2.0.0", guests["v2"], false)
	tc.start()
	live := func(string) bool { return true }
	var rf *Refusal
	if err := Delete(ctx, store, "wordfilter", "1.0.0", live); !errors.As(err, &rf) || !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "disable it first") {
		t.Errorf("deleting the enabled version: %v", err)
	}
	if err := Delete(ctx, store, "wordfilter", "", live); !errors.Is(err, ErrInUse) {
		t.Errorf("deleting every version while one is enabled: %v", err)
	}
	if err := Delete(ctx, store, "wordfilter", "3.0.0", live); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleting an unknown version: %v", err)
	}
	// Disabled in the catalogue, but b-node (its links down) still runs it.
	tc.nodes[1].fake.setIsolated(true)
	if err := setEnabled(ctx, store, "wordfilter", "1.0.0", false); err != nil { // no notification
		t.Fatal(err)
	}
	tc.nodes[0].host.SyncCluster(ctx, "")
	err := Delete(ctx, store, "wordfilter", "1.0.0", live)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "b-node runs 1.0.0") || strings.Contains(err.Error(), "a-node") {
		t.Errorf("deleting a version a node runs: %v", err)
	}
	// A node that is not live does not hold it up.
	if err := Delete(ctx, store, "wordfilter", "2.0.0", live); err != nil {
		t.Errorf("deleting a version nobody runs: %v", err)
	}
	if err := Delete(ctx, store, "wordfilter", "1.0.0", func(n string) bool { return n != "b-node" }); err != nil {
		t.Errorf("deleting a version only a dead node reported: %v", err)
	}
	if recs, _ := store.ListPlugins(ctx); len(recs) != 0 {
		t.Errorf("catalogue after deletes: %+v", recs)
	}
	// Upload refuses a version that exists.
	if err := Upload(ctx, store, "wordfilter", "1.0.0", guests["v1"]); err != nil {
		t.Fatal(err)
	}
	err = Upload(ctx, store, "wordfilter", "1.0.0", guests["v2"])
	if !errors.As(err, &rf) || !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "already in the catalogue") {
		t.Errorf("uploading a version again: %v", err)
	}
}
