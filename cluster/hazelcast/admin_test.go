package hazelcast

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/internal/testutil"
)

// TestSwitchTopic: with polling out of the way (an hour apart) and a store
// that pushes nothing, the topic hint alone makes nodes re-read the switch.
func TestSwitchTopic(t *testing.T) {
	m := hztest.Shared(t, "aviary-test")
	p := prefix(t)
	props := &memProps{}
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, m, p, name, nodeOpt{props: props, switchPoll: time.Hour}))
	}
	waitMembers(t, []string{"a", "b"}, nodes...)
	ctx := context.Background()
	cc := testConfig([]string{m.Addr()}, m.ClusterName, "cli", "")

	ms, err := ReadMembers(ctx, cc, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Name != "a" || !ms[0].Senior || ms[1].Senior || !ms[1].Clustered || ms[1].LinkAddr == "" {
		t.Fatalf("ReadMembers = %+v", ms)
	}

	_ = props.SetProperty(ctx, cluster.SwitchProperty, "false")
	if err := PublishSwitch(ctx, cc, p, false, nil); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, n := range nodes {
			if n.Clustered() {
				return fmt.Errorf("%s still clustered", n.NodeName())
			}
		}
		return nil
	})
	ms, err = ReadMembers(ctx, cc, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		ms, err = ReadMembers(ctx, cc, p, nil)
		if err != nil {
			return err
		}
		for _, s := range ms {
			if s.Clustered {
				return fmt.Errorf("%s still published as clustered", s.Name)
			}
		}
		if len(ms) != 2 {
			return fmt.Errorf("disabled nodes must stay listed: %+v", ms)
		}
		return nil
	})

	// A running node announces over its own client (the admin console's
	// path): the nodes re-read at once, with polling an hour apart.
	_ = cluster.WriteSwitch(ctx, props, true)
	if err := nodes[1].AnnounceSwitch(ctx, true); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, n := range nodes {
			if !n.Clustered() || !n.Enabled() {
				return fmt.Errorf("%s not clustered again", n.NodeName())
			}
		}
		return nil
	})
}
