package router

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/wire"
)

// collector accumulates what a fake session receives across polls.
type collector struct {
	s   *fakeSession
	got []*wire.Element
}

// waitSig waits until the session has received a stanza with signature want.
func (c *collector) waitSig(t testing.TB, want string) *wire.Element {
	t.Helper()
	var found *wire.Element
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		c.got = append(c.got, c.s.take()...)
		for i, el := range c.got {
			if sig(el) == want {
				found = el
				c.got = append(c.got[:i:i], c.got[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("no %q among %q", want, sigs(c.got))
	})
	return found
}

// hazelcastNodes starts two routers on two real cluster/hazelcast nodes
// (one shared Hazelcast member, node-to-node links on loopback) over one
// shared store.
func hazelcastNodes(t *testing.T) (*env, *env, *hazelcast.Cluster, *hazelcast.Cluster) {
	t.Helper()
	m := hztest.Shared(t, "aviary-router-test")
	st := openStore(t)
	prefix := fmt.Sprintf("rt%d.", time.Now().UnixNano())
	var nodes []*hazelcast.Cluster
	var envs []*env
	for _, name := range []string{"a", "b"} {
		c, err := hazelcast.NewWithOptions(hazelcast.Options{
			Cluster: conf.ClusterConfig{
				Hazelcast:            []string{m.Addr()},
				HazelcastClusterName: m.ClusterName,
				NodeName:             name,
				Listen:               "127.0.0.1:0",
				Secret:               "router-test",
				StartupRetries:       2,
				StartupRetryInterval: 3 * time.Second,
				OperationTimeout:     3 * time.Second,
				HeartbeatInterval:    250 * time.Millisecond,
				NodeTTL:              3 * time.Second,
			},
			Prefix:  prefix,
			Version: "test",
		})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnvWith(t, st, c) // registers the router's handlers before Start
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Stop(context.Background()) })
		nodes = append(nodes, c)
		envs = append(envs, e)
	}
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, c := range nodes {
			ms, err := c.Members(context.Background())
			if err != nil || len(ms) != 2 || !c.Clustered() {
				return fmt.Errorf("%s: members %v clustered %v err %v", c.NodeName(), len(ms), c.Clustered(), err)
			}
		}
		return nil
	})
	envs[0].user("alice", "bob")
	return envs[0], envs[1], nodes[0], nodes[1]
}

// TestHazelcastCluster runs the cross-node paths over the real clustering
// implementation: routes in Hazelcast, stanzas over node links, roster
// pushes and presence across nodes, and a node leaving.
func TestHazelcastCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Hazelcast member")
	}
	ea, eb, _, nb := hazelcastNodes(t)
	ea.setItem("alice@example.com", "bob@example.com", stB, true)
	ea.setItem("bob@example.com", "alice@example.com", stB, true)
	alice := &collector{s: ea.bind("alice", "a")}
	bob := &collector{s: eb.bind("bob", "b")}
	ea.send(alice.s, `<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`)
	eb.send(bob.s, `<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`)

	// Both routes are visible from both nodes.
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, e := range []*env{ea, eb} {
			for _, u := range []string{"alice", "bob"} {
				if res, _ := e.r.Resources(context.Background(), u+"@example.com"); len(res) != 1 {
					return fmt.Errorf("%s sees %v for %s", e.r.node, res, u)
				}
			}
		}
		return nil
	})
	eb.send(bob.s, `<presence/>`)
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		res, _ := ea.r.Resources(context.Background(), "bob@example.com")
		if len(res) != 1 || !res[0].Available {
			return fmt.Errorf("node a sees bob as %v", res)
		}
		return nil
	})
	ea.send(alice.s, `<presence/>`)
	// Alice's presence reaches bob on the other node, and bob's node
	// answers alice's probe.
	bob.waitSig(t, "presence alice@example.com/a→bob@example.com")
	alice.waitSig(t, "presence bob@example.com/b→alice@example.com/a")

	ea.send(alice.s, `<message to='bob@example.com' type='chat' id='x'><body>over the link</body></message>`)
	if m := bob.waitSig(t, "message chat alice@example.com/a→bob@example.com"); m.ChildText("body", "") != "over the link" {
		t.Fatalf("body %q", m.ChildText("body", ""))
	}
	eb.send(bob.s, `<iq type='get' id='v' to='alice@example.com/a'><query xmlns='jabber:iq:version'/></iq>`)
	alice.waitSig(t, "iq get bob@example.com/b→alice@example.com/a")

	// A roster change on node a is pushed to bob's resource on node b.
	ea.send(alice.s, `<iq type='set' id='n'><query xmlns='jabber:iq:roster'><item jid='bob@example.com' name='Bob'/></query></iq>`)
	eb.send(bob.s, `<iq type='set' id='n'><query xmlns='jabber:iq:roster'><item jid='alice@example.com' name='Alice'/></query></iq>`)
	alice.waitSig(t, "iq set alice@example.com→alice@example.com/a")
	bob.waitSig(t, "iq set bob@example.com→bob@example.com/b")

	// Node b shuts down the way a node does (sessions closed, then the
	// cluster left): alice sees bob go, and messages to him are kept.
	// (A crash is TestClusterNodeDown's, on the fake cluster.)
	eb.r.Unbind(context.Background(), bob.s, nil)
	if err := nb.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	alice.waitSig(t, "presence unavailable bob@example.com/b→alice@example.com")
	ea.send(alice.s, `<message to='bob@example.com' type='chat' id='y'><body>later</body></message>`)
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		msgs, err := ea.store.TakeOffline(context.Background(), "bob@example.com")
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if strings.Contains(string(m.Stanza), "later") {
				return nil
			}
		}
		return fmt.Errorf("offline %d messages, none the one sent after node b left", len(msgs))
	})
}
