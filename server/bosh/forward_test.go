package bosh

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/wire"
)

// fakeNet joins fakeNodes: Call runs the target node's handler, as a real
// node-to-node link would, with a copy of the payload.
type fakeNet struct {
	mu    sync.Mutex
	nodes map[string]*fakeNode
	down  map[string]bool
	fail  error // when set, every call between nodes fails with it
	calls int
}

type fakeNode struct {
	cluster.Cluster // only the methods below are used
	name            string
	net             *fakeNet
	mu              sync.Mutex
	handlers        map[string]cluster.HandlerFunc
}

func (n *fakeNet) node(name string) *fakeNode {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes == nil {
		n.nodes, n.down = map[string]*fakeNode{}, map[string]bool{}
	}
	fn := &fakeNode{name: name, net: n, handlers: map[string]cluster.HandlerFunc{}}
	n.nodes[name] = fn
	return fn
}

func (n *fakeNode) NodeName() string { return n.name }

func (n *fakeNode) Handle(kind string, h cluster.HandlerFunc) {
	n.mu.Lock()
	n.handlers[kind] = h
	n.mu.Unlock()
}

func (n *fakeNode) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	n.net.mu.Lock()
	target := n.net.nodes[node]
	gone := n.net.down[node]
	fail := n.net.fail
	n.net.calls++
	n.net.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	if target == nil || gone {
		return nil, fmt.Errorf("fake: %s: %w", node, cluster.ErrNodeGone)
	}
	target.mu.Lock()
	h := target.handlers[kind]
	target.mu.Unlock()
	if h == nil {
		return nil, cluster.ErrNoHandler
	}
	// As over a real link: the handler runs on the other node, which does
	// not learn that the caller stopped waiting.
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := h(context.Background(), n.name, bytes.Clone(payload))
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (n *fakeNode) Send(ctx context.Context, node, kind string, payload []byte) error {
	_, err := n.Call(ctx, node, kind, payload)
	return err
}

func TestForwardingBetweenNodes(t *testing.T) {
	var net fakeNet
	fa, fb := newFakeStream(), newFakeStream()
	oa, ob := testOptions(fa), testOptions(fb)
	oa.Cluster, ob.Cluster = net.node("node-a"), net.node("node-b")
	ma, mb := NewManager(oa), NewManager(ob)

	c, _ := connect(t, ma, "wait='60' hold='1'")
	if owner, ok := OwnerOf(c.sid); !ok || owner != "node-a" {
		t.Fatalf("OwnerOf(%q) = %q, %v", c.sid, owner, ok)
	}
	if mb.Session(c.sid) != nil {
		t.Fatal("node b holds node a's session")
	}
	s := fa.last()

	// Requests alternate between the nodes, as a round-robin balancer sends
	// them; the ones reaching b are answered by a.
	nodes := []*Manager{mb, ma, mb, mb, ma}
	for i, m := range nodes {
		c.m = m
		r := c.post("", fmt.Sprintf(`<message xmlns='jabber:client' to='echo' id='m%d'><body>%d</body></message>`, i, i))
		if got := fa.next(t); got.ID() != fmt.Sprintf("m%d", i) {
			t.Fatalf("request %d: node a's stream got %s", i, got)
		}
		if r.Attr("type") == "terminate" {
			t.Fatalf("request %d via %p: %s", i, m, r)
		}
		if r.Child("message", "") == nil {
			// The echo was not ready yet: it comes with the next poll.
			r = c.post("", "")
		}
		if msg := r.Child("message", ""); msg == nil || msg.ID() != fmt.Sprintf("m%d", i) {
			t.Fatalf("request %d: response %s", i, r)
		}
	}

	// Long polling through node b: the request is held on a, and data that
	// a's stream sends later comes back through b.
	c.m = mb
	c.rid++
	held := c.async(c.rid, "", "")
	waitHeld(t, s, c.rid)
	s.Send(wire.New("message", "id", "pushed"))
	if r := wait(t, held); r.Child("message", "") == nil || r.Child("message", "").ID() != "pushed" {
		t.Fatalf("held forwarded request got %s", r)
	}
	// Two requests in flight on different nodes: a request through a
	// releases the one held through b (hold=1), and then carries the data.
	c.m = mb
	heldB := c.async(c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	c.m = ma
	viaA := c.async(c.rid+2, "", "<presence xmlns='jabber:client'/>")
	if r := wait(t, heldB); r.Attr("type") == "terminate" || len(r.Children) != 0 {
		t.Fatalf("request held through b: %s, want an empty answer", r)
	}
	fa.next(t)
	waitHeld(t, s, c.rid+2)
	s.Send(wire.New("message", "id", "second"))
	if r := wait(t, viaA); r.Child("message", "") == nil {
		t.Fatalf("request through a: %s", r)
	}
	c.rid += 2

	// A resend through the other node is answered from a's cache.
	c.m = ma
	if r := c.postRID(c.rid, "", ""); r.Child("message", "") == nil {
		t.Errorf("resend via a: %s", r)
	}
	if fb.sessionsLen() != 0 {
		t.Error("node b started a stream for a forwarded request")
	}

	// Node a dies: b answers item-not-found, and the client starts over.
	net.mu.Lock()
	net.down["node-a"] = true
	net.mu.Unlock()
	c.m = mb
	if r := c.post("", ""); r.Attr("type") != "terminate" || r.Attr("condition") != CondItemNotFound {
		t.Errorf("request for a dead node's session: %s", r)
	}
}

func (f *fakeStream) sessionsLen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

func TestForwardedUnknownSIDIsNotForwardedAgain(t *testing.T) {
	var net fakeNet
	fa, fb := newFakeStream(), newFakeStream()
	oa, ob := testOptions(fa), testOptions(fb)
	oa.Cluster, ob.Cluster = net.node("node-a"), net.node("node-b")
	NewManager(oa)
	mb := NewManager(ob)
	sid := base64.RawURLEncoding.EncodeToString([]byte("node-a")) + ".deadbeef"
	r := parseResp(t, mb.Handle(context.Background(), []byte(body(sid, 5, "", "")), Meta{}))
	if r.Attr("condition") != CondItemNotFound {
		t.Errorf("got %s", r)
	}
	net.mu.Lock()
	calls := net.calls
	net.mu.Unlock()
	if calls != 1 {
		t.Errorf("%d cluster calls, want 1", calls)
	}
}

func TestSingleNodeLocalCluster(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Cluster = local.New("solo")
	m := NewManager(opts)
	c, _ := connect(t, m, "wait='60' hold='1'")
	if owner, _ := OwnerOf(c.sid); owner != "solo" {
		t.Errorf("owner %q", owner)
	}
	r := c.post("", `<message xmlns='jabber:client' to='echo'/>`)
	if r.Attr("type") == "terminate" {
		t.Fatalf("got %s", r)
	}
	// A sid naming a node that is not in the cluster.
	other := base64.RawURLEncoding.EncodeToString([]byte("elsewhere")) + ".00"
	r = parseResp(t, m.Handle(context.Background(), []byte(body(other, 5, "", "")), Meta{}))
	if r.Attr("condition") != CondItemNotFound {
		t.Errorf("foreign sid on a single node: %s", r)
	}
}

func TestForwardingFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		cond string
	}{
		{"node gone", fmt.Errorf("x: %w", cluster.ErrNodeGone), CondItemNotFound},
		{"no handler", cluster.ErrNoHandler, CondItemNotFound},
		{"link broken", errors.New("link reset"), CondRemoteConnectionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var net fakeNet
			fa, fb := newFakeStream(), newFakeStream()
			oa, ob := testOptions(fa), testOptions(fb)
			oa.Cluster, ob.Cluster = net.node("node-a"), net.node("node-b")
			ma, mb := NewManager(oa), NewManager(ob)
			c, _ := connect(t, ma, "wait='6000' hold='1'")
			net.mu.Lock()
			net.fail = tc.err
			net.mu.Unlock()
			c.m = mb
			if r := c.post("", ""); r.Attr("type") != "terminate" || r.Attr("condition") != tc.cond {
				t.Errorf("got %s, want %s", r, tc.cond)
			}
		})
	}
}
