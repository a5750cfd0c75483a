package server

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/nodelog"
)

// LiveConfig is the node's configuration as it is now: the one it started
// with, plus the live settings changed since (ChangeLive). The plugins'
// Host.Config reads it, so a change reaches in-band registration at its
// next request.
func (n *Node) LiveConfig() *conf.Config {
	if c := n.live.Load(); c != nil {
		return c
	}
	return n.cfg
}

// ChangeLive changes conf.Live keys while the node runs (key → value as
// conf.Config.Set reads it) and returns the keys whose value changed. It
// builds and checks the new configuration first and swaps it in only when
// every change can apply; on any error the node keeps running as it was.
// Changes are serialized; an unchanged value is a no-op. check, when not
// nil, runs first on the configuration as it is (the admin API compares
// its ETag there): its error refuses the change.
func (n *Node) ChangeLive(changes map[string]string, check func(cur *conf.Config) error) ([]string, error) {
	n.liveMu.Lock()
	defer n.liveMu.Unlock()
	cur := n.LiveConfig()
	if check != nil {
		if err := check(cur); err != nil {
			return nil, err
		}
	}
	next, err := cur.WithLive(changes)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, k := range conf.Live {
		a, _ := cur.Get(k)
		b, _ := next.Get(k)
		if a != b {
			changed = append(changed, k)
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	var level *slog.LevelVar
	if slices.Contains(changed, "log_level") {
		if level = nodelog.LevelOf(n.log.Handler()); level == nil {
			return nil, &conf.Error{Key: "log_level", Msg: "cannot change on this node: its logger is not the one aviary serve builds"}
		}
	}
	// Nothing below can fail.
	if level != nil {
		var l slog.Level
		if err := l.UnmarshalText([]byte(next.LogLevel)); err != nil {
			return nil, fmt.Errorf("server: log_level %q: %w", next.LogLevel, err)
		}
		level.Set(l)
	}
	n.live.Store(next)
	n.log.Info("live settings changed", "keys", changed)
	return changed, nil
}
