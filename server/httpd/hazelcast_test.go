package httpd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/balance"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// httpNode is an in-process node of a real cluster with its HTTP listener.
type httpNode struct {
	n   *server.Node
	svc *httpd.Service
	c   *hazelcast.Cluster
}

// startHTTPNode starts a clustered node (PostgreSQL pg, Hazelcast member)
// with an HTTP listener, and the balancing service withBalance builds on
// it when withBalance is not nil (drains start at once).
func startHTTPNode(t *testing.T, pg *pgtest.Server, member *hztest.Member, name, prefix string, withBalance func(*httpd.Service) *balance.Service) httpNode {
	t.Helper()
	return startHTTPNodeWith(t, pg, member, name, prefix, withBalance, nil)
}

// startHTTPNodeWith is startHTTPNode with tweak, when set, adjusting the
// node's config last.
func startHTTPNodeWith(t *testing.T, pg *pgtest.Server, member *hztest.Member, name, prefix string, withBalance func(*httpd.Service) *balance.Service, tweak func(*conf.Config)) httpNode {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Balance.DrainNotice = 0 // no load balancer to wait for
	if tweak != nil {
		tweak(cfg)
	}
	svc := httpd.NewService()
	opts := []server.Option{server.WithService(svc)}
	if withBalance != nil {
		opts = append(opts, server.WithService(withBalance(svc)))
	}
	n, c := servertest.RunClusterNode(t, cfg, servertest.ClusterOptions{
		DatabaseURL: pg.URL(), Member: member.Addr(), ClusterName: member.ClusterName,
		NodeName: name, Secret: "httpd-test", Prefix: prefix,
	}, opts...)
	return httpNode{n, svc, c}
}

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
	start := func(name string) httpNode { return startHTTPNode(t, pg, member, name, "httpd.", nil) }
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

// TestBOSHDrainAnswersForwardedRequests is issue 17's empty 200: a BOSH
// session lives on node b; its held request came in through node a and is
// forwarded to b. Node a is drained and stops. The request must get a
// proper <body/>, not an empty HTTP 200 (Converse.js throws on that and
// hangs), the session must go on on b, and b must know that the request
// it held for a is gone, so a message sent then reaches the client's next
// request instead of the vanished one.
func TestBOSHDrainAnswersForwardedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-httpd-drain")
	var bal *balance.Service
	var na *server.Node // set before the drain starts
	nodeA := startHTTPNode(t, pg, member, "node-a", "httpd-drain.", func(web *httpd.Service) *balance.Service {
		bal = balance.NewService(web, func(balance.Report) { na.Stop(context.Background()) })
		return bal
	})
	nodeB := startHTTPNode(t, pg, member, "node-b", "httpd-drain.", nil)
	na = nodeA.n
	svcA, ca := nodeA.svc, nodeA.c
	nb, svcB, cb := nodeB.n, nodeB.svc, nodeB.c
	servertest.WaitClustered(t, ca, cb)
	servertest.CreateUser(t, nb, "carol", "pw-carol")
	servertest.CreateUser(t, nb, "dave", "pw-dave")
	dave := servertest.Dial(t, nb)
	dave.Login("dave", "pw-dave", "desk")

	urlA := "http://" + svcA.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH
	urlB := "http://" + svcB.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH
	bc := &boshClient{t: t, url: urlB, rid: 10, wait: "30"}
	bc.login("carol", "pw-carol", "web")

	type answer struct {
		status int
		body   []byte
		err    error
	}
	held := make(chan answer, 1)
	go func() {
		body := fmt.Sprintf("<body xmlns='%s' rid='%d' sid='%s'/>", bosh.NSHTTPBind, bc.rid+1, bc.sid)
		resp, err := http.Post(urlA, "text/xml; charset=utf-8", strings.NewReader(body))
		if err != nil {
			held <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		held <- answer{resp.StatusCode, data, err}
	}()
	awaitHeld(t, svcB.Server().BOSH(), bc.sid, 1)
	if err := bal.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the forwarded request was not answered when node a stopped")
	}
	if a.err != nil {
		t.Fatalf("forwarded request: %v", a.err)
	}
	el, err := wire.Parse(a.body, wire.Limits{})
	if a.status != http.StatusOK || err != nil || el.Name != "body" || el.NS() != bosh.NSHTTPBind {
		t.Fatalf("drain answered HTTP %d %q (%v), want a BOSH body", a.status, a.body, err)
	}
	if el.Attr("type") == "terminate" {
		t.Fatalf("drain ended the session, which lives on node b: %s", el)
	}
	bc.rid++
	awaitHeld(t, svcB.Server().BOSH(), bc.sid, 0)
	dave.Send("<message to='%s' type='chat'><body>after the drain</body></message>", bc.jid)
	bc.expect("the message sent after node a stopped", isMsg("after the drain"))
}

// TestBOSHWhileClusteringIsOff is issue 17's broken switch: behind a
// balancer without stickiness, a BOSH session's requests reach every node.
// With the cluster-wide switch off, the node links stay up, so a node
// that does not own the session still forwards to the one that does; the
// client keeps chatting (here with a user on the owner's node, since
// routes are not shared while the switch is off).
func TestBOSHWhileClusteringIsOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-httpd-switch")
	a := startHTTPNode(t, pg, member, "node-a", "httpd-switch.", nil)
	b := startHTTPNode(t, pg, member, "node-b", "httpd-switch.", nil)
	na, svcA, ca := a.n, a.svc, a.c
	svcB, cb := b.svc, b.c
	servertest.WaitClustered(t, ca, cb)
	servertest.CreateUser(t, na, "alice", "pw-alice")
	servertest.CreateUser(t, na, "carol", "pw-carol")

	if err := na.Store().SetProperty(context.Background(), cluster.SwitchProperty, "false"); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if ca.Clustered() || cb.Clustered() {
			return fmt.Errorf("still clustered: a %v, b %v", ca.Clustered(), cb.Clustered())
		}
		return nil
	})

	tcp := servertest.Dial(t, na) // carol, on the session's owner
	tcpJID := tcp.Login("carol", "pw-carol", "desk")
	urlA := "http://" + svcA.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH
	urlB := "http://" + svcB.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH
	bc := &boshClient{t: t, urls: []string{urlA, urlB}, rid: 1} // creation (rid 2) on a, then b, a, ...
	bc.login("alice", "pw-alice", "web")
	if owner, _ := bosh.OwnerOf(bc.sid); owner != "node-a" {
		t.Fatalf("sid %q owned by %q", bc.sid, owner)
	}
	for i := 0; i < 3; i++ {
		body := fmt.Sprintf("switched off %d", i)
		bc.post("", "<message xmlns='jabber:client' to='"+tcpJID+"' type='chat'><body>"+body+"</body></message>")
		tcp.Await(body, isMsg(body))
		reply := "re " + body
		tcp.Send("<message to='%s' type='chat'><body>%s</body></message>", bc.jid, reply)
		bc.expect(reply, isMsg(reply))
	}
}
