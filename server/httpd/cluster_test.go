package httpd_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
)

// linked is a cluster/local node whose Call and Send also reach the other
// linked nodes' handlers, as node-to-node links would.
type linked struct {
	*local.Cluster
	reg *registry
}

type registry struct {
	mu    sync.Mutex
	nodes map[string]*linked
	calls map[string]int // kind → calls between nodes
}

func (r *registry) node(name string) *linked {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == nil {
		r.nodes, r.calls = map[string]*linked{}, map[string]int{}
	}
	l := &linked{Cluster: local.New(name), reg: r}
	r.nodes[name] = l
	return l
}

func (l *linked) Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error) {
	if node == l.NodeName() {
		return l.Cluster.Call(ctx, node, kind, payload)
	}
	l.reg.mu.Lock()
	peer := l.reg.nodes[node]
	l.reg.calls[kind]++
	l.reg.mu.Unlock()
	if peer == nil {
		return nil, cluster.ErrNodeGone
	}
	return peer.Cluster.Call(ctx, node, kind, payload)
}

func (l *linked) Send(ctx context.Context, node, kind string, payload []byte) error {
	_, err := l.Call(ctx, node, kind, payload)
	return err
}

// TestBOSHForwardingBetweenNodes puts two HTTP front ends of two nodes
// behind a round-robin "balancer": every other request of the BOSH session
// reaches the node that does not own it and is forwarded over the cluster
// link. Login, a long poll and a message exchange with a TCP user all work.
func TestBOSHForwardingBetweenNodes(t *testing.T) {
	var reg registry
	ca, cb := reg.node("node-a"), reg.node("node-b")
	cfg := servertest.DefaultConfig(t)
	cfg.HTTP.Listen = "127.0.0.1:0"
	svc := httpd.NewService()
	n := servertest.RunServer(t, cfg, server.WithService(svc), server.WithCluster(ca))
	servertest.CreateUser(t, n, "alice", "pw-alice")
	servertest.CreateUser(t, n, "carol", "pw-carol")

	// Node b's HTTP front end. Its own sessions would run on its own c2s
	// server; here it only ever forwards.
	cfgB := *cfg
	hb, err := httpd.New(httpd.ConfigFrom(&cfgB), httpd.Deps{C2S: n.C2S(), Cluster: cb, Logger: servertest.TestLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer hb.Stop(context.Background())
	urlA := "http://" + svc.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH
	urlB := "http://" + hb.Addr(httpd.ListenerHTTP).String() + httpd.PathBOSH

	tcp := servertest.Dial(t, n)
	tcpJID := tcp.Login("carol", "pw-carol", "desk")

	// The creation request must reach a: rid 2 % 2 == 0 picks urls[0].
	b := &boshClient{t: t, urls: []string{urlA, urlB}, rid: 1}
	b.login("alice", "pw-alice", "web")
	if owner, _ := bosh.OwnerOf(b.sid); owner != "node-a" {
		t.Fatalf("sid %q owned by %q", b.sid, owner)
	}
	for i := 0; i < 4; i++ {
		body := fmt.Sprintf("hop %d", i)
		b.post("", "<message xmlns='jabber:client' to='"+tcpJID+"' type='chat'><body>"+body+"</body></message>")
		if m := tcp.Await(body, isMsg(body)); m.From() != b.jid {
			t.Errorf("from %q", m.From())
		}
		reply := "re " + body
		tcp.Send("<message to='%s' type='chat'><body>%s</body></message>", b.jid, reply)
		b.expect(reply, isMsg(reply))
	}
	reg.mu.Lock()
	forwarded := reg.calls[bosh.ForwardKind]
	reg.mu.Unlock()
	if forwarded < 4 {
		t.Errorf("%d requests forwarded, want at least 4", forwarded)
	}
	if hb.BOSH().Len() != 0 {
		t.Errorf("node b holds %d sessions", hb.BOSH().Len())
	}
}

// TestHTTPS serves the connectors over TLS: host-meta names https and
// wss URLs, and a WebSocket over TLS is secure even with plain_secure=never.
func TestHTTPS(t *testing.T) {
	svc := httpsNode(t)
	addr := svc.Addr(httpd.ListenerHTTPS)
	if addr == nil || svc.Addr(httpd.ListenerHTTP) != nil {
		t.Fatalf("listeners: https %v http %v", addr, svc.Addr(httpd.ListenerHTTP))
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	resp, err := hc.Get("https://" + addr.String() + httpd.PathHostMetaJSON)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"https://" + addr.String() + "/http-bind", "wss://" + addr.String() + "/xmpp-websocket"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("host-meta.json %s lacks %s", body, want)
		}
	}

	b := &boshClient{t: t, url: "https://" + addr.String() + httpd.PathBOSH, rid: 10, hc: hc}
	b.login("alice", "pw-alice", "tls") // fails unless PLAIN is offered
	if b.jid != "alice@localhost/tls" {
		t.Errorf("jid %q", b.jid)
	}
}

// httpsNode runs a node whose HTTP connectors listen on TLS only, with
// plain_secure=never, and the user alice (pw-alice).
func httpsNode(t *testing.T) *httpd.Service {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	cfg.HTTP.TLSListen = "127.0.0.1:0"
	cfg.HTTP.PlainSecure = "never"
	svc := httpd.NewService()
	n := servertest.RunServer(t, cfg, server.WithService(svc))
	servertest.CreateUser(t, n, "alice", "pw-alice")
	return svc
}
