package balance

import (
	"time"

	"github.com/aviary-im/aviary/conf"
)

// Config is what the balancing service reads of the node's configuration:
// the balance section and the few keys of other sections it depends on.
type Config struct {
	// Balance is the balance section.
	Balance conf.BalanceConfig
	// MaxSessions is c2s.max_sessions, the capacity the load is a share
	// of (Balance.Capacity when it is 0).
	MaxSessions int
	// NodeTTL is cluster.node_ttl: a member whose figures are older is
	// not named.
	NodeTTL time.Duration
	// OperationTimeout is cluster.operation_timeout, the bound on a
	// publish or fetch of the members' figures.
	OperationTimeout time.Duration
	// Advertise is cluster.advertise, whose host replaces a wildcard
	// listener address in what the node publishes.
	Advertise string
}

// ConfigFrom takes the balancing service's part of a node's configuration.
func ConfigFrom(cfg *conf.Config) Config {
	return Config{
		Balance:          cfg.Balance,
		MaxSessions:      cfg.C2S.MaxSessions,
		NodeTTL:          cfg.Cluster.NodeTTL,
		OperationTimeout: cfg.Cluster.OperationTimeout,
		Advertise:        cfg.Cluster.Advertise,
	}
}
