package hazelcast

import (
	"context"
	"strconv"

	"github.com/aviary-im/aviary/cluster"
)

var _ cluster.SwitchAnnouncer = (*Cluster)(nil)

// AnnounceSwitch tells every running node to re-read the cluster-wide
// switch now, over the Hazelcast topic Prefix+"switch" (call it after
// cluster.WriteSwitch). It is only a hint: each node reads the value
// from storage, so a lost or forged message changes nothing.
func (c *Cluster) AnnounceSwitch(ctx context.Context, enabled bool) error {
	o := c.objs()
	if o == nil {
		return errNoClient
	}
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	return o.topic.Publish(octx, strconv.FormatBool(enabled))
}
