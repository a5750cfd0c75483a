package hazelcast

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	hz "github.com/hazelcast/hazelcast-go-client"
	"github.com/hazelcast/hazelcast-go-client/logger"
	"github.com/hazelcast/hazelcast-go-client/types"
)

var errNoClient = errors.New("cluster/hazelcast: not connected to Hazelcast")

// hzObjs is one Hazelcast client and the objects this package uses.
type hzObjs struct {
	client  *hz.Client
	members *hz.Map // name → memberRecord JSON, with TTL
	routes  *hz.Map // full JID → routeRecord JSON
	down    *hz.Map // incarnation → JSON []Route, the dead node's routes
	topic   *hz.Topic
}

func (c *Cluster) objs() *hzObjs {
	c.hzMu.Lock()
	defer c.hzMu.Unlock()
	return c.hzObjs
}

// clientConfig builds the Hazelcast client configuration: the JSON file
// from cluster.hazelcast_config_file first, then our settings on top.
func (c *Cluster) clientConfig() (hz.Config, error) {
	var hc hz.Config
	if f := c.cc.HazelcastConfigFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return hc, fmt.Errorf("cluster/hazelcast: config file: %w", err)
		}
		if err := json.Unmarshal(b, &hc); err != nil {
			return hc, fmt.Errorf("cluster/hazelcast: config file %s: %w", f, err)
		}
	}
	hc.ClientName = "aviary-" + c.name
	hc.Cluster.Name = c.cc.HazelcastClusterName
	hc.Cluster.Network.SetAddresses(c.cc.Hazelcast...)
	if hc.Cluster.Network.ConnectionTimeout == 0 {
		hc.Cluster.Network.ConnectionTimeout = types.Duration(c.cc.OperationTimeout)
	}
	cs := &hc.Cluster.ConnectionStrategy
	cs.ReconnectMode = 0 // on
	cs.Timeout = 0       // keep reconnecting for ever
	if cs.Retry.InitialBackoff == 0 {
		cs.Retry.InitialBackoff = types.Duration(200 * time.Millisecond)
	}
	if cs.Retry.MaxBackoff == 0 {
		cs.Retry.MaxBackoff = types.Duration(2 * time.Second)
	}
	if cs.Retry.Multiplier == 0 {
		cs.Retry.Multiplier = 1.5
	}
	if hc.Cluster.HeartbeatInterval == 0 {
		hc.Cluster.HeartbeatInterval = types.Duration(c.cc.HeartbeatInterval)
	}
	if hc.Cluster.HeartbeatTimeout == 0 {
		hc.Cluster.HeartbeatTimeout = types.Duration(c.cc.NodeTTL)
	}
	if hc.Cluster.InvocationTimeout == 0 {
		hc.Cluster.InvocationTimeout = types.Duration(c.cc.OperationTimeout)
	}
	if hc.Logger.CustomLogger == nil && hc.Logger.Level == "" {
		hc.Logger.CustomLogger = slogBridge{c.log.With("part", "hazelcast")}
	}
	hc.AddLifecycleListener(func(e hz.LifecycleStateChanged) {
		switch e.State {
		case hz.LifecycleStateConnected, hz.LifecycleStateChangedCluster:
			c.hzUp.Store(true)
		case hz.LifecycleStateDisconnected, hz.LifecycleStateShuttingDown, hz.LifecycleStateShutDown:
			c.hzUp.Store(false)
		default:
			return
		}
		c.log.Info("cluster hazelcast state", "state", e.State.String())
		c.wake()
	})
	return hc, nil
}

// connect starts a client, waiting at most timeout for the first
// connection, and installs it.
func (c *Cluster) connect(ctx context.Context, timeout time.Duration) error {
	hc, err := c.clientConfig()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client, err := hz.StartNewClientWithConfig(cctx, hc)
	if err != nil {
		return fmt.Errorf("cluster/hazelcast: connect %v: %w", c.cc.Hazelcast, err)
	}
	o := &hzObjs{client: client}
	octx, cancel2 := c.opCtx(ctx)
	defer cancel2()
	p := c.o.Prefix
	if o.members, err = client.GetMap(octx, p+"members"); err == nil {
		if o.routes, err = client.GetMap(octx, p+"routes"); err == nil {
			if o.down, err = client.GetMap(octx, p+"down"); err == nil {
				o.topic, err = client.GetTopic(octx, p+"switch")
			}
		}
	}
	if err == nil {
		_, err = o.topic.AddMessageListener(octx, func(e *hz.MessagePublished) {
			c.log.Debug("cluster switch hint from topic", "value", e.Value)
			c.sw.Recheck()
		})
	}
	if err != nil {
		_ = client.Shutdown(context.Background())
		return fmt.Errorf("cluster/hazelcast: set up: %w", err)
	}
	c.hzMu.Lock()
	c.hzObjs = o
	c.hzMu.Unlock()
	c.hzUp.Store(client.Running())
	c.log.Info("cluster connected to hazelcast", "addrs", c.cc.Hazelcast)
	return nil
}

// ensureIndexes (re)creates the route indexes; a restarted member lost them.
func (c *Cluster) ensureIndexes(ctx context.Context, o *hzObjs) error {
	for _, attr := range []string{"bare", "inc", "node"} {
		if err := o.routes.AddIndex(ctx, types.IndexConfig{Name: "aviary_" + attr, Attributes: []string{attr}, Type: types.IndexTypeHash}); err != nil {
			return fmt.Errorf("cluster/hazelcast: index %s: %w", attr, err)
		}
	}
	return nil
}

// slogBridge sends the Hazelcast client's warnings and errors to slog, as
// warnings: the client logs every failed reconnect attempt as an error,
// and this package reports what matters itself.
type slogBridge struct{ l *slog.Logger }

func (b slogBridge) Log(w logger.Weight, f func() string) {
	if w <= logger.WeightWarn {
		b.l.Warn(f())
	}
}
