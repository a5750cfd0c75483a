package server

import (
	"context"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins/mam"
)

// choreInterval is how often the senior node runs the cluster-wide chores.
const choreInterval = time.Hour

// chores runs the cluster-wide housekeeping on whichever node is senior
// (on one node, always that node): today, expiring offline messages older
// than c2s.offline_expiry and archived messages older than
// mam.expire_after or their room's own retention. Every node runs the
// loop; only the senior acts, so when the senior dies the next-oldest
// node takes over at its next tick.
type chores struct {
	interval time.Duration
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func (c *chores) Name() string { return "chores" }

func (c *chores) Start(ctx context.Context, n *Node) error {
	ctx, c.stop = context.WithCancel(context.WithoutCancel(ctx))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.interval)
		defer t.Stop()
		for {
			c.runOnce(ctx, n)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

func (c *chores) runOnce(ctx context.Context, n *Node) {
	if !n.Cluster().Senior() {
		return
	}
	c.expireOffline(ctx, n)
	c.expireArchive(ctx, n)
}

func (c *chores) expireOffline(ctx context.Context, n *Node) {
	expiry := n.Config().C2S.OfflineExpiry
	if expiry <= 0 {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	removed, err := n.Store().ExpireOffline(dctx, time.Now().Add(-expiry))
	switch {
	case err != nil:
		n.Logger().Warn("chores: expiring offline messages failed", "err", err)
	case removed > 0:
		n.Logger().Info("chores: expired offline messages", "removed", removed, "older_than", expiry)
	}
}

// expireArchive deletes archived messages older than mam.expire_after, of
// every account and room, in one statement (an ID range: the IDs are
// time-ordered), and each room's older than the room's own retention
// when that is shorter (mam.Expire asks the running plugins that keep
// archives with a retention of their own: group chat).
func (c *chores) expireArchive(ctx context.Context, n *Node) {
	expiry := n.Config().MAM.ExpireAfter
	rs := mam.RetentionOf(n.Plugins())
	if expiry <= 0 && len(rs) == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	removed, err := mam.Expire(dctx, n.Store().Archive(mam.Store), expiry, time.Now(), rs)
	if removed > 0 {
		n.Logger().Info("chores: expired archived messages", "removed", removed, "older_than", expiry)
	}
	if err != nil {
		n.Logger().Warn("chores: expiring archived messages failed", "err", err)
	}
}

func (c *chores) Stop(ctx context.Context) error {
	if c.stop != nil {
		c.stop()
	}
	c.wg.Wait()
	return nil
}
