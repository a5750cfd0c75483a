package router

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/wire"
)

// countSession is a Session that only counts what it is given, so a
// benchmark measures the router and nothing else.
type countSession struct {
	jid wire.JID
	n   atomic.Int64
}

func (s *countSession) JID() wire.JID                { return s.jid }
func (s *countSession) Send(el *wire.Element) bool   { s.n.Add(1); return true }
func (s *countSession) Close(condition, text string) {}

func benchBind(b *testing.B, r *Router, user, res string) *countSession {
	s := &countSession{}
	j, err := r.Bind(context.Background(), s, user, res)
	if err != nil {
		b.Fatal(err)
	}
	s.jid = j
	pres := wire.New("presence", "from", j.String())
	r.FromClient(context.Background(), s, pres)
	return s
}

// BenchmarkRouteMessage routes a chat message from one local user to
// another's bare JID on one node (the RFC 6121 priority choice, sent and
// received carbons checks, interceptor points with no plugins). The
// stanza is routed as the stream layer hands it over: parsed once, never
// copied.
func BenchmarkRouteMessage(b *testing.B) {
	st := openStore(b)
	cfg := testConfig()
	r := New(Options{Config: ConfigFrom(cfg), Store: st, Cluster: local.New("node1")})
	for _, u := range []string{"alice", "bob"} {
		if err := st.CreateUser(context.Background(), userRecord(u)); err != nil {
			b.Fatal(err)
		}
	}
	alice := benchBind(b, r, "alice", "a")
	bob := benchBind(b, r, "bob", "b")
	benchBind(b, r, "bob", "phone") // a second resource with lower priority
	bob.n.Store(0)
	msg := mustParse(b, `<message from='alice@example.com/a' to='bob@example.com' type='chat' id='m'><body>Wherefore art thou?</body></message>`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r.FromClient(ctx, alice, msg)
	}
	if bob.n.Load() == 0 {
		b.Fatal("nothing delivered")
	}
}

// BenchmarkRouteMessageFullJID routes to a full JID.
func BenchmarkRouteMessageFullJID(b *testing.B) {
	st := openStore(b)
	r := New(Options{Config: ConfigFrom(testConfig()), Store: st, Cluster: local.New("node1")})
	alice := benchBind(b, r, "alice", "a")
	bob := benchBind(b, r, "bob", "b")
	msg := mustParse(b, `<message from='alice@example.com/a' to='bob@example.com/b' type='chat' id='m'><body>hi</body></message>`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r.FromClient(ctx, alice, msg)
	}
	if bob.n.Load() == 0 {
		b.Fatal("nothing delivered")
	}
}

// TestRouteMessageAllocs keeps the routed-message path allocation-free.
func TestRouteMessageAllocs(t *testing.T) {
	st := openStore(t)
	r := New(Options{Config: ConfigFrom(testConfig()), Store: st, Cluster: local.New("node1")})
	s := &countSession{}
	j, _ := r.Bind(context.Background(), s, "bob", "b")
	s.jid = j
	r.FromClient(context.Background(), s, wire.New("presence", "from", j.String()))
	a := &countSession{}
	ja, _ := r.Bind(context.Background(), a, "alice", "a")
	a.jid = ja
	for _, to := range []string{"bob@example.com", "bob@example.com/b"} {
		msg := mustParse(t, `<message from='alice@example.com/a' to='`+to+`' type='chat'><body>x</body></message>`)
		n := testing.AllocsPerRun(200, func() { r.FromClient(context.Background(), a, msg) })
		if n != 0 {
			t.Errorf("routing a message to %s allocates %.1f times", to, n)
		}
	}
}

// BenchmarkRouteMessageCrossNode routes the same message to a user on
// another node through the fake two-node cluster: the routing table
// lookup, serialization for the link, and parsing on the receiving node
// (the link itself is a function call here).
func BenchmarkRouteMessageCrossNode(b *testing.B) {
	st := openStore(b)
	n := newFakeNet("node1", "node2")
	r1 := New(Options{Config: ConfigFrom(testConfig()), Store: st, Cluster: n.nodes["node1"]})
	r2 := New(Options{Config: ConfigFrom(testConfig()), Store: st, Cluster: n.nodes["node2"]})
	alice := benchBind(b, r1, "alice", "a")
	bob := benchBind(b, r2, "bob", "b")
	bob.n.Store(0)
	msg := mustParse(b, `<message from='alice@example.com/a' to='bob@example.com' type='chat' id='m'><body>Wherefore art thou?</body></message>`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r1.FromClient(ctx, alice, msg)
	}
	if bob.n.Load() == 0 {
		b.Fatal("nothing delivered")
	}
}
