package backend

import (
	"strings"
	"testing"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/prometheus/client_golang/prometheus"
)

// linkCluster is a one-node cluster that reports link counters, as
// cluster/hazelcast does.
type linkCluster struct {
	*local.Cluster
	st cluster.LinkStats
}

func (c *linkCluster) LinkStats() (cluster.LinkStats, bool) { return c.st, true }

// TestLinkMetrics: the node collector exports the cluster's link counters
// when the cluster has them, and nothing of the kind when it has not.
func TestLinkMetrics(t *testing.T) {
	cases := []struct {
		name string
		cl   cluster.Cluster
		want map[string]float64
	}{
		{"hazelcast-like", &linkCluster{Cluster: local.New("n1"), st: cluster.LinkStats{FramesSent: 3, FramesReceived: 4, BytesSent: 500, BytesReceived: 600, SendFailures: 2, HandlingSeconds: 1.5, SlowHandlings: 1, HandlingByKind: map[string]float64{"router.stanza": 1.25, "custody.done": 0.25}}}, map[string]float64{
			"aviary_cluster_link_frames_total/sent":                              3,
			"aviary_cluster_link_frames_total/received":                          4,
			"aviary_cluster_link_bytes_total/sent":                               500,
			"aviary_cluster_link_bytes_total/received":                           600,
			"aviary_cluster_link_send_failures_total/":                           2,
			"aviary_cluster_link_handling_seconds_total/":                        1.5,
			"aviary_cluster_link_slow_handlings_total/":                          1,
			"aviary_cluster_link_kind_handling_seconds_total/kind=router.stanza": 1.25,
			"aviary_cluster_link_kind_handling_seconds_total/kind=custody.done":  0.25,
		}},
		{"local", local.New("n1"), map[string]float64{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := servertest.DefaultConfig(t)
			n, err := server.New(cfg, server.WithCluster(tc.cl), server.WithLogger(servertest.TestLogger()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Store().Close() })
			reg := prometheus.NewRegistry()
			reg.MustRegister(newNodeCollector(n, func() *pluginhost.Host { return nil }))
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					dir := ""
					for _, l := range m.GetLabel() {
						switch l.GetName() {
						case "dir":
							dir = l.GetValue()
						case "kind":
							dir = "kind=" + l.GetValue()
						}
					}
					if c := m.GetCounter(); c != nil && strings.HasPrefix(mf.GetName(), "aviary_cluster_link_") {
						got[mf.GetName()+"/"+dir] = c.GetValue()
					}
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("link metrics = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}
