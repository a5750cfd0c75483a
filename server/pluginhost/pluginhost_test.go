package pluginhost

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
	"github.com/aviary-im/aviary/wire"
)

// fakeNet joins fake cluster nodes in one process: Call dispatches to the
// named node's handler, like a node link would.
type fakeNet struct {
	mu    sync.Mutex
	nodes map[string]*fakeNode
}

type fakeNode struct {
	cluster.Cluster // unused methods panic: the host must not need them
	net             *fakeNet
	name            string
	started         time.Time
	handlers        map[string]cluster.HandlerFunc
}

func (n *fakeNode) NodeName() string { return n.name }
func (n *fakeNode) Handle(kind string, h cluster.HandlerFunc) {
	n.handlers[kind] = h
}
func (n *fakeNode) Members(ctx context.Context) ([]cluster.Member, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	var out []cluster.Member
	for _, m := range n.net.nodes {
		out = append(out, cluster.Member{Name: m.name, Started: m.started})
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
	n.net.mu.Unlock()
	if target == nil {
		return nil, cluster.ErrNodeGone
	}
	return target.handlers[kind](ctx, n.name, payload)
}

type node struct {
	host *Host
	mgr  *plugins.Manager
	ph   *plugintest.Host
}

func buildGuests(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, v := range []string{"v1", "v2"} {
		data, err := os.ReadFile(exampletest.Build(t, "plugins/examples/wordfilter/"+v))
		if err != nil {
			t.Fatal(err)
		}
		out[v] = data
	}
	return out
}

// newCluster makes n nodes sharing one catalogue store.
func newCluster(t *testing.T, n int, health func(node string) func(ctx context.Context, name, version string) error) ([]*node, storage.Store) {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "aviary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rt, err := runtime.New(context.Background(), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	net := &fakeNet{nodes: map[string]*fakeNode{}}
	var out []*node
	base := time.Now()
	for i := 0; i < n; i++ {
		name := string(rune('a'+i)) + "-node"
		fn := &fakeNode{net: net, name: name, started: base.Add(time.Duration(i) * time.Second), handlers: map[string]cluster.HandlerFunc{}}
		net.nodes[name] = fn
		ph := plugintest.NewHostWithStore(t, store)
		mgr := plugins.NewManager(ph, ph.Log, nil)
		var hc func(ctx context.Context, name, version string) error
		if health != nil {
			hc = health(name)
		}
		h := New(Options{Store: store, Cluster: fn, Runtime: rt, Set: mgr, PluginHost: ph, HealthCheck: hc})
		out = append(out, &node{host: h, mgr: mgr, ph: ph})
	}
	t.Cleanup(func() {
		for _, nd := range out {
			nd.host.Stop(context.Background())
		}
	})
	return out, store
}

func upload(t *testing.T, store storage.Store, version string, data []byte, enabled bool) {
	t.Helper()
	err := store.PutPlugin(context.Background(), storage.PluginRecord{Name: "wordfilter", Version: version, Checksum: runtime.Checksum(data), Artifact: data, Enabled: enabled, Uploaded: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
}

func waitUpgrade(t *testing.T, h *Host, final ...string) Status {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := h.Upgrade(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range final {
			if st.State == f {
				return st
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("upgrade did not finish")
	return Status{}
}

// spamVerdict runs the node's interceptors on a spam message: v1 passes it,
// v2 drops it, which tells which version a node really runs.
func spamVerdict(nd *node) plugins.Verdict {
	el := wire.New("message", "from", "a@localhost/x", "to", "b@localhost").Append(wire.New("body").SetText("buy cheap pills"))
	v, _ := nd.mgr.Intercept(context.Background(), plugins.PointInbound, &plugins.Stanza{El: el})
	return v
}

func TestStartLoadsEnabledAndRollingUpgrade(t *testing.T) {
	guests := buildGuests(t)
	nodes, store := newCluster(t, 3, nil)
	upload(t, store, "1.0.0", guests["v1"], true)
	upload(t, store, "2.0.0", guests["v2"], false)
	for _, nd := range nodes {
		if err := nd.host.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := nd.host.Loaded()["wordfilter"]; got != "1.0.0" {
			t.Fatalf("loaded at start = %q", got)
		}
		if spamVerdict(nd) != plugins.Continue {
			t.Fatal("v1 should pass spam")
		}
	}
	// Ask a non-senior node: it forwards to the senior, which coordinates.
	if err := nodes[2].host.StartUpgrade(context.Background(), "wordfilter", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	st := waitUpgrade(t, nodes[0].host, "done", "failed", "rolled-back")
	if st.State != "done" || st.From != "1.0.0" || st.To != "2.0.0" || len(st.Steps) != 3 {
		t.Fatalf("status = %+v", st)
	}
	for i, nd := range nodes {
		if st.Steps[i].State != "healthy" || nd.host.Loaded()["wordfilter"] != "2.0.0" || spamVerdict(nd) != plugins.Drop {
			t.Errorf("node %d after upgrade: step %+v, loaded %v", i, st.Steps[i], nd.host.Loaded())
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
}

func TestRollingUpgradeRollsBackOnFailure(t *testing.T) {
	guests := buildGuests(t)
	// The third node fails its health check for 2.0.0.
	nodes, store := newCluster(t, 3, func(node string) func(ctx context.Context, name, version string) error {
		return func(ctx context.Context, name, version string) error {
			if node == "c-node" && version == "2.0.0" {
				return errors.New("self-test failed")
			}
			return nil
		}
	})
	upload(t, store, "1.0.0", guests["v1"], true)
	upload(t, store, "2.0.0", guests["v2"], false)
	for _, nd := range nodes {
		if err := nd.host.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[0].host.StartUpgrade(context.Background(), "wordfilter", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	st := waitUpgrade(t, nodes[0].host, "rolled-back")
	if st.Steps[2].State != "rolled-back" || st.Error == "" {
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

func TestApplyRejectsCorruptArtifact(t *testing.T) {
	guests := buildGuests(t)
	nodes, store := newCluster(t, 1, nil)
	upload(t, store, "1.0.0", guests["v1"], true)
	if err := nodes[0].host.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), guests["v2"]...)
	bad[len(bad)/2] ^= 0xff
	err := store.PutPlugin(context.Background(), storage.PluginRecord{Name: "wordfilter", Version: "2.0.0", Checksum: runtime.Checksum(guests["v2"]), Artifact: bad, Uploaded: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].host.ApplyLocal(context.Background(), "wordfilter", "2.0.0"); !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if v := nodes[0].host.Loaded()["wordfilter"]; v != "1.0.0" {
		t.Errorf("a corrupt artifact replaced the running version: %q", v)
	}
	// Unloading at run time.
	if err := nodes[0].host.ApplyLocal(context.Background(), "wordfilter", ""); err != nil {
		t.Fatal(err)
	}
	if len(nodes[0].mgr.IDs()) != 0 {
		t.Errorf("still running: %v", nodes[0].mgr.IDs())
	}
}
