package hazelcast

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// ParseSwitch reads a switch value: true/on/yes/1 or false/off/no/0.
func ParseSwitch(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "yes", "1", "enabled":
		return true, nil
	case "false", "off", "no", "0", "disabled":
		return false, nil
	}
	return false, fmt.Errorf("cluster/hazelcast: %s=%q is neither true nor false", SwitchProperty, v)
}

// ReadSwitch returns the cluster-wide switch from storage; unset means on.
func ReadSwitch(ctx context.Context, props storage.Properties) (bool, error) {
	v, err := props.GetProperty(ctx, SwitchProperty)
	if errors.Is(err, storage.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return ParseSwitch(v)
}

func (c *Cluster) readSwitch(ctx context.Context) (bool, error) {
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	return ReadSwitch(octx, c.o.Properties)
}

// recheckSwitch asks the switch loop to re-read storage now (a NOTIFY or
// a topic message arrived). Storage stays the only source of truth.
func (c *Cluster) recheckSwitch() {
	select {
	case c.switchKick <- struct{}{}:
	default:
	}
}

func (c *Cluster) switchLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.stop
		cancel()
	}()
	if pl, ok := c.o.Properties.(storage.PropertyListener); ok {
		// The pushed value is only a hint: storage is re-read below, so
		// every path (push, topic, poll) applies the same way.
		c.goFunc(func() { pl.ListenProperty(ctx, SwitchProperty, func(string) { c.recheckSwitch() }) })
	}
	t := time.NewTicker(c.o.SwitchPoll)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.switchKick:
		}
		v, err := c.readSwitch(ctx)
		if err != nil {
			c.log.Warn("cluster switch unreadable; keeping the current state", "err", err)
			continue
		}
		if c.enabled.Swap(v) != v {
			c.log.Info("cluster switch changed", "enabled", v)
			c.wake()
		}
	}
}
