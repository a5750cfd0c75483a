package servertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/link"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/storage/postgres"
)

// ClusterOptions place an in-process node in a real cluster: a shared
// PostgreSQL database and a Hazelcast member (see storage/postgres/pgtest
// and cluster/hazelcast/hztest).
type ClusterOptions struct {
	DatabaseURL string
	Member      string // Hazelcast member address
	ClusterName string // Hazelcast cluster name
	NodeName    string
	Secret      string // node-link secret; every node of the test uses the same
	Prefix      string // Hazelcast object prefix, distinct per test sharing a member
	// NodeTTL is how long a silent node counts as alive. Default 2s,
	// which a node under -race on a loaded machine may miss: tests
	// that do not watch nodes die can afford the production 10s.
	NodeTTL time.Duration
}

// RunClusterNode starts a node from cfg (its domain, listeners...) with
// the cluster settings of o and fast heartbeats, and returns it with its
// Hazelcast cluster. Extra options (services) are passed to the node.
func RunClusterNode(t testing.TB, cfg *conf.Config, o ClusterOptions, opts ...server.Option) (*server.Node, *hazelcast.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, c, closeAll, err := StartClusterNode(ctx, cfg, o, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("servertest: stopping the node: %v%s", err, stacksIfStuck(err))
		}
		closeAll()
	})
	return n, c
}

// StartClusterNode is RunClusterNode without a testing.TB, for a node
// that runs in a process of its own (a test that SIGKILLs it). closeAll
// closes what the node does not own (its store and links) once it
// stopped, or at once if it is killed with the process.
func StartClusterNode(ctx context.Context, cfg *conf.Config, o ClusterOptions, opts ...server.Option) (n *server.Node, c *hazelcast.Cluster, closeAll func(), err error) {
	cfg.Database.URL = o.DatabaseURL
	cfg.Cluster.Hazelcast = []string{o.Member}
	cfg.Cluster.HazelcastClusterName = o.ClusterName
	cfg.Cluster.NodeName = o.NodeName
	cfg.Cluster.Listen = "127.0.0.1:0"
	cfg.Cluster.Secret = o.Secret
	cfg.Cluster.StartupRetries = 2
	cfg.Cluster.StartupRetryInterval = 5 * time.Second
	cfg.Cluster.OperationTimeout = 3 * time.Second
	cfg.Cluster.HeartbeatInterval = 200 * time.Millisecond
	cfg.Cluster.NodeTTL = 2 * time.Second
	if o.NodeTTL > 0 {
		cfg.Cluster.NodeTTL = o.NodeTTL
	}
	st, err := postgres.Open(ctx, o.DatabaseURL, postgres.Options{Logger: TestLogger()})
	if err != nil {
		return nil, nil, nil, err
	}
	// The node's links, as server.New makes them; closed after the node.
	links := link.FromConfig(cfg.Cluster, TestLogger())
	closeAll = func() {
		links.Close()
		st.Close()
	}
	c, err = hazelcast.NewWithOptions(hazelcast.Options{
		Cluster: cfg.Cluster, Properties: st, Links: links, Logger: TestLogger(),
		Prefix: o.Prefix, SwitchPoll: 100 * time.Millisecond,
	})
	if err == nil {
		n, err = startServer(cfg, append([]server.Option{server.WithStore(st), server.WithCluster(c)}, opts...)...)
	}
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return n, c, closeAll, nil
}

// WaitClustered waits until every cluster sees all of them as members and
// reports itself clustered.
func WaitClustered(t testing.TB, clusters ...*hazelcast.Cluster) {
	t.Helper()
	CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, c := range clusters {
			ms, err := c.Members(context.Background())
			if err != nil || len(ms) != len(clusters) || !c.Clustered() {
				return fmt.Errorf("%s: %d members, clustered %v, %v", c.NodeName(), len(ms), c.Clustered(), err)
			}
		}
		return nil
	})
}
