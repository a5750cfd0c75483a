package local

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/aviary-im/aviary/cluster"
)

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	c := New("n1")
	steps := []struct {
		name string
		do   func() error
		bare string
		want []cluster.Route
	}{
		{"empty", nil, "a@x", nil},
		{"put one", func() error {
			return c.PutRoute(ctx, cluster.Route{JID: "a@x/r1", Priority: 5, Available: true, Node: "forged"})
		}, "a@x", []cluster.Route{{JID: "a@x/r1", Node: "n1", Priority: 5, Available: true}}},
		{"put second", func() error {
			return c.PutRoute(ctx, cluster.Route{JID: "a@x/r0", Flags: cluster.FlagCarbons})
		}, "a@x", []cluster.Route{
			{JID: "a@x/r0", Node: "n1", Flags: cluster.FlagCarbons},
			{JID: "a@x/r1", Node: "n1", Priority: 5, Available: true},
		}},
		{"other bare untouched", func() error {
			return c.PutRoute(ctx, cluster.Route{JID: "b@x/r"})
		}, "a@x", []cluster.Route{
			{JID: "a@x/r0", Node: "n1", Flags: cluster.FlagCarbons},
			{JID: "a@x/r1", Node: "n1", Priority: 5, Available: true},
		}},
		{"update", func() error {
			return c.PutRoute(ctx, cluster.Route{JID: "a@x/r1", Priority: -1})
		}, "a@x", []cluster.Route{
			{JID: "a@x/r0", Node: "n1", Flags: cluster.FlagCarbons},
			{JID: "a@x/r1", Node: "n1", Priority: -1},
		}},
		{"delete", func() error { return c.DeleteRoute(ctx, "a@x/r0") }, "a@x",
			[]cluster.Route{{JID: "a@x/r1", Node: "n1", Priority: -1}}},
		{"delete missing", func() error { return c.DeleteRoute(ctx, "a@x/zz") }, "a@x",
			[]cluster.Route{{JID: "a@x/r1", Node: "n1", Priority: -1}}},
		{"delete last", func() error { return c.DeleteRoute(ctx, "a@x/r1") }, "a@x", nil},
		{"b still there", nil, "b@x", []cluster.Route{{JID: "b@x/r", Node: "n1"}}},
		{"stop clears", func() error { return c.Stop(ctx) }, "b@x", nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.do != nil {
				if err := s.do(); err != nil {
					t.Fatal(err)
				}
			}
			got, err := c.Routes(ctx, s.bare)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, s.want) {
				t.Fatalf("Routes(%q) = %+v, want %+v", s.bare, got, s.want)
			}
		})
	}
	if err := c.PutRoute(ctx, cluster.Route{}); err == nil {
		t.Error("PutRoute without JID succeeded")
	}
}

func TestSendCall(t *testing.T) {
	ctx := context.Background()
	c := New("n1")
	var mu sync.Mutex
	var got []string
	c.Handle("echo", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		mu.Lock()
		got = append(got, from+":"+string(p))
		mu.Unlock()
		return append([]byte("re:"), p...), nil
	})
	boom := errors.New("boom")
	c.Handle("fail", func(ctx context.Context, from string, p []byte) ([]byte, error) { return nil, boom })

	cases := []struct {
		name    string
		node    string
		kind    string
		wantErr error
		reply   string
	}{
		{"own node", "n1", "echo", nil, "re:hi"},
		{"other node", "n2", "echo", cluster.ErrNodeGone, ""},
		{"unknown kind", "n1", "nope", cluster.ErrNoHandler, ""},
		{"handler error", "n1", "fail", boom, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := c.Call(ctx, tc.node, tc.kind, []byte("hi"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Call err = %v, want %v", err, tc.wantErr)
			}
			if string(reply) != tc.reply {
				t.Fatalf("Call reply = %q, want %q", reply, tc.reply)
			}
			if err := c.Send(ctx, tc.node, tc.kind, []byte("hi")); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Send err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"n1:hi", "n1:hi"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("handler saw %q, want %q", got, want)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Send(cctx, "n1", "echo", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with cancelled ctx = %v", err)
	}
}

func TestMembers(t *testing.T) {
	ctx := context.Background()
	c := New("n1")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c.NodeName() != "n1" || c.Clustered() || !c.Senior() {
		t.Fatalf("name %q clustered %v senior %v", c.NodeName(), c.Clustered(), c.Senior())
	}
	c.UpdateSelf(func(m *cluster.Member) {
		m.Name = "evil"
		m.Sessions = 3
		m.Load = 0.5
		m.Draining = true
		m.ClientAddrs = map[string]string{"c2s": "127.0.0.1:5222"}
	})
	ms, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("members = %+v", ms)
	}
	m := ms[0]
	if m.Name != "n1" || m.Sessions != 3 || m.Load != 0.5 || !m.Draining || m.ClientAddrs["c2s"] != "127.0.0.1:5222" || m.Started.IsZero() {
		t.Fatalf("member = %+v", m)
	}
	m.ClientAddrs["c2s"] = "changed"
	ms, _ = c.Members(ctx)
	if ms[0].ClientAddrs["c2s"] != "127.0.0.1:5222" {
		t.Fatal("Members returned a shared map")
	}
	if New("").NodeName() == "" {
		t.Fatal("empty default name")
	}
}

func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	c := New("n1")
	c.Handle("k", func(ctx context.Context, from string, p []byte) ([]byte, error) { return p, nil })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				full := fmt.Sprintf("u%d@x/r%d", i%5, g)
				if err := c.PutRoute(ctx, cluster.Route{JID: full}); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Routes(ctx, cluster.BareJID(full)); err != nil {
					t.Error(err)
				}
				if _, err := c.Call(ctx, "n1", "k", []byte("x")); err != nil {
					t.Error(err)
				}
				c.UpdateSelf(func(m *cluster.Member) { m.Sessions = i })
				_, _ = c.Members(ctx)
				if i%2 == 0 {
					_ = c.DeleteRoute(ctx, full)
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for u := range 5 {
		rs, _ := c.Routes(ctx, fmt.Sprintf("u%d@x", u))
		total += len(rs)
	}
	// Per goroutine and user, the last iteration decides: an odd i keeps
	// the route, an even i deletes it.
	want := 0
	for u := range 5 {
		last := 195 + u
		if last%2 == 1 {
			want += 8
		}
	}
	if total != want {
		t.Fatalf("routes = %d, want %d", total, want)
	}
}
