package plugins_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/wire"
)

// svcPlugin claims one service domain at Start and records what reaches
// it; failStart makes Start fail after the claim.
type svcPlugin struct {
	id, domain string
	failStart  bool
	host       plugins.Host
	release    func()
	got        []*wire.Element
}

func (p *svcPlugin) ID() string { return p.id }
func (p *svcPlugin) Start(ctx context.Context, h plugins.Host) error {
	p.host = h
	rel, err := h.ServeDomain(plugins.Service{Domain: p.domain, Name: "Test " + p.id, Handle: p.handle})
	if err != nil {
		return err
	}
	p.release = rel
	if p.failStart {
		return errors.New("boom")
	}
	return nil
}
func (p *svcPlugin) Stop(ctx context.Context) error { return nil }
func (p *svcPlugin) handle(ctx context.Context, el *wire.Element) error {
	if el.Name == "iq" && el.Type() == "get" {
		return wire.ErrFeatureNotImplemented
	}
	p.got = append(p.got, el)
	return nil
}

func TestServeDomain(t *testing.T) {
	h := plugintest.NewHost(t)
	a := &svcPlugin{id: "test.a", domain: "Conference.Example.com."}
	failing := &svcPlugin{id: "test.failing", domain: "upload.example.com", failStart: true}
	m := startAll(t, h, a, failing) // failing is left out

	svc, ok := m.Service("conference.example.com")
	if !ok || svc.Name != "Test test.a" {
		t.Fatalf("Service = %+v, %v", svc, ok)
	}
	if _, ok := m.Service("upload.example.com"); ok {
		t.Error("a plugin that failed to start still serves its domain")
	}
	if err := h.ToService(t, m, `<message from='u@example.com/r' to='room@conference.example.com/nick'><body>hi</body></message>`); err != nil {
		t.Fatal(err)
	}
	if len(a.got) != 1 || a.got[0].To() != "room@conference.example.com/nick" {
		t.Fatalf("service got %v", a.got)
	}

	cases := []struct{ domain, plugin, want string }{
		{"example.com", "test.b", "not a subdomain"},
		{"conference.other.org", "test.b", "not a subdomain"},
		{"evilexample.com", "test.b", "not a subdomain"},
		{"", "test.b", "not a subdomain"},
		{"conference.example.com", "test.b", "already served by test.a"},
	}
	for _, tc := range cases {
		_, err := m.ServeDomain(tc.plugin, plugins.Service{Domain: tc.domain, Handle: a.handle})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("claim %q by %s: %v, want %q", tc.domain, tc.plugin, err, tc.want)
		}
	}
	if _, err := m.ServeDomain("test.b", plugins.Service{Domain: "pubsub.example.com"}); err == nil {
		t.Error("a service without a handler was accepted")
	}

	// The same plugin claiming again (a new version) takes over; the old
	// release then leaves the new claim alone.
	var second []string
	rel2, err := m.ServeDomain("test.a", plugins.Service{Domain: "conference.example.com", Name: "v2",
		Handle: func(ctx context.Context, el *wire.Element) error { second = append(second, el.ID()); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	a.release()
	if svc, ok := m.Service("conference.example.com"); !ok || svc.Name != "v2" {
		t.Fatalf("after the old release: %+v, %v", svc, ok)
	}
	rel2()
	if _, ok := m.Service("conference.example.com"); ok {
		t.Fatal("released claim still served")
	}

	// Stop releases what a plugin still holds.
	b := &svcPlugin{id: "test.b", domain: "pubsub.example.com"}
	mb := startAll(t, h, b)
	if err := mb.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := mb.Services(); len(got) != 0 {
		t.Fatalf("after Stop: %+v", got)
	}
}

// startAll starts a manager over list on h (ServeDomain goes to it) and
// stops it at cleanup; plugins that fail to start are left out.
func startAll(t *testing.T, h *plugintest.Host, list ...plugins.Plugin) *plugins.Manager {
	t.Helper()
	m := plugins.NewManager(h, h.Log, list)
	h.UseManager(m)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m
}

// clusterPlugin registers a handler for kind "ping" that names itself.
type clusterPlugin struct {
	id string
	c  plugins.Cluster
}

func (p *clusterPlugin) ID() string { return p.id }
func (p *clusterPlugin) Start(ctx context.Context, h plugins.Host) error {
	p.c = h.Cluster()
	p.c.Handle("ping", func(ctx context.Context, from string, b []byte) ([]byte, error) {
		return []byte(p.id + "@" + p.c.NodeName() + "<" + from), nil
	})
	return nil
}
func (p *clusterPlugin) Stop(ctx context.Context) error { return nil }

// TestClusterScopedByPlugin: two plugins using the same kind on two
// nodes each reach only their own instance; CallAll answers for every
// member, and a member that is gone is reported.
func TestClusterScopedByPlugin(t *testing.T) {
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	var nodes [2][2]*clusterPlugin
	for i, name := range []string{"n1", "n2"} {
		h := plugintest.NewHost(t)
		h.Node = net.Join(name)
		nodes[i] = [2]*clusterPlugin{{id: "test.x"}, {id: "test.y"}}
		h.Start(t, nodes[i][0], nodes[i][1])
	}
	ctx := context.Background()
	for _, p := range nodes[0] {
		got, err := p.c.Call(ctx, "n2", "ping", nil)
		if err != nil || string(got) != p.id+"@n2<n1" {
			t.Errorf("%s: %q, %v", p.id, got, err)
		}
	}
	if _, err := nodes[0][0].c.Call(ctx, "n2", "pong", nil); !errors.Is(err, plugins.ErrNoHandler) {
		t.Errorf("unknown kind: %v", err)
	}
	ans := nodes[0][1].c.CallAll(ctx, "ping", nil)
	if len(ans) != 2 || string(ans[0].Payload) != "test.y@n1<n1" || string(ans[1].Payload) != "test.y@n2<n1" {
		t.Errorf("CallAll = %+v", ans)
	}
	net.Crash("n2")
	ans = nodes[0][1].c.CallAll(ctx, "ping", nil)
	if len(ans) != 2 || ans[0].Err != nil || !errors.Is(ans[1].Err, plugins.ErrNodeGone) {
		t.Errorf("CallAll with n2 gone = %+v", ans)
	}
}
