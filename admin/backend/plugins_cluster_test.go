package backend_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/clustertest"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// pluginNode is one in-process node of the plugin cluster test: a real
// node on the shared PostgreSQL and Hazelcast member, with its admin API.
type pluginNode struct {
	name string
	n    *server.Node
	c    *hazelcast.Cluster
	adm  *backend.Service
	api  *clustertest.Admin
}

// apiPluginEntry is the part of a catalogue entry the test reads.
type apiPluginEntry struct {
	Name, Version string
	Enabled       bool
	Nodes         []struct{ Node, Version, State, Error string }
}

// TestPluginsFollowTheCatalogueAcrossACluster is issue 17's "what the
// console says must be what runs", on three real nodes (one PostgreSQL,
// one Hazelcast member, node links) through the admin API as an operator
// uses it:
//   - uploading a version that exists is refused (it replaced the
//     artifact and cleared its enabled flag);
//   - enable loads the version on every node before the API answers, and
//     disable unloads it (nothing happened until a rolling upgrade);
//   - with clustering switched off, nodes still follow the catalogue
//     (through PostgreSQL's notification);
//   - rolling out a version that fails on every stanza stops at the first
//     node and rolls it back (it rolled out "healthy" everywhere);
//   - a version the nodes disable after failures shows as disabled on
//     every node (it showed as loaded);
//   - a version is deleted only when nothing runs it;
//   - a restarted node runs the enabled version and says so.
func TestPluginsFollowTheCatalogueAcrossACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and three nodes")
	}
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-plugins")
	began := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), what) }
	wasm := map[string][]byte{}
	for v, dir := range map[string]string{"1.0.0": "plugins/examples/wordfilter/v1", "2.0.0": "plugins/examples/wordfilter/v2", "3.0.0": "plugins/runtime/testdata/panicky"} {
		b, err := os.ReadFile(exampletest.Build(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		wasm[v] = b
	}
	var token string
	start := func(name string) *pluginNode {
		cfg := servertest.DefaultConfig(t)
		cfg.Admin.Listen = "127.0.0.1:0"
		cfg.Admin.Admins = []string{"boss@localhost"}
		cfg.Plugins.Rollout.HealthWindow = 3 * time.Second
		plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, servertest.TestLogger())
		adm := backend.NewService(cfg, backend.Deps{Logger: servertest.TestLogger(), Plugins: plugs})
		n, c := servertest.RunClusterNode(t, cfg, servertest.ClusterOptions{
			DatabaseURL: pg.URL(), Member: member.Addr(), ClusterName: member.ClusterName,
			NodeName: name, Secret: "plugins-test", Prefix: "plugins.", NodeTTL: 10 * time.Second,
		}, server.WithService(plugs), server.WithService(adm))
		return &pluginNode{name: name, n: n, c: c, adm: adm, api: &clustertest.Admin{Base: "http://" + adm.Addr().String(), Token: token, HTTP: &http.Client{Timeout: time.Minute}}}
	}
	nodes := []*pluginNode{start("node1"), start("node2"), start("node3")}
	servertest.WaitClustered(t, nodes[0].c, nodes[1].c, nodes[2].c)
	ctx := context.Background()
	for _, u := range []string{"boss", "alice", "bob", "carol"} {
		servertest.CreateUser(t, nodes[0].n, u, u+"-secret")
	}
	adm, err := clustertest.AdminLogin(ctx, nodes[0].api.Base, "boss@localhost", "boss-secret")
	if err != nil {
		t.Fatal(err)
	}
	token = adm.Token
	for _, nd := range nodes {
		nd.api.Token = token
	}
	phase("three nodes clustered")

	// call does an API request and returns the status and the decoded
	// answer (or the error message).
	call := func(nd *pluginNode, method, path string, body []byte, out any) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, nd.api.Base+path, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := nd.api.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			var e struct{ Error struct{ Message string } }
			json.Unmarshal(raw, &e)
			return resp.StatusCode, e.Error.Message
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, raw)
			}
		}
		return resp.StatusCode, ""
	}
	mustOK := func(nd *pluginNode, method, path string, body []byte, out any) {
		t.Helper()
		if code, msg := call(nd, method, path, body, out); code != http.StatusOK {
			t.Fatalf("%s %s on %s: %d %s", method, path, nd.name, code, msg)
		}
	}
	// runs checks each node's own plugin set.
	runs := func(version string) error {
		for _, nd := range nodes {
			if got := nd.adm.Plugins().Loaded()["wordfilter"]; got != version {
				return fmt.Errorf("%s runs wordfilter %q, want %q", nd.name, got, version)
			}
		}
		return nil
	}

	// Upload: a version that exists is refused with a clear error.
	for _, v := range []string{"1.0.0", "2.0.0", "3.0.0"} {
		mustOK(nodes[0], "POST", "/api/plugins/wordfilter/"+v, wasm[v], nil)
	}
	if code, msg := call(nodes[1], "POST", "/api/plugins/wordfilter/1.0.0", wasm["2.0.0"], nil); code != http.StatusConflict || !strings.Contains(msg, "already in the catalogue") {
		t.Errorf("uploading 1.0.0 again: %d %q, want 409", code, msg)
	}

	// Enable loads it on every node it reaches before the answer, which
	// says what each node runs; any other (a node the links lost for a
	// moment) follows the catalogue's notification.
	var entry apiPluginEntry
	mustOK(nodes[1], "POST", "/api/plugins/wordfilter/1.0.0/enable", nil, &entry)
	if len(entry.Nodes) != 3 {
		t.Errorf("enable answered %+v, want three nodes", entry)
	}
	for _, n := range entry.Nodes {
		if n.State != "loaded" {
			t.Logf("enable answered %+v", n)
			continue
		}
		for _, nd := range nodes {
			if nd.name == n.Node && nd.adm.Plugins().Loaded()["wordfilter"] != "1.0.0" {
				t.Errorf("the answer says %s runs 1.0.0; it runs %v", n.Node, nd.adm.Plugins().Loaded())
			}
		}
	}
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error { return runs("1.0.0") })
	phase("1.0.0 enabled on every node")

	// Clustering off: each node is on its own, yet follows the catalogue.
	mustOK(nodes[0], "POST", "/api/cluster/disable", nil, nil)
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, nd := range nodes {
			if nd.c.Clustered() {
				return fmt.Errorf("%s still clustered", nd.name)
			}
		}
		return nil
	})
	mustOK(nodes[0], "POST", "/api/plugins/wordfilter/1.0.0/disable", nil, nil)
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error { return runs("") })
	mustOK(nodes[0], "POST", "/api/plugins/wordfilter/2.0.0/enable", nil, nil)
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error { return runs("2.0.0") })
	mustOK(nodes[0], "POST", "/api/cluster/enable", nil, nil)
	servertest.WaitClustered(t, nodes[0].c, nodes[1].c, nodes[2].c)
	phase("with clustering off, disable and enable reached every node")

	// Users chat on every node, so each node's plugin handles stanzas.
	stopChat, chatted := chat(t, nodes)

	// Roll out a version that traps on every stanza: the first node's
	// window sees it, the rollout stops and goes back.
	mustOK(nodes[2], "POST", "/api/plugins/wordfilter/upgrade", []byte(`{"version":"3.0.0"}`), nil)
	var up struct {
		State, Error string
		Steps        []struct {
			Node, Version, State, Error string
			Calls, Failures, Traps      int
		}
	}
	servertest.CheckFor(t, 3*time.Minute, 50*time.Millisecond, func() error {
		mustOK(nodes[1], "GET", "/api/upgrade", nil, &up)
		if up.State == "running" || up.State == "rolling-back" || up.State == "idle" {
			return fmt.Errorf("upgrade %s", up.State)
		}
		return nil
	})
	if up.State != "rolled-back" || len(up.Steps) != 3 {
		t.Fatalf("rolling out a version that fails on every stanza ended %+v", up)
	}
	if s := up.Steps[0]; s.Node != "node1" || s.State != "rolled-back" || s.Version != "2.0.0" || s.Failures == 0 || s.Traps != s.Failures || !strings.Contains(s.Error, "calls failed") {
		t.Errorf("first step %+v, want rolled back after traps", s)
	}
	for _, s := range up.Steps[1:] {
		if s.State != "pending" || s.Version != "2.0.0" {
			t.Errorf("the rollout went on after an unhealthy node: %+v", s)
		}
	}
	if err := runs("2.0.0"); err != nil {
		t.Errorf("after the rollback: %v", err)
	}
	phase("a failing version rolled back: " + up.Error)

	// Enabled anyway, the failing version is disabled by every node, and
	// every node's own view says so.
	mustOK(nodes[0], "POST", "/api/plugins/wordfilter/3.0.0/enable", nil, nil)
	servertest.CheckFor(t, time.Minute, 50*time.Millisecond, func() error {
		for _, nd := range nodes {
			var ns []struct {
				Name         string
				PluginStates []struct{ Name, Version, State, Error string } `json:"plugin_states"`
			}
			mustOK(nd, "GET", "/api/nodes", nil, &ns)
			for _, n := range ns {
				if n.Name != nd.name {
					continue
				}
				if len(n.PluginStates) != 1 || n.PluginStates[0].State != "disabled" || n.PluginStates[0].Version != "3.0.0" ||
					!strings.Contains(n.PluginStates[0].Error, "failures") {
					return fmt.Errorf("%s says it runs %+v; its plugin: %+v; messages sent by each user: %v", nd.name, n.PluginStates,
						nd.adm.Plugins().LocalHealth("wordfilter"), chatted())
				}
			}
		}
		return nil
	})
	var cat []apiPluginEntry
	mustOK(nodes[2], "GET", "/api/plugins", nil, &cat)
	for _, p := range cat {
		if p.Version == "3.0.0" && (len(p.Nodes) != 3 || p.Nodes[0].State != "disabled") {
			t.Errorf("catalogue entry %+v, want three nodes that disabled it", p)
		}
	}
	stopChat()
	phase("a version failing on every node shows as disabled by each")

	// Delete: refused while enabled, then done.
	if code, msg := call(nodes[1], "DELETE", "/api/plugins/wordfilter/3.0.0", nil, nil); code != http.StatusConflict || !strings.Contains(msg, "disable it first") {
		t.Errorf("deleting the enabled version: %d %q", code, msg)
	}
	mustOK(nodes[1], "POST", "/api/plugins/wordfilter/2.0.0/enable", nil, nil)
	if err := runs("2.0.0"); err != nil {
		t.Errorf("re-enabling 2.0.0: %v", err)
	}
	mustOK(nodes[1], "DELETE", "/api/plugins/wordfilter/3.0.0", nil, nil)
	mustOK(nodes[2], "DELETE", "/api/plugins/wordfilter/1.0.0", nil, nil)
	if code, _ := call(nodes[2], "DELETE", "/api/plugins/wordfilter/1.0.0", nil, nil); code != http.StatusNotFound {
		t.Errorf("deleting a deleted version: %d", code)
	}
	mustOK(nodes[0], "GET", "/api/plugins", nil, &cat)
	if len(cat) != 1 || cat[0].Version != "2.0.0" || !cat[0].Enabled {
		t.Errorf("catalogue after deletes: %+v", cat)
	}
	phase("deleted what no node runs")

	// A restarted node runs the enabled version, and the catalogue view
	// shows it on all three.
	if err := nodes[2].n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	nodes[2] = start("node3")
	servertest.WaitClustered(t, nodes[0].c, nodes[1].c, nodes[2].c)
	if err := runs("2.0.0"); err != nil {
		t.Errorf("after a restart: %v", err)
	}
	servertest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		mustOK(nodes[0], "GET", "/api/plugins", nil, &cat)
		if len(cat) != 1 || len(cat[0].Nodes) != 3 {
			return fmt.Errorf("catalogue %+v", cat)
		}
		for _, n := range cat[0].Nodes {
			if n.State != "loaded" {
				return fmt.Errorf("%s: %s %s", n.Node, n.State, n.Error)
			}
		}
		return nil
	})
	phase("node3 restarted on 2.0.0")
}

// chat logs alice, bob and carol in on the three nodes; each sends itself
// a message every 10 ms (through its node's inbound plugins) until the
// returned stop is called. Replies are read and discarded. sent tells how
// many messages each has sent, and why one stopped.
func chat(t *testing.T, nodes []*pluginNode) (stop func(), sent func() string) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts, why := make([]int, 3), make([]string, 3)
	for i, user := range []string{"alice", "bob", "carol"} {
		c := servertest.Dial(t, nodes[i].n)
		full := c.Login(user, user+"-secret", "chat")
		conn := c.Conn
		// The client's per-read deadline is still set from the login:
		// this traffic outlives it.
		if err := conn.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_, err := io.Copy(io.Discard, conn)
			mu.Lock()
			why[i] += fmt.Sprintf(" read: %v", err)
			mu.Unlock()
		})
		wg.Go(func() {
			defer conn.Close()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				case <-time.After(10 * time.Millisecond):
				}
				if _, err := fmt.Fprintf(conn, "<message to='%s' type='chat'><body>darn %d</body></message>", full, n); err != nil {
					mu.Lock()
					why[i] += fmt.Sprintf(" write: %v", err)
					mu.Unlock()
					return
				}
				mu.Lock()
				counts[i]++
				mu.Unlock()
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	sent = func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(counts, why)
	}
	return stop, sent
}
