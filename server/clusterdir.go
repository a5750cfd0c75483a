package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/conf"
)

// What `aviary cluster` does without a running node. The admin packages
// reach the cluster's shared member directory through these, so that
// only the node's core (package server) knows which implementation a
// configuration names (Hazelcast stays inside cluster/hazelcast).

// ErrNoDirectory means the configuration names no shared member
// directory (cluster.hazelcast is empty).
var ErrNoDirectory = errors.New("server: no Hazelcast addresses (cluster.hazelcast)")

// ClusterMembers lists the live members of the cluster cc names, whatever
// their switch, oldest first, without joining it. prefix is the
// Hazelcast object prefix ("" for the default).
func ClusterMembers(ctx context.Context, cc conf.ClusterConfig, prefix string, log *slog.Logger) ([]cluster.MemberStatus, error) {
	if len(cc.Hazelcast) == 0 {
		return nil, ErrNoDirectory
	}
	return hazelcast.ReadMembers(ctx, cc, prefix, log)
}

// AnnounceClusterSwitch asks the running nodes of the cluster cc names to
// re-read the switch now (call it after cluster.WriteSwitch). It is only
// a hint: nodes follow storage within seconds anyway.
func AnnounceClusterSwitch(ctx context.Context, cc conf.ClusterConfig, prefix string, enabled bool, log *slog.Logger) error {
	if len(cc.Hazelcast) == 0 {
		return ErrNoDirectory
	}
	return hazelcast.PublishSwitch(ctx, cc, prefix, enabled, log)
}
