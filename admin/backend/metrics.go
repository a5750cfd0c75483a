package backend

import (
	"context"
	"time"

	"github.com/aviary-im/aviary/cluster"
	xep0092 "github.com/aviary-im/aviary/plugins/version"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeCollector reads, at scrape time, what other parts keep as plain
// counters: the database pool, the cluster, third-party plugins. Reading at
// scrape time keeps those packages free of Prometheus.
type nodeCollector struct {
	n       *server.Node
	plugins func() *pluginhost.Host

	poolConns, poolIdle, poolMax, poolWaits, poolWaitSecs *prometheus.Desc
	members, clustered, detached                          *prometheus.Desc
	pluginCalls, pluginFailures, pluginDisabled           *prometheus.Desc
	pluginRefused                                         *prometheus.Desc
	linkFrames, linkBytes, linkSendFailures               *prometheus.Desc
	linkHandling, linkSlowHandlings, linkKindHandling     *prometheus.Desc
	buildInfo                                             *prometheus.Desc
	boshRequests, boshForwarded, boshNotFound             *prometheus.Desc
	boshTimeouts, boshSessions                            *prometheus.Desc
}

// boshStatser is the node's HTTP service (server/httpd) when it runs.
type boshStatser interface {
	BOSHStats() (bosh.Stats, bool)
}

func newNodeCollector(n *server.Node, plugins func() *pluginhost.Host) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{
		n: n, plugins: plugins,
		poolConns:      d("aviary_db_pool_connections", "PostgreSQL connections open (acquired and idle)."),
		poolIdle:       d("aviary_db_pool_idle_connections", "PostgreSQL connections idle in the pool."),
		poolMax:        d("aviary_db_pool_max_connections", "PostgreSQL pool size (database.pool_size)."),
		poolWaits:      d("aviary_db_pool_waits_total", "Acquisitions that had to wait for a free connection."),
		poolWaitSecs:   d("aviary_db_pool_wait_seconds_total", "Time spent waiting for a free connection."),
		members:        d("aviary_cluster_members", "Live nodes this node sees, itself included."),
		clustered:      d("aviary_cluster_clustered", "1 when this node shares routes with the other nodes."),
		detached:       d("aviary_cluster_detached", "1 while Hazelcast is away and this node routes over its links on the members and routes it last saw."),
		pluginCalls:    d("aviary_plugin_calls_total", "Calls into a third-party plugin, by plugin, version and node.", "plugin", "version", "node"),
		pluginFailures: d("aviary_plugin_errors_total", "Third-party plugin calls that trapped or timed out, by plugin, version and node.", "plugin", "version", "node"),
		pluginDisabled: d("aviary_plugin_disabled", "1 when a node disabled a plugin after repeated failures.", "plugin", "version", "node"),
		pluginRefused: d("aviary_plugin_refused_calls_total",
			"Host calls of a third-party plugin refused past a per-stanza bound (plugins.wasm), by bound: calls, bytes, stanza, kv.", "plugin", "version", "node", "limit"),
		linkFrames: d("aviary_cluster_link_frames_total", "Frames on the node-to-node links (acknowledgements included), by direction (sent, received).", "dir"),
		linkBytes:  d("aviary_cluster_link_bytes_total", "Bytes of frames on the node-to-node links, by direction (sent, received).", "dir"),
		linkSendFailures: d("aviary_cluster_link_send_failures_total",
			"Sends and calls to other nodes refused (node unreachable, queue full) or queued but never acknowledged."),
		linkHandling: d("aviary_cluster_link_handling_seconds_total",
			"Time the node links' readers spent handling messages from other nodes; handled in order, a slow one holds up the later ones."),
		linkKindHandling: d("aviary_cluster_link_kind_handling_seconds_total",
			"aviary_cluster_link_handling_seconds_total by message kind (router stanza, custody notices, route announcements...).", "kind"),
		linkSlowHandlings: d("aviary_cluster_link_slow_handlings_total",
			"Messages from other nodes whose handling held the link's reader for more than 100 ms."),
		buildInfo: d("aviary_build_info", "Always 1: the running binary's version, VCS revision (empty when not stamped), Go version, and the node's name.",
			"version", "revision", "goversion", "node"),
		boshRequests:  d("aviary_bosh_requests_total", "BOSH HTTP requests with a body that reached this node."),
		boshForwarded: d("aviary_bosh_forwards_total", "BOSH requests this node forwarded to the node owning their session."),
		boshNotFound:  d("aviary_bosh_item_not_found_total", "BOSH requests answered with terminate item-not-found (unknown or expired session, its node gone)."),
		boshTimeouts:  d("aviary_bosh_timeouts_total", "BOSH sessions ended because no request came within their inactivity period (http.bosh_inactivity)."),
		boshSessions:  d("aviary_bosh_sessions", "BOSH sessions live on this node."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.poolConns, c.poolIdle, c.poolMax, c.poolWaits, c.poolWaitSecs, c.members, c.clustered, c.detached, c.pluginCalls, c.pluginFailures, c.pluginDisabled, c.pluginRefused, c.linkFrames, c.linkBytes, c.linkSendFailures,
		c.linkHandling, c.linkSlowHandlings, c.linkKindHandling, c.buildInfo, c.boshRequests, c.boshForwarded, c.boshNotFound, c.boshTimeouts, c.boshSessions} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	if p, ok := c.n.Store().(interface{ Pool() *pgxpool.Pool }); ok {
		st := p.Pool().Stat()
		ch <- prometheus.MustNewConstMetric(c.poolConns, prometheus.GaugeValue, float64(st.TotalConns()))
		ch <- prometheus.MustNewConstMetric(c.poolIdle, prometheus.GaugeValue, float64(st.IdleConns()))
		ch <- prometheus.MustNewConstMetric(c.poolMax, prometheus.GaugeValue, float64(st.MaxConns()))
		ch <- prometheus.MustNewConstMetric(c.poolWaits, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
		ch <- prometheus.MustNewConstMetric(c.poolWaitSecs, prometheus.CounterValue, st.AcquireDuration().Seconds())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ms, err := c.n.Cluster().Members(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(len(ms)))
	}
	cl := 0.0
	if c.n.Cluster().Clustered() {
		cl = 1
	}
	ch <- prometheus.MustNewConstMetric(c.clustered, prometheus.GaugeValue, cl)
	if d, ok := c.n.Cluster().(cluster.Detacher); ok {
		v := 0.0
		if d.Detached() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.detached, prometheus.GaugeValue, v)
	}
	if st, ok := c.n.Cluster().LinkStats(); ok {
		ch <- prometheus.MustNewConstMetric(c.linkFrames, prometheus.CounterValue, float64(st.FramesSent), "sent")
		ch <- prometheus.MustNewConstMetric(c.linkFrames, prometheus.CounterValue, float64(st.FramesReceived), "received")
		ch <- prometheus.MustNewConstMetric(c.linkBytes, prometheus.CounterValue, float64(st.BytesSent), "sent")
		ch <- prometheus.MustNewConstMetric(c.linkBytes, prometheus.CounterValue, float64(st.BytesReceived), "received")
		ch <- prometheus.MustNewConstMetric(c.linkSendFailures, prometheus.CounterValue, float64(st.SendFailures))
		ch <- prometheus.MustNewConstMetric(c.linkHandling, prometheus.CounterValue, st.HandlingSeconds)
		ch <- prometheus.MustNewConstMetric(c.linkSlowHandlings, prometheus.CounterValue, float64(st.SlowHandlings))
		for kind, secs := range st.HandlingByKind {
			ch <- prometheus.MustNewConstMetric(c.linkKindHandling, prometheus.CounterValue, secs, kind)
		}
	}
	node := c.n.Cluster().NodeName()
	bi := xep0092.Build()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, bi.Version, bi.Revision, bi.GoVersion, node)
	for _, s := range c.n.Services() {
		if bs, ok := s.(boshStatser); ok {
			if st, on := bs.BOSHStats(); on {
				ch <- prometheus.MustNewConstMetric(c.boshRequests, prometheus.CounterValue, float64(st.Requests))
				ch <- prometheus.MustNewConstMetric(c.boshForwarded, prometheus.CounterValue, float64(st.Forwarded))
				ch <- prometheus.MustNewConstMetric(c.boshNotFound, prometheus.CounterValue, float64(st.ItemNotFound))
				ch <- prometheus.MustNewConstMetric(c.boshTimeouts, prometheus.CounterValue, float64(st.Timeouts))
				ch <- prometheus.MustNewConstMetric(c.boshSessions, prometheus.GaugeValue, float64(st.Sessions))
			}
		}
	}
	if ph := c.plugins(); ph != nil {
		for _, p := range ph.Stats() {
			dis := 0.0
			if p.Disabled {
				dis = 1
			}
			ch <- prometheus.MustNewConstMetric(c.pluginCalls, prometheus.CounterValue, float64(p.Calls), p.Name, p.Version, node)
			ch <- prometheus.MustNewConstMetric(c.pluginFailures, prometheus.CounterValue, float64(p.Failures), p.Name, p.Version, node)
			ch <- prometheus.MustNewConstMetric(c.pluginDisabled, prometheus.GaugeValue, dis, p.Name, p.Version, node)
			for limit, n := range p.Refused {
				ch <- prometheus.MustNewConstMetric(c.pluginRefused, prometheus.CounterValue, float64(n), p.Name, p.Version, node, limit)
			}
		}
	}
}
