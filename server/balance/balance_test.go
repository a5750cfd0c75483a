package balance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/balance"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

type testNode struct {
	name    string
	n       *server.Node
	bal     *balance.Service
	web     *httpd.Service
	drained chan balance.Report
}

func (tn *testNode) c2s() string    { return tn.n.Addr(server.ListenerC2S).String() }
func (tn *testNode) c2sTLS() string { return tn.n.Addr(server.ListenerC2STLS).String() }
func (tn *testNode) http() string   { return tn.web.Addr(httpd.ListenerHTTP).String() }

// sharedStore opens one embedded store that every node of a test uses, as
// the nodes of a cluster share PostgreSQL.
func sharedStore(t *testing.T) storage.Store {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	st, err := server.OpenStore(context.Background(), cfg, servertest.TestLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func startNode(t *testing.T, h *hub, st storage.Store, name string, mod func(*conf.Config)) *testNode {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	cfg.Cluster.NodeName = name
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Balance.PublishInterval = 20 * time.Millisecond
	cfg.Balance.DrainNotice = 0 // no load balancer to wait for
	if mod != nil {
		mod(cfg)
	}
	tn := &testNode{name: name, web: httpd.NewService(), drained: make(chan balance.Report, 1)}
	tn.bal = balance.NewService(tn.web, func(r balance.Report) { tn.drained <- r })
	tn.bal.SweepInterval = 20 * time.Millisecond
	tn.n = servertest.RunServer(t, cfg, server.WithCluster(h.node(name)), server.WithStore(st),
		server.WithService(tn.web), server.WithService(tn.bal))
	return tn
}

// openStream opens a stream to addr and returns what follows the server's
// header: the features, or the stream error.
func openStream(t *testing.T, addr string, tlsNow bool) *wire.Element {
	t.Helper()
	c := servertest.DialRaw(t, addr, "localhost", tlsNow)
	defer c.Conn.Close()
	c.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
	if _, err := c.ReadHeaderOnly(); err != nil {
		t.Fatalf("reading the header from %s: %v", addr, err)
	}
	return c.MustNext()
}

// redirectedTo returns the see-other-host of a stream error, or why not.
func redirectedTo(el *wire.Element) (string, error) {
	if el.Name != "stream:error" {
		return "", fmt.Errorf("got %s, want a stream error", el)
	}
	soh := el.Child("see-other-host", wire.NSStreams)
	if soh == nil {
		return "", fmt.Errorf("got %s, want see-other-host", el)
	}
	return strings.TrimSpace(soh.AllText()), nil
}

func expectRedirect(t *testing.T, addr string, tlsNow bool, want string) {
	t.Helper()
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		got, err := redirectedTo(openStream(t, addr, tlsNow))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("redirected to %s, want %s", got, want)
		}
		return nil
	})
}

func expectRefusal(t *testing.T, addr, cond string) {
	t.Helper()
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		el := openStream(t, addr, false)
		if el.Name != "stream:error" || el.Child(cond, wire.NSStreams) == nil {
			return fmt.Errorf("got %s, want stream error %s", el, cond)
		}
		return nil
	})
}

func dispatch(t *testing.T, httpAddr, transport string) (int, balance.DispatchAnswer, http.Header) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + balance.PathDispatch + "?transport=" + transport)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a balance.DispatchAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, a, resp.Header
}

func TestPublishesLoadAndAddresses(t *testing.T) {
	h := newHub()
	a := startNode(t, h, sharedStore(t), "node-a", func(c *conf.Config) { c.C2S.MaxSessions = 4 })
	c := servertest.Dial(t, a.n)
	defer c.Close()
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ms, _ := h.node("x").Members(context.Background())
		for _, m := range ms {
			if m.Name != "node-a" {
				continue
			}
			if m.Sessions != 1 || m.Load != 0.25 || m.Draining {
				return fmt.Errorf("published sessions %d load %v draining %v, want 1, 0.25, false", m.Sessions, m.Load, m.Draining)
			}
			want := map[string]string{"c2s": a.c2s(), "c2s_tls": a.c2sTLS(), "http": a.http()}
			for k, v := range want {
				if m.ClientAddrs[k] != v {
					return fmt.Errorf("addrs %v, want %v", m.ClientAddrs, want)
				}
			}
			return nil
		}
		return fmt.Errorf("node-a not in %v", ms)
	})
}

func TestPublicAddressesFromConfig(t *testing.T) {
	h := newHub()
	startNode(t, h, sharedStore(t), "node-a", func(c *conf.Config) {
		c.Balance.C2SAddress = "xmpp-a.example.com:5222"
		c.Balance.HTTPSAddress = "xmpp-a.example.com:443"
	})
	b := startNode(t, h, sharedStore(t), "node-b", nil)
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		code, ans, _ := dispatch(t, b.http(), "websocket")
		// node-b is idle too; ask until the weighted choice names node-a.
		if code != 200 || ans.Node != "node-a" {
			return fmt.Errorf("got %d %+v", code, ans)
		}
		if ans.URL != "wss://xmpp-a.example.com:443/xmpp-websocket" {
			return fmt.Errorf("url %q", ans.URL)
		}
		return nil
	})
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		code, ans, _ := dispatch(t, b.http(), "c2s")
		if code != 200 || ans.Node != "node-a" {
			return fmt.Errorf("got %d %+v", code, ans)
		}
		if ans.Host != "xmpp-a.example.com" || ans.Port != 5222 {
			return fmt.Errorf("answer %+v", ans)
		}
		return nil
	})
}

func TestSessionLimit(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", func(c *conf.Config) { c.C2S.MaxSessions = 1 })
	b := startNode(t, h, st, "node-b", nil)

	first := servertest.Dial(t, a.n) // served: features came
	defer first.Close()
	if first.Features == nil {
		t.Fatal("first stream not served")
	}
	t.Run("full node redirects to the other", func(t *testing.T) {
		expectRedirect(t, a.c2s(), false, b.c2s())
		expectRedirect(t, a.c2sTLS(), true, b.c2sTLS())
	})
	t.Run("dispatcher avoids the full node", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			code, ans, _ := dispatch(t, a.http(), "c2s")
			if code != 200 || ans.Node != "node-b" || fmt.Sprintf("%s:%d", ans.Host, ans.Port) != b.c2s() {
				t.Fatalf("got %d %+v, want node-b at %s", code, ans, b.c2s())
			}
		}
	})
	t.Run("nowhere to go is resource-constraint", func(t *testing.T) {
		if err := b.bal.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, a.c2s(), "resource-constraint")
	})
	t.Run("dispatcher says 503 with Retry-After", func(t *testing.T) {
		servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			code, _, hdr := dispatch(t, a.http(), "c2s")
			if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "30" {
				return fmt.Errorf("got %d Retry-After %q, want 503 and 30", code, hdr.Get("Retry-After"))
			}
			return nil
		})
	})
	t.Run("session that was served still works", func(t *testing.T) {
		if first.Features.Child("starttls", wire.NSTLS) == nil {
			t.Fatalf("features %s", first.Features)
		}
	})
}

func TestDispatcherNodeStates(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", nil)
	b := startNode(t, h, st, "node-b", nil)
	fake := func(name string, load float64, draining bool, seen time.Time) cluster.Member {
		return cluster.Member{Name: name, Load: load, Draining: draining, Seen: seen,
			ClientAddrs: map[string]string{"c2s": name + ".example:5222", "http": name + ".example:80"}}
	}
	chosen := func(t *testing.T, transport string, n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			code, ans, hdr := dispatch(t, a.http(), transport)
			if code != 200 {
				got[fmt.Sprintf("%d/%s", code, hdr.Get("Retry-After"))]++
				continue
			}
			got[ans.Node]++
		}
		return got
	}
	cases := []struct {
		name  string
		setup func()
		// allowed answers ("503/30" for overload); each must be seen and
		// nothing else.
		want []string
	}{
		{"all healthy", func() {
			h.setMember(fake("node-c", 0.1, false, time.Now().Add(time.Hour)), true)
		}, []string{"node-a", "node-b", "node-c"}},
		{"one draining", func() {
			h.setMember(fake("node-c", 0.1, true, time.Now().Add(time.Hour)), true)
		}, []string{"node-a", "node-b"}},
		{"one dead", func() {
			h.setMember(fake("node-c", 0.1, false, time.Now().Add(-time.Hour)), true)
		}, []string{"node-a", "node-b"}},
		{"one overloaded", func() {
			h.removeMember("node-c")
			m, _ := memberOf(h, "node-b")
			m.Load = 0.95
			h.setMember(m, true)
		}, []string{"node-a"}},
		{"all overloaded", func() {
			a.bal.Drain(context.Background())
		}, []string{"503/30"}},
	}
	_ = b
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			servertest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
				got := chosen(t, "c2s", 60)
				for _, w := range tc.want {
					if got[w] == 0 {
						return fmt.Errorf("%s never answered: %v", w, got)
					}
					delete(got, w)
				}
				if len(got) > 0 {
					return fmt.Errorf("unexpected answers %v", got)
				}
				return nil
			})
		})
	}
	t.Run("unknown transport", func(t *testing.T) {
		if code, _, _ := dispatch(t, a.http(), "carrier-pigeon"); code != http.StatusBadRequest {
			t.Errorf("status %d, want 400", code)
		}
	})
	t.Run("health says draining", func(t *testing.T) {
		resp, err := http.Get("http://" + a.http() + balance.PathHealth)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("health %d on a draining node, want 503", resp.StatusCode)
		}
		resp, err = http.Get("http://" + b.http() + balance.PathHealth)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("health %d on a healthy node, want 200", resp.StatusCode)
		}
	})
}

func memberOf(h *hub, name string) (cluster.Member, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.members[name]
	return copyMember(m), ok
}
