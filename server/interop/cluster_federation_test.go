package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// TestFederationWithClusteredDomain: domain a.test runs on two clustered
// nodes (shared PostgreSQL, Hazelcast, node links), b.test on one node.
// b.test reaches a.test only through node A1, while the a.test user is
// connected to node A2: stanzas from b.test land on A1 and are routed to
// A2 over the node link; A2 sends to b.test on its own outgoing stream,
// and b.test's dialback check lands on A1, which verifies the key A2 made
// because the cluster shares the dialback secret.
func TestFederationWithClusteredDomain(t *testing.T) {
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-s2s")
	a1S2S, a2S2S, bS2S := servertest.FreeAddr(t), servertest.FreeAddr(t), servertest.FreeAddr(t)

	startA := func(name, s2sAddr string) (*server.Node, *hazelcast.Cluster) {
		return startFederatedClusterNode(t, pg, member, name, "s2s.", s2sAddr, map[string]string{"b.test": bS2S}, nil)
	}
	a1, c1 := startA("a1", a1S2S)
	a2, c2 := startA("a2", a2S2S)
	servertest.WaitClustered(t, c1, c2)

	cfgB := servertest.DefaultConfig(t)
	cfgB.Domain = "b.test"
	cfgB.S2S.Listen = bS2S
	cfgB.S2S.Hosts = map[string]string{"a.test": a1S2S} // a.test's only address: A1
	b := servertest.RunServer(t, cfgB, server.WithService(server.NewFederationService()))

	servertest.CreateUser(t, a1, "alice", "alice-secret") // one database for both a.test nodes
	servertest.CreateUser(t, b, "bob", "bob-secret")
	alice := servertest.DialAddr(t, a2.Addr(server.ListenerC2S).String(), "a.test", false)
	aliceJID := alice.Login("alice", "alice-secret", "phone")
	alice.Send(`<presence/>`)
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	bobJID := bob.Login("bob", "bob-secret", "desk")

	// b.test → A1 (incoming s2s) → node link → A2 → alice. The route may
	// take a moment to be visible on A1 after alice's login; repeat until
	// the first message arrives, then every later one must.
	servertest.CheckFor(t, 30*time.Second, 500*time.Millisecond, func() error {
		bob.Send(`<message to='%s' type='chat'><body>first</body></message>`, aliceJID)
		el, err := alice.Next()
		if err != nil {
			return err
		}
		if el.Name != "message" || el.ChildText("body", "") != "first" {
			return fmt.Errorf("alice got %s", el)
		}
		return nil
	})
	bob.Send(`<message to='alice@a.test' type='chat'><body>to the bare JID</body></message>`)
	m := alice.Await("message to the bare JID", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == "to the bare JID"
	})
	if m.From() != bobJID {
		t.Errorf("from = %q, want %q", m.From(), bobJID)
	}

	// A2 → b.test on A2's own outgoing stream; b.test verifies it through A1.
	alice.Send(`<message to='%s' type='chat'><body>hello from node a2</body></message>`, bobJID)
	bob.Await("message from a2", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == "hello from node a2" && el.From() == aliceJID
	})
	alice.Send(`<iq type='get' id='ping-b' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	res := alice.Await("ping answer", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "ping-b" })
	if res.Type() != "result" {
		t.Errorf("ping over s2s from a2: %s", res)
	}
}

// startFederatedClusterNode starts node name of the clustered domain
// a.test on pg and member, with s2s on s2sAddr and the peers' addresses
// in hosts; tweak, when set, adjusts the config first.
func startFederatedClusterNode(t *testing.T, pg *pgtest.Server, member *hztest.Member, name, prefix, s2sAddr string,
	hosts map[string]string, tweak func(*conf.Config)) (*server.Node, *hazelcast.Cluster) {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	cfg.Domain = "a.test"
	cfg.S2S.Listen = s2sAddr
	cfg.S2S.Hosts = hosts
	cfg.S2S.DialbackSecret = "one-secret-for-the-whole-a.test-cluster"
	if tweak != nil {
		tweak(cfg)
	}
	return servertest.RunClusterNode(t, cfg, servertest.ClusterOptions{
		DatabaseURL: pg.URL(), Member: member.Addr(), ClusterName: member.ClusterName,
		NodeName: name, Secret: "a.test-cluster-secret", Prefix: prefix,
	}, server.WithService(server.NewFederationService()))
}
