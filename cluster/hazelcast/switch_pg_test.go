package hazelcast

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// TestSwitchPostgres flips the switch in a real PostgreSQL, the way
// `aviary cluster disable|enable` does, and watches three nodes follow.
// Each node has its own store (its own pool and LISTEN connection).
func TestSwitchPostgres(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	pg := pgtest.Start(t)
	ctx := context.Background()
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, pg.URL(), postgres.Options{PoolSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	p := prefix(t)
	var nodes []*node
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startNode(t, m, p, name, nodeOpt{props: open()}))
	}
	waitMembers(t, []string{"a", "b", "c"}, nodes...)
	if err := nodes[2].PutRoute(ctx, cluster.Route{JID: "u@x/c", Available: true}); err != nil {
		t.Fatal(err)
	}
	admin := open()
	for _, step := range []struct {
		value string
		want  bool
	}{
		{"false", false},
		{"true", true},
		{"off", false},
		{"on", true},
	} {
		t.Run(step.value, func(t *testing.T) {
			start := time.Now()
			if err := admin.SetProperty(ctx, cluster.SwitchProperty, step.value); err != nil {
				t.Fatal(err)
			}
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				for _, n := range nodes {
					if n.Clustered() != step.want {
						return fmt.Errorf("%s: clustered %v, want %v", n.NodeName(), n.Clustered(), step.want)
					}
				}
				return nil
			})
			t.Logf("all three nodes clustered=%v %v after the write", step.want, time.Since(start))
			var want []cluster.Route
			if step.want {
				want = []cluster.Route{{JID: "u@x/c", Node: "c", Available: true}}
			}
			waitRoutes(t, nodes[0], "u@x", want)
		})
	}
}
