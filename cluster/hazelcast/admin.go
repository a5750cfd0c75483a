package hazelcast

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	hz "github.com/hazelcast/hazelcast-go-client"
	"github.com/hazelcast/hazelcast-go-client/types"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
)

// adminClient connects a short-lived client that gives up after the
// operation timeout instead of retrying for ever.
func adminClient(ctx context.Context, cc conf.ClusterConfig, logger *slog.Logger) (*hz.Client, error) {
	if len(cc.Hazelcast) == 0 {
		return nil, fmt.Errorf("cluster/hazelcast: no Hazelcast addresses")
	}
	timeout := cc.OperationTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	var hc hz.Config
	hc.ClientName = "aviary-admin"
	hc.Cluster.Name = cc.HazelcastClusterName
	if hc.Cluster.Name == "" {
		hc.Cluster.Name = "aviary"
	}
	hc.Cluster.Network.SetAddresses(cc.Hazelcast...)
	hc.Cluster.Network.ConnectionTimeout = types.Duration(timeout)
	hc.Cluster.ConnectionStrategy.Timeout = types.Duration(timeout)
	hc.Cluster.InvocationTimeout = types.Duration(timeout)
	hc.Cluster.Unisocket = true
	hc.Logger.CustomLogger = slogBridge{logger.With("part", "hazelcast")}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := hz.StartNewClientWithConfig(cctx, hc)
	if err != nil {
		return nil, fmt.Errorf("cluster/hazelcast: connect %v: %w", cc.Hazelcast, err)
	}
	return c, nil
}

// ReadMembers lists the member map (live entries, clustered or not),
// oldest first. prefix is Options.Prefix ("" for the default).
func ReadMembers(ctx context.Context, cc conf.ClusterConfig, prefix string, logger *slog.Logger) ([]cluster.MemberStatus, error) {
	if prefix == "" {
		prefix = "aviary."
	}
	c, err := adminClient(ctx, cc, logger)
	if err != nil {
		return nil, err
	}
	defer c.Shutdown(context.Background())
	m, err := c.GetMap(ctx, prefix+"members")
	if err != nil {
		return nil, err
	}
	entries, err := m.GetEntrySet(ctx)
	if err != nil {
		return nil, err
	}
	var out []cluster.MemberStatus
	for _, e := range entries {
		var mr memberRecord
		if fromValue(e.Value, &mr) != nil {
			continue
		}
		out = append(out, cluster.MemberStatus{Member: mr.Member, Inc: mr.Inc, Clustered: mr.Clustered})
	}
	ms := make([]cluster.Member, len(out))
	for i := range out {
		ms[i] = out[i].Member
	}
	sortMembers(ms)
	sorted := make([]cluster.MemberStatus, 0, len(out))
	for _, m := range ms {
		for _, s := range out {
			if s.Name == m.Name {
				sorted = append(sorted, s)
				break
			}
		}
	}
	if len(sorted) > 0 {
		sorted[0].Senior = true
	}
	return sorted, nil
}

// PublishSwitch tells running nodes to re-read the switch now, over the
// Hazelcast topic Prefix+"switch", from outside a node (`aviary cluster
// enable`; a running node uses Cluster.AnnounceSwitch). It is only a hint:
// each node reads the value from storage, so a lost or forged message
// changes nothing.
func PublishSwitch(ctx context.Context, cc conf.ClusterConfig, prefix string, enabled bool, logger *slog.Logger) error {
	if prefix == "" {
		prefix = "aviary."
	}
	c, err := adminClient(ctx, cc, logger)
	if err != nil {
		return err
	}
	defer c.Shutdown(context.Background())
	t, err := c.GetTopic(ctx, prefix+"switch")
	if err != nil {
		return err
	}
	return t.Publish(ctx, strconv.FormatBool(enabled))
}
