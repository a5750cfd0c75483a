package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
)

// kindPluginEvent carries plugins.Host.Broadcast between nodes: the
// event name, a newline, then the plugin's bytes. The receiver runs the
// event's hooks before it answers, so a Broadcast that returns nil means
// every node has applied it.
const kindPluginEvent = "plugin.event"

var errBadPluginEvent = errors.New("server: malformed plugin event from another node")

// pluginEvents sends and receives plugin events over the node links.
type pluginEvents struct {
	cluster cluster.Cluster
	hooks   *plugins.Hooks
	timeout time.Duration // per node: cluster.operation_timeout
}

// register installs the receiving handler; call before Cluster.Start.
func (e *pluginEvents) register() { e.cluster.Handle(kindPluginEvent, e.handle) }

func (e *pluginEvents) handle(ctx context.Context, fromNode string, payload []byte) ([]byte, error) {
	i := bytes.IndexByte(payload, '\n')
	if i <= 0 {
		return nil, errBadPluginEvent
	}
	ev := plugins.Event(payload[:i])
	data := bytes.Clone(payload[i+1:])
	if err := e.hooks.Run(ctx, ev, &plugins.ClusterEvent{Node: fromNode, Data: data}); err != nil {
		return nil, fmt.Errorf("server: plugin event %s: %w", ev, err)
	}
	return nil, nil
}

// broadcast calls every other member in parallel and waits for each.
// Members lists only this node when it is not clustered (cluster/local,
// the switch off): then there is no one to tell.
func (e *pluginEvents) broadcast(ctx context.Context, ev plugins.Event, data []byte) error {
	members, err := e.cluster.Members(ctx)
	if err != nil {
		return fmt.Errorf("server: broadcast %s: %w", ev, err)
	}
	payload := make([]byte, 0, len(ev)+1+len(data))
	payload = append(append(append(payload, ev...), '\n'), data...)
	self := e.cluster.NodeName()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, m := range members {
		if m.Name == self {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, e.timeout)
			defer cancel()
			if _, err := e.cluster.Call(cctx, m.Name, kindPluginEvent, payload); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %s: %w", m.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("server: broadcast %s: %w", ev, errors.Join(errs...))
	}
	return nil
}
