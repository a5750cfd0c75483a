package httpd_test

import (
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// TestBOSHAcrossHazelcastCluster runs two real nodes (shared PostgreSQL,
// one Hazelcast member, real node-to-node links). A BOSH client whose
// requests alternate between the nodes' HTTP listeners logs in and talks
// with a TCP user connected to the other node.
func TestBOSHAcrossHazelcastCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-httpd")
	type nodeT struct {
		n   *server.Node
		svc *httpd.Service
		c   *hazelcast.Cluster
	}
	start := func(name string) nodeT {
		cfg := servertest.DefaultConfig(t)
		cfg.HTTP.Listen = "127.0.0.1:0"
		svc := httpd.NewService()
		n, c := servertest.RunClusterNode(t, cfg, servertest.ClusterOptions{
			DatabaseURL: pg.URL(), Member: member.Addr(), ClusterName: member.ClusterName,
			NodeName: name, Secret: "httpd-test", Prefix: "httpd.",
		}, server.WithService(svc))
		return nodeT{n, svc, c}
	}
	a, b := start("node-a"), start("node-b")
	servertest.WaitClustered(t, a.c, b.c)
	servertest.CreateUser(t, a.n, "alice", "pw-alice")
	servertest.CreateUser(t, a.n, "carol", "pw-carol")

	tcp := servertest.Dial(t, b.n) // carol is on node b
	tcpJID := tcp.Login("carol", "pw-carol", "desk")

	urlA := "http://" + a.svc.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH
	urlB := "http://" + b.svc.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH
	bc := &boshClient{t: t, urls: []string{urlA, urlB}, rid: 1} // creation (rid 2) on a
	bc.login("alice", "pw-alice", "web")
	if owner, _ := bosh.OwnerOf(bc.sid); owner != "node-a" {
		t.Fatalf("sid %q owned by %q", bc.sid, owner)
	}
	for i := 0; i < 3; i++ {
		body := fmt.Sprintf("across %d", i)
		bc.post("", "<message xmlns='jabber:client' to='"+tcpJID+"' type='chat'><body>"+body+"</body></message>")
		if m := tcp.Await(body, isMsg(body)); m.From() != bc.jid {
			t.Errorf("from %q", m.From())
		}
		reply := "re " + body
		tcp.Send("<message to='%s' type='chat'><body>%s</body></message>", bc.jid, reply)
		bc.expect(reply, isMsg(reply))
	}
	if n := b.svc.Server().BOSH().Len(); n != 0 {
		t.Errorf("node b holds %d BOSH sessions", n)
	}
}
