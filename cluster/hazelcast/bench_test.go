package hazelcast

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
)

// BenchmarkRoutes measures one Routes lookup of a user with a resource on
// each of two other nodes: from the route replica, and (query) with one
// indexed query against a real member.
func BenchmarkRoutes(b *testing.B) {
	m := hztest.Shared(b, "aviary-test")
	p := prefix(b)
	a := startNode(b, m, p, "a", nodeOpt{})
	q := startNode(b, m, p, "q", nodeOpt{noCache: true})
	x := startNode(b, m, p, "x", nodeOpt{})
	y := startNode(b, m, p, "y", nodeOpt{})
	waitMembers(b, []string{"a", "q", "x", "y"}, a, x, y)
	ctx := context.Background()
	const users = 1000
	for i := range users {
		_ = x.PutRoute(ctx, cluster.Route{JID: fmt.Sprintf("u%d@x/x", i), Available: true})
		_ = y.PutRoute(ctx, cluster.Route{JID: fmt.Sprintf("u%d@x/y", i), Available: true})
	}
	last := fmt.Sprintf("u%d@x", users-1)
	waitRoutes(b, a, last, []cluster.Route{
		{JID: last + "/x", Node: "x", Available: true},
		{JID: last + "/y", Node: "y", Available: true},
	})
	for _, tc := range []struct {
		name string
		n    *node
	}{{"replica", a}, {"query", q}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rs, err := tc.n.Routes(ctx, fmt.Sprintf("u%d@x", i%users))
				if err != nil || len(rs) != 2 {
					b.Fatalf("Routes = %+v, %v", rs, err)
				}
				i++
			}
		})
	}
	b.Run("replica-parallel", func(b *testing.B) {
		b.ReportAllocs()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if _, err := a.Routes(ctx, fmt.Sprintf("u%d@x", i%users)); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkClusterSend compares Send to this node's own handler with Send
// to another node over its link, through the Cluster API.
func BenchmarkClusterSend(b *testing.B) {
	m := hztest.Shared(b, "aviary-test")
	p := prefix(b)
	a := startNode(b, m, p, "a", nodeOpt{})
	z := startNode(b, m, p, "z", nodeOpt{})
	waitMembers(b, []string{"a", "z"}, a, z)
	ctx := context.Background()
	payload := []byte(`<message to="u@x/r" from="v@x/s" type="chat" id="m1"><body>hello there, how are you?</body></message>`)
	for _, tc := range []struct {
		name string
		to   *node
	}{{"same-node", a}, {"cross-node", z}} {
		b.Run(tc.name, func(b *testing.B) {
			var got atomic.Int64
			tc.to.Handle("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
				got.Add(1)
				return nil, nil
			})
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			var sent int64
			for b.Loop() {
				if err := a.Send(ctx, tc.to.NodeName(), "msg", payload); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			// Queued work counts: wait until the receiver has it all.
			deadline := time.Now().Add(30 * time.Second)
			for got.Load() < sent && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got.Load() < sent {
				b.Fatalf("received %d of %d", got.Load(), sent)
			}
		})
	}
}
