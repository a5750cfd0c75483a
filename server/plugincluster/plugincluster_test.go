package plugincluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/server/plugincluster"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
)

func TestMain(m *testing.M) {
	code := m.Run()
	hztest.StopShared()
	os.Exit(code)
}

// TestAlone: on cluster/local every key is owned here, CallAll is this
// node, and kinds are the plugin's own.
func TestAlone(t *testing.T) {
	c := local.New("solo")
	n := plugincluster.New(c, time.Second, nil)
	n.Refresh()
	x, y := n.For("test.x"), n.For("test.y")
	if got := x.Members(); !slices.Equal(got, []plugins.Member{{Name: "solo"}}) {
		t.Fatalf("Members = %+v", got)
	}
	for _, k := range []string{"a", "b", "room@conference.example.org"} {
		if o := x.Owner(k); o != "solo" {
			t.Fatalf("Owner(%s) = %s", k, o)
		}
	}
	rm := x.Handle("ping", func(ctx context.Context, from string, b []byte) ([]byte, error) {
		return append([]byte("x<"+from+":"), b...), nil
	})
	ctx := context.Background()
	if got, err := x.Call(ctx, "solo", "ping", []byte("hi")); err != nil || string(got) != "x<solo:hi" {
		t.Fatalf("Call = %q, %v", got, err)
	}
	if _, err := y.Call(ctx, "solo", "ping", nil); !errors.Is(err, plugins.ErrNoHandler) {
		t.Fatalf("another plugin's kind: %v", err)
	}
	if _, err := x.Call(ctx, "elsewhere", "ping", nil); !errors.Is(err, plugins.ErrNodeGone) || !errors.Is(err, cluster.ErrNodeGone) {
		t.Fatalf("unknown node: %v", err)
	}
	if a := x.CallAll(ctx, "ping", []byte("all")); len(a) != 1 || a[0].Node != "solo" || string(a[0].Payload) != "x<solo:all" {
		t.Fatalf("CallAll = %+v", a)
	}
	plugintest.CheckCallAfterSends(t, x, x)
	rm()
	if _, err := x.Call(ctx, "solo", "ping", nil); !errors.Is(err, plugins.ErrNoHandler) {
		t.Fatalf("after remove: %v", err)
	}

	var changes []plugins.MembersChange
	var mu sync.Mutex
	x.OnMembersChange(func(ch plugins.MembersChange) {
		mu.Lock()
		changes = append(changes, ch)
		mu.Unlock()
	})
	c.UpdateSelf(func(m *cluster.Member) { m.Draining = true })
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 1 || !changes[0].After[0].Draining || changes[0].Before[0].Draining {
		t.Fatalf("changes = %+v", changes)
	}
	if o := x.Owner("a"); o != "solo" {
		t.Fatalf("a draining node alone still owns every key, got %q", o)
	}
}

// hzNode is a Hazelcast cluster member with its plugin net.
type hzNode struct {
	c   *hazelcast.Cluster
	net *plugincluster.Net
	v   plugins.Cluster

	mu    sync.Mutex
	views []string // what each OnMembersChange saw after the change
}

func (n *hzNode) saw(v string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.views, v)
}

func (n *hzNode) seen() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.views)
}

func viewOf(ms []plugins.Member) string {
	var out []string
	for _, m := range ms {
		s := m.Name
		if m.Draining {
			s += "*"
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

func startHZ(t *testing.T, m *hztest.Member, props storage.Properties, name string) *hzNode {
	t.Helper()
	cc := conf.ClusterConfig{
		Hazelcast: []string{m.Addr()}, HazelcastClusterName: m.ClusterName, NodeName: name,
		Listen: "127.0.0.1:0", Secret: "s3cret", StartupRetries: 2, StartupRetryInterval: 3 * time.Second,
		OperationTimeout: 3 * time.Second, HeartbeatInterval: 250 * time.Millisecond, NodeTTL: 3 * time.Second,
	}
	c, err := hazelcast.NewWithOptions(hazelcast.Options{Cluster: cc, Properties: props, Prefix: t.Name() + ".", SwitchPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n := &hzNode{c: c, net: plugincluster.New(c, 3*time.Second, nil)}
	n.v = n.net.For("test.plugin")
	n.v.OnMembersChange(func(ch plugins.MembersChange) {
		n.mu.Lock()
		n.views = append(n.views, viewOf(ch.After))
		n.mu.Unlock()
	})
	n.v.Handle("who", func(ctx context.Context, from string, b []byte) ([]byte, error) {
		return []byte(name + "<" + from), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	n.net.Refresh()
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return n
}

// TestOnHazelcast: the plugin view of real nodes: members and owners agree
// on every node, a join, a drain, a leave and the switch reach
// OnMembersChange with the list Owner uses, and CallAll reports a member
// that cannot answer.
func TestOnHazelcast(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Hazelcast")
	}
	m := hztest.Shared(t, "aviary-plugincluster")
	props, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "aviary.db")) // holds the switch
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { props.Close() })
	a := startHZ(t, m, props, "a")
	b := startHZ(t, m, props, "b")
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, n := range []*hzNode{a, b} {
			if got := viewOf(n.v.Members()); got != "a,b" {
				return fmt.Errorf("%s sees %s", n.v.NodeName(), got)
			}
		}
		return nil
	})
	for i := range 200 {
		k := fmt.Sprintf("room%d", i)
		if a.v.Owner(k) != b.v.Owner(k) {
			t.Fatalf("%s: a says %s, b says %s", k, a.v.Owner(k), b.v.Owner(k))
		}
	}
	ctx := context.Background()
	ans := a.v.CallAll(ctx, "who", nil)
	if len(ans) != 2 || string(ans[0].Payload) != "a<a" || string(ans[1].Payload) != "b<a" {
		t.Fatalf("CallAll = %+v", ans)
	}
	plugintest.CheckCallAfterSends(t, a.v, b.v)

	c := startHZ(t, m, props, "c")
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, n := range []*hzNode{a, b, c} {
			if !n.saw("a,b,c") {
				return fmt.Errorf("%s saw %v", n.v.NodeName(), n.seen())
			}
		}
		return nil
	})
	// A member that does not answer in time is reported, the others
	// answer.
	release := make(chan struct{})
	for _, n := range []*hzNode{a, b, c} {
		name := n.v.NodeName()
		n.v.Handle("slow", func(ctx context.Context, from string, _ []byte) ([]byte, error) {
			if name == "c" {
				<-release
			}
			return []byte(name), nil
		})
	}
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	ans = a.v.CallAll(sctx, "slow", nil)
	cancel()
	close(release)
	if len(ans) != 3 || ans[0].Err != nil || ans[1].Err != nil || !errors.Is(ans[2].Err, context.DeadlineExceeded) {
		t.Fatalf("CallAll with a silent member = %+v", ans)
	}

	c.c.UpdateSelf(func(m *cluster.Member) { m.Draining = true })
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, n := range []*hzNode{a, b, c} {
			if !n.saw("a,b,c*") {
				return fmt.Errorf("%s saw %v", n.v.NodeName(), n.seen())
			}
			for i := range 100 {
				if o := n.v.Owner(fmt.Sprintf("room%d", i)); o == "c" {
					return fmt.Errorf("%s: draining c owns room%d", n.v.NodeName(), i)
				}
			}
		}
		return nil
	})

	// The switch off: each node alone, every key its own.
	_ = cluster.WriteSwitch(ctx, props, false)
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, n := range []*hzNode{a, b} {
			if got := viewOf(n.v.Members()); got != n.v.NodeName() {
				return fmt.Errorf("%s sees %s with the switch off", n.v.NodeName(), got)
			}
			if o := n.v.Owner("room1"); o != n.v.NodeName() {
				return fmt.Errorf("%s: room1 owned by %s with the switch off", n.v.NodeName(), o)
			}
		}
		return nil
	})
	_ = cluster.WriteSwitch(ctx, props, true)
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if got := viewOf(a.v.Members()); got != "a,b,c*" {
			return fmt.Errorf("a sees %s after the switch came back", got)
		}
		return nil
	})

	// b stops: the others see it leave; a call to it fails as gone.
	if err := b.c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !a.saw("a,c*") {
			return fmt.Errorf("a saw %v", a.seen())
		}
		return nil
	})
	if _, err := a.v.Call(ctx, "b", "who", nil); !errors.Is(err, plugins.ErrNodeGone) {
		t.Fatalf("call to a node that left: %v", err)
	}
}
