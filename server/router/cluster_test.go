package router

import (
	"context"
	"errors"
	"fmt"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins/last"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// fakeNet joins fake cluster nodes in one process: a shared routing table
// and synchronous node-to-node calls into the other node's handlers.
type fakeNet struct {
	mu     sync.Mutex
	nodes  map[string]*fakeNode
	routes map[string]cluster.Route // full JID → route
	sends  int
	// deferReports keeps SendNotify's reports (the link's acknowledgement)
	// until reports is called, instead of giving them at once.
	deferReports bool
	pending      []func()
}

// reports gives the SendNotify reports deferReports kept.
func (n *fakeNet) reports() {
	n.mu.Lock()
	p := n.pending
	n.pending = nil
	n.mu.Unlock()
	for _, f := range p {
		f()
	}
}

type fakeNode struct {
	net  *fakeNet
	name string

	// guarded by net.mu
	handlers    map[string]cluster.HandlerFunc
	member      cluster.Member
	down        bool
	senior      bool
	onDown      []func(string, []cluster.Route)
	onClustered []func(bool)
	onUndeliv   []func(node, kind string, payload []byte)
}

func (c *fakeNode) OnUndelivered(fn func(node, kind string, payload []byte)) {
	c.net.mu.Lock()
	c.onUndeliv = append(c.onUndeliv, fn)
	c.net.mu.Unlock()
}

var (
	_ cluster.Cluster  = (*fakeNode)(nil)
	_ cluster.Notifier = (*fakeNode)(nil)
)

func newFakeNet(names ...string) *fakeNet {
	n := &fakeNet{nodes: map[string]*fakeNode{}, routes: map[string]cluster.Route{}}
	for i, name := range names {
		n.nodes[name] = &fakeNode{net: n, name: name, handlers: map[string]cluster.HandlerFunc{}, senior: i == 0, member: cluster.Member{Name: name}}
	}
	return n
}

// kill makes a node vanish without a goodbye: its routes are removed and
// the survivors' node-down callbacks run.
func (n *fakeNet) kill(name string) { n.killUnnoticed(name)() }

// killUnnoticed kills a node and returns what makes the others find it
// dead (cluster.node_ttl later, in a real cluster).
func (n *fakeNet) killUnnoticed(name string) (found func()) {
	n.mu.Lock()
	dead := n.nodes[name]
	dead.down = true
	var routes []cluster.Route
	for k, rt := range n.routes {
		if rt.Node == name {
			routes = append(routes, rt)
			delete(n.routes, k)
		}
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].JID < routes[j].JID })
	var fns []func(string, []cluster.Route)
	for _, node := range n.nodes {
		if !node.down {
			fns = append(fns, node.onDown...)
		}
	}
	n.mu.Unlock()
	return func() {
		for _, fn := range fns {
			fn(name, routes)
		}
	}
}

// deliversSynchronously: a Send has run its handler when it returns.
func (c *fakeNode) deliversSynchronously() {}

func (c *fakeNode) NodeName() string                { return c.name }
func (c *fakeNode) Start(ctx context.Context) error { return nil }
func (c *fakeNode) Stop(ctx context.Context) error  { return nil }
func (c *fakeNode) Clustered() bool                 { return true }

func (c *fakeNode) PutRoute(ctx context.Context, r cluster.Route) error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if c.down {
		return cluster.ErrNodeGone
	}
	r.Node = c.name
	c.net.routes[r.JID] = r
	return nil
}

// DeleteRoute removes a route only if this node owns it, like the real
// implementations: a node never deletes another node's entry.
func (c *fakeNode) DeleteRoute(ctx context.Context, full string) error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if rt, ok := c.net.routes[full]; ok && rt.Node == c.name {
		delete(c.net.routes, full)
	}
	return nil
}

func (c *fakeNode) Routes(ctx context.Context, bare string) ([]cluster.Route, error) {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	var out []cluster.Route
	for _, rt := range c.net.routes {
		if cluster.BareJID(rt.JID) == bare {
			out = append(out, rt)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out, nil
}

func (c *fakeNode) Send(ctx context.Context, node, kind string, payload []byte) error {
	_, err := c.Call(ctx, node, kind, payload)
	return err
}

func (c *fakeNode) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	c.net.mu.Lock()
	c.net.sends++
	target := c.net.nodes[node]
	if target == nil || target.down {
		c.net.mu.Unlock()
		return nil, fmt.Errorf("fake: %s: %w", node, cluster.ErrNodeGone)
	}
	h := target.handlers[kind]
	c.net.mu.Unlock()
	if h == nil {
		return nil, cluster.ErrNoHandler
	}
	return h(ctx, c.name, payload)
}

func (c *fakeNode) Handle(kind string, h cluster.HandlerFunc) {
	c.net.mu.Lock()
	c.handlers[kind] = h
	c.net.mu.Unlock()
}

// SendNotify runs the handler like Send and reports at once (or when
// fakeNet.reports runs, with deferReports).
func (c *fakeNode) SendNotify(ctx context.Context, node, kind string, payload []byte, done func(bool)) error {
	if _, err := c.Call(ctx, node, kind, payload); err != nil {
		return err
	}
	c.net.mu.Lock()
	if c.net.deferReports {
		c.net.pending = append(c.net.pending, func() { done(true) })
		c.net.mu.Unlock()
		return nil
	}
	c.net.mu.Unlock()
	done(true)
	return nil
}

// Members lists the live nodes with what they published (UpdateSelf).
func (c *fakeNode) Members(ctx context.Context) ([]cluster.Member, error) {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	var out []cluster.Member
	for _, n := range c.net.nodes {
		if !n.down {
			out = append(out, n.member)
		}
	}
	return out, nil
}
func (c *fakeNode) Senior() bool {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	return c.senior
}
func (c *fakeNode) UpdateSelf(fn func(m *cluster.Member)) {
	c.net.mu.Lock()
	fn(&c.member)
	c.net.mu.Unlock()
}
func (c *fakeNode) OnNodeDown(fn func(node string, routes []cluster.Route)) {
	c.net.mu.Lock()
	c.onDown = append(c.onDown, fn)
	c.net.mu.Unlock()
}
func (c *fakeNode) OnMembersChange(fn func())            {}
func (c *fakeNode) LinkStats() (cluster.LinkStats, bool) { return cluster.LinkStats{}, false }
func (c *fakeNode) OnClusteredChange(fn func(clustered bool)) {
	c.net.mu.Lock()
	c.onClustered = append(c.onClustered, fn)
	c.net.mu.Unlock()
}

// twoNodes returns two routers on one shared store, joined by a fakeNet.
func twoNodes(t *testing.T) (*env, *env, *fakeNet) {
	t.Helper()
	st := openStore(t)
	n := newFakeNet("node1", "node2")
	e1 := newEnvWith(t, st, n.nodes["node1"])
	e2 := newEnvWith(t, st, n.nodes["node2"])
	e1.user("alice", "bob", "juliet", "romeo")
	return e1, e2, n
}

func TestClusterMessages(t *testing.T) {
	e1, e2, net := twoNodes(t)
	alice := e1.online("alice", "a", 0)
	bob := e2.online("bob", "b", 0)

	e1.send(alice, `<message to='bob@example.com' type='chat' id='m1'><body>hi</body></message>`)
	got := bob.take()
	wantSigs(t, "bob", got, "message chat alice@example.com/a→bob@example.com")
	if got[0].ChildText("body", "") != "hi" {
		t.Fatalf("body lost: %s", got[0])
	}
	e2.send(bob, `<message to='alice@example.com/a' type='chat' id='m2'><body>yo</body></message>`)
	wantSigs(t, "alice", alice.take(), "message chat bob@example.com/b→alice@example.com/a")

	// Highest priority across nodes.
	b2 := e1.online("bob", "b2", 7)
	wantSigs(t, "bob sees b2 come online", bob.take(), "presence bob@example.com/b2→bob@example.com")
	e1.send(alice, `<message to='bob@example.com' type='chat' id='m3'/>`)
	wantSigs(t, "bob on node2 (lower priority)", bob.take())
	wantSigs(t, "bob on node1", only("message", b2.take()), "message chat alice@example.com/a→bob@example.com")

	// IQ to a resource on the other node, and the answer back.
	e1.send(alice, `<iq type='get' id='q' to='bob@example.com/b'><query xmlns='jabber:iq:version'/></iq>`)
	wantSigs(t, "bob", bob.take(), "iq get alice@example.com/a→bob@example.com/b")
	e2.send(bob, `<iq type='result' id='q' to='alice@example.com/a'/>`)
	wantSigs(t, "alice", alice.take(), "iq result bob@example.com/b→alice@example.com/a")
	// Custody's notices leave on a timer of their own: read under the lock.
	net.mu.Lock()
	sends := net.sends
	net.mu.Unlock()
	if sends == 0 {
		t.Fatal("nothing crossed the cluster link")
	}
}

func TestClusterPresenceAndRoster(t *testing.T) {
	e1, e2, _ := twoNodes(t)
	alice := e1.online("alice", "a", 0)
	bob := e2.online("bob", "b", 0)
	bob2 := e1.online("bob", "b2", 0) // bob on both nodes
	bob.take()

	e1.send(alice, `<presence type='subscribe' to='bob@example.com'/>`)
	wantSigs(t, "bob node2", only("presence", bob.take()), "presence subscribe alice@example.com→bob@example.com")
	wantSigs(t, "bob node1", only("presence", bob2.take()), "presence subscribe alice@example.com→bob@example.com")

	// Bob approves from node2: alice gets subscribed and the presence of
	// both of bob's resources (the node1 one answered by node1).
	e2.send(bob, `<presence type='subscribed' to='alice@example.com'/>`)
	wantSet(t, "alice", only("presence", alice.take()),
		"presence subscribed bob@example.com→alice@example.com",
		"presence bob@example.com/b→alice@example.com",
		"presence bob@example.com/b2→alice@example.com")
	// The roster push reached bob's interested resources on both nodes.
	if p := pushItems(bob.take()); len(p) != 1 || p[0].Attr("subscription") != "from" {
		t.Fatalf("node2 push %v", p)
	}
	if p := pushItems(bob2.take()); len(p) != 1 || p[0].Attr("subscription") != "from" {
		t.Fatalf("node1 push %v", p)
	}

	// A second alice resource logs in on node2: its probe to bob is
	// answered by each of bob's nodes, and node1 sends alice/a's presence.
	a2 := e2.bind("alice", "a2")
	e2.send(a2, `<presence/>`)
	wantSet(t, "alice/a2", only("presence", a2.take()),
		"presence alice@example.com/a2→alice@example.com",
		"presence alice@example.com/a→alice@example.com/a2",
		"presence bob@example.com/b→alice@example.com/a2",
		"presence bob@example.com/b2→alice@example.com/a2")
	wantSigs(t, "alice/a (own resource on node1)", alice.take(), "presence alice@example.com/a2→alice@example.com")

	// Bob goes away on node2: alice's resources on both nodes see it.
	e2.r.Unbind(context.Background(), bob, nil)
	wantSigs(t, "alice/a", alice.take(), "presence unavailable bob@example.com/b→alice@example.com")
	wantSigs(t, "alice/a2", a2.take(), "presence unavailable bob@example.com/b→alice@example.com")
}

func TestClusterCarbons(t *testing.T) {
	e1, e2, _ := twoNodes(t)
	romeo := e1.online("romeo", "r", 0)
	ja := e1.online("juliet", "a", 5)
	jb := e2.online("juliet", "b", 0)
	if err := e2.r.SetCarbons(context.Background(), "juliet@example.com/b", true); err != nil {
		t.Fatal(err)
	}
	if err := e1.r.SetCarbons(context.Background(), "juliet@example.com/b", true); err == nil {
		t.Fatal("SetCarbons on the wrong node succeeded")
	}
	ja.take()
	jb.take()
	e1.send(romeo, `<message to='juliet@example.com' type='chat' id='c'><body>x</body></message>`)
	wantSigs(t, "juliet/a", ja.take(), "message chat romeo@example.com/r→juliet@example.com")
	got := jb.take()
	if len(got) != 1 {
		t.Fatalf("juliet/b got %q", sigs(got))
	}
	if kind, _ := carbonOf(t, got[0]); kind != "received" {
		t.Fatalf("juliet/b got %s", got[0])
	}
	e1.send(ja, `<message to='romeo@example.com' type='chat' id='d'><body>y</body></message>`)
	got = jb.take()
	if len(got) != 1 {
		t.Fatalf("juliet/b got %q", sigs(got))
	}
	if kind, _ := carbonOf(t, got[0]); kind != "sent" {
		t.Fatalf("juliet/b got %s", got[0])
	}
}

func TestClusterKickOld(t *testing.T) {
	e1, e2, net := twoNodes(t)
	old := e1.online("juliet", "balcony", 0)
	s := e2.bind("juliet", "balcony")
	if closed, cond := old.isClosed(); !closed || cond != "conflict" {
		t.Fatalf("old session closed=%v %q", closed, cond)
	}
	routes, _ := net.nodes["node1"].Routes(context.Background(), "juliet@example.com")
	if len(routes) != 1 || routes[0].Node != "node2" {
		t.Fatalf("routes %+v, want the new session on node2", routes)
	}
	e1.r.Unbind(context.Background(), old, nil) // late: must not touch node2's route
	routes, _ = net.nodes["node1"].Routes(context.Background(), "juliet@example.com")
	if len(routes) != 1 {
		t.Fatalf("routes %+v after the old session's Unbind", routes)
	}
	e1.route(`<message from='x@remote.net' to='juliet@example.com/balcony' id='k'/>`)
	if len(s.take()) != 1 {
		t.Fatal("message did not reach the new session")
	}
}

func TestClusterKickUser(t *testing.T) {
	e1, e2, _ := twoNodes(t)
	a := e1.online("juliet", "a", 0)
	b := e2.online("juliet", "b", 0)
	if n := e1.r.Kick(context.Background(), "juliet@example.com", "deleted"); n != 2 {
		t.Fatalf("Kick = %d", n)
	}
	for _, s := range []*fakeSession{a, b} {
		if closed, _ := s.isClosed(); !closed {
			t.Fatal("not closed")
		}
	}
}

func TestClusterNodeDown(t *testing.T) {
	e1, e2, net := twoNodes(t)
	e1.setItem("alice@example.com", "bob@example.com", stB, true)
	e1.setItem("bob@example.com", "alice@example.com", stB, true)
	alice := e1.online("alice", "a", 0)
	bob := e2.online("bob", "b", 0)
	e2.online("bob", "b3", 0)
	alice.take()
	bob.take()

	net.kill("node2")

	wantSet(t, "alice", alice.take(),
		"presence unavailable bob@example.com/b→alice@example.com",
		"presence unavailable bob@example.com/b3→alice@example.com")
	if res, _ := e1.r.Resources(context.Background(), "bob@example.com"); len(res) != 0 {
		t.Fatalf("bob still has %v", res)
	}
	if at, _, err := last.Load(context.Background(), e1.store, "bob@example.com"); err != nil || !at.Equal(e1.now) {
		t.Fatalf("last activity %v %v", at, err)
	}
	e1.send(alice, `<message to='bob@example.com' type='chat' id='after'><body>x</body></message>`)
	if n, _ := e1.store.CountOffline(context.Background(), "bob@example.com"); n != 1 {
		t.Fatalf("%d offline, want the message stored", n)
	}
	if back := alice.take(); len(back) != 0 {
		t.Fatalf("alice got %q", sigs(back))
	}
}

// TestClusterNodeGoneFallback: a stale route to a node that died before
// the table was cleaned: messages go offline, IQs bounce, presence drops.
func TestClusterNodeGoneFallback(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, stanza string
		offline      int
		back         string
	}{
		{"message", `<message to='bob@example.com' type='chat' id='s'><body>x</body></message>`, 1, ""},
		{"message full", `<message to='bob@example.com/b' id='s'><body>x</body></message>`, 1, ""},
		{"iq", `<iq to='bob@example.com/b' type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>`, 0, "service-unavailable"},
		{"presence", `<presence to='bob@example.com/b'/>`, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e1, e2, net := twoNodes(t)
			alice := e1.online("alice", "a", 0)
			e2.online("bob", "b", 0)
			net.mu.Lock()
			net.nodes["node2"].down = true // dead, routes not yet removed
			net.mu.Unlock()
			e1.send(alice, tc.stanza)
			if n, _ := e1.store.CountOffline(context.Background(), "bob@example.com"); n != tc.offline {
				t.Fatalf("%d offline, want %d", n, tc.offline)
			}
			back := alice.take()
			if tc.back == "" && len(back) != 0 || tc.back != "" && (len(back) != 1 || errCond(back[0]) != tc.back) {
				t.Fatalf("alice got %q, want %q", sigs(back), tc.back)
			}
		})
	}
}

// TestClusterSessionGoneOnArrival: the route still names node2 but the
// session is gone there; node2 falls back itself.
func TestClusterSessionGoneOnArrival(t *testing.T) {
	e1, _, net := twoNodes(t)
	alice := e1.online("alice", "a", 0)
	net.nodes["node2"].PutRoute(context.Background(), cluster.Route{JID: "bob@example.com/ghost", Available: true})
	e1.send(alice, `<message to='bob@example.com' type='chat' id='g'><body>x</body></message>`)
	if n, _ := e1.store.CountOffline(context.Background(), "bob@example.com"); n != 1 {
		t.Fatalf("%d offline, want 1", n)
	}
	e1.send(alice, `<iq to='bob@example.com/ghost' type='set' id='g2'><x xmlns='urn:x'/></iq>`)
	if back := alice.take(); len(back) != 1 || errCond(back[0]) != "service-unavailable" {
		t.Fatalf("alice got %q", sigs(back))
	}
}

func TestClusterRepublish(t *testing.T) {
	e1, e2, net := twoNodes(t)
	e1.setItem("alice@example.com", "bob@example.com", stB, true)
	e1.setItem("bob@example.com", "alice@example.com", stB, true)
	alice := e1.online("alice", "a", 4)
	bob := e2.online("bob", "b", 0)
	alice.take()
	bob.take()
	net.mu.Lock()
	for k, rt := range net.routes { // node1's entries were lost while it was apart
		if rt.Node == "node1" {
			delete(net.routes, k)
		}
	}
	fns := net.nodes["node1"].onClustered
	net.mu.Unlock()
	for _, fn := range fns {
		fn(true)
	}
	routes, _ := net.nodes["node2"].Routes(context.Background(), "alice@example.com")
	if len(routes) != 1 || routes[0].Priority != 4 || !routes[0].Available || routes[0].Flags&cluster.FlagRoster == 0 {
		t.Fatalf("routes after republish %+v", routes)
	}
	// Presence is replayed both ways: alice's to bob, bob's (answering
	// alice's probe) to alice.
	wantSigs(t, "bob", bob.take(), "presence alice@example.com/a→bob@example.com")
	wantSigs(t, "alice", alice.take(), "presence bob@example.com/b→alice@example.com/a")
}

// TestClusterRejoinDeliversOffline: while the node was apart, another
// node found no route to alice and stored a message for her. When the
// node rejoins, alice (still online, priority 0) gets it at once, with a
// delay stamp, without logging in again; juliet (priority -1, RFC 6121
// §8.5.2.1.1: takes no offline messages) keeps hers.
func TestClusterRejoinDeliversOffline(t *testing.T) {
	e1, _, net := twoNodes(t)
	ctx := context.Background()
	// alice becomes available with priority -1 and then raises it: unlike
	// initial presence with priority >= 0, that schedules no second look
	// at her queue 2s later, which would also deliver what is stored below.
	alice := e1.online("alice", "a", -1)
	e1.send(alice, `<presence><priority>0</priority></presence>`)
	juliet := e1.online("juliet", "j", -1)
	alice.take()
	juliet.take()
	for _, to := range []string{"alice@example.com", "juliet@example.com"} {
		msg := mustParse(t, `<message from='bob@example.com/b' to='`+to+`' type='chat'><body>stored while apart</body></message>`)
		if err := e1.store.StoreOffline(ctx, to, msg.Bytes(), storage.OfflineQuota{}); err != nil {
			t.Fatal(err)
		}
	}
	net.mu.Lock()
	fns := net.nodes["node1"].onClustered
	net.mu.Unlock()
	for _, fn := range fns {
		fn(true)
	}
	// The hand-over is paced by the session (usually done at once).
	var got []*wire.Element
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		got = append(got, only("message", alice.take())...)
		if len(got) == 0 {
			return errors.New("alice got nothing")
		}
		return nil
	})
	if len(got) != 1 || got[0].ChildText("body", "") != "stored while apart" || got[0].Child("delay", wire.NSDelay) == nil {
		t.Fatalf("alice got %q; want the stored message with a delay stamp", sigs(got))
	}
	if n, err := e1.store.CountOffline(ctx, "juliet@example.com"); err != nil || n != 1 {
		t.Errorf("juliet's queue: %d, %v; want her message kept", n, err)
	}
	if got := only("message", juliet.take()); len(got) != 0 {
		t.Errorf("juliet (priority -1) got %q", sigs(got))
	}
}

func TestClusterUndelivered(t *testing.T) {
	e1, e2, net := twoNodes(t)
	alice := e1.online("alice", "a", 0)
	e2.online("bob", "b", 0)
	net.mu.Lock()
	fns := net.nodes["node1"].onUndeliv
	net.nodes["node2"].down = true // died with the stanzas in flight
	net.mu.Unlock()
	if len(fns) == 0 {
		t.Fatal("router did not register OnUndelivered")
	}
	for _, fn := range fns {
		fn("node2", KindStanza, []byte("bob@example.com/b\n<message from='alice@example.com/a' to='bob@example.com' type='chat' id='u'><body>x</body></message>"))
		fn("node2", KindStanza, []byte("bob@example.com/b\n<iq from='alice@example.com/a' to='bob@example.com/b' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>"))
		fn("node2", KindKick, []byte("{}"))
	}
	if n, _ := e1.store.CountOffline(context.Background(), "bob@example.com"); n != 1 {
		t.Fatalf("%d offline, want the message stored", n)
	}
	if back := alice.take(); len(back) != 1 || errCond(back[0]) != "service-unavailable" {
		t.Fatalf("alice got %q", sigs(back))
	}
}

func TestHandleStanzaMalformed(t *testing.T) {
	e1, _, _ := twoNodes(t)
	for _, p := range []string{"", "no newline", "a@b/c\n", "a@b/c\n<message", "a@b/c\n<foo/>", "a@b/c\n\x01\x07message", "a@b/c\n\x02"} {
		if _, err := e1.r.handleStanza(context.Background(), "node2", []byte(p)); err == nil {
			t.Fatalf("payload %q accepted", p)
		}
	}
	// XML is accepted too.
	alice := e1.online("alice", "a", 0)
	if _, err := e1.r.handleStanza(context.Background(), "node2", []byte("alice@example.com/a\n<message from='bob@example.com/b' to='alice@example.com/a' id='x'/>")); err != nil {
		t.Fatal(err)
	}
	wantSigs(t, "alice", alice.take(), "message bob@example.com/b→alice@example.com/a")
}

// TestStoppingNodeHandsBack: once a stopping node hands back (its
// sessions gone, its plugins about to stop), a message another node
// forwards to it is not handled there: the sending node falls back with
// its own plugins, here offline storage. (This test keeps juliet's
// session on the stopping node, which a real stop has closed by then, so
// the offline copy is then handed to it by its backlog pump: it arrives
// once, delay-stamped, never as the forwarded copy.)
func TestStoppingNodeHandsBack(t *testing.T) {
	e1, e2, _ := twoNodes(t)
	alice := e1.online("alice", "a", 0)
	juliet := e2.online("juliet", "balcony", 0)
	juliet.take()
	alice.take()
	e2.r.HandBack(context.Background(), true)
	e1.send(alice, `<message to='juliet@example.com/balcony' type='chat' id='m1'><body>during the stop</body></message>`)
	var got []*wire.Element
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		got = append(got, only("message", juliet.take())...)
		if len(got) == 0 {
			return fmt.Errorf("juliet got nothing yet (%d stored offline)", e1.offlineCount("juliet@example.com"))
		}
		return nil
	})
	if len(got) != 1 || got[0].Attr("id") != "m1" || !hasDelay(got[0], domain) {
		t.Fatalf("juliet got %v, want m1 once, from offline storage (delay-stamped)", got)
	}
	if got := only("message", alice.take()); len(got) != 0 {
		t.Fatalf("alice got %s", got[0])
	}
	e2.r.HandBack(context.Background(), false)
	e1.send(alice, `<message to='juliet@example.com/balcony' type='chat' id='m2'><body>started again</body></message>`)
	got = only("message", juliet.take())
	if len(got) != 1 || got[0].Attr("id") != "m2" || hasDelay(got[0], domain) {
		t.Fatalf("after HandBack(ctx, false) juliet got %v, want m2 at once", got)
	}
}

// TestHandBackWaitsForRunningHandlers: HandBack returns only once the
// handlers running when it was called are done (they use the plugins,
// which stop next), and turns new ones away from the moment it is called.
func TestHandBackWaitsForRunningHandlers(t *testing.T) {
	var g handlerGate
	if !g.enter() {
		t.Fatal("an open gate refused a handler")
	}
	closed := make(chan struct{})
	go func() {
		g.close(context.Background())
		close(closed)
	}()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if g.enter() {
			g.leave()
			return fmt.Errorf("a new handler was let in while closing")
		}
		return nil
	})
	select {
	case <-closed:
		t.Fatal("close returned while a handler ran")
	default:
	}
	g.leave()
	<-closed
	g.open()
	if !g.enter() {
		t.Fatal("a reopened gate refused a handler")
	}
	g.leave()
}

// TestHandlerGateUnderConcurrency: handlers entering and leaving on many
// goroutines while the gate closes; once close returns none is running
// and none gets in.
func TestHandlerGateUnderConcurrency(t *testing.T) {
	for round := range 200 {
		var g handlerGate
		var inside atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if g.enter() {
						inside.Add(1)
						inside.Add(-1)
						g.leave()
					}
				}
			}()
		}
		g.close(context.Background())
		if n := inside.Load(); n != 0 {
			t.Fatalf("round %d: %d handlers inside after close returned", round, n)
		}
		if g.enter() {
			t.Fatalf("round %d: a handler got in after close", round)
		}
		close(stop)
		wg.Wait()
	}
}
