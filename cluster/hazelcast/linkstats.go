package hazelcast

import "github.com/aviary-im/aviary/cluster/link"

// LinkStats returns the counters of this node's links to the other nodes
// (frames and bytes each way, send failures), for metrics.
func (c *Cluster) LinkStats() link.Stats { return c.links.Stats() }
