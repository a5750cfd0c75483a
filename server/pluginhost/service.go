package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/server"
)

// Service runs a node's third-party plugins: the WebAssembly runtime that
// compiles and sandboxes them, and the Host that loads the catalogue's
// enabled versions and follows rolling upgrades. It is a server.Service,
// started after the core (it needs the store, the cluster and the plugin
// set) and before the admin console, which shows and drives it; it runs
// whether or not the console listens.
type Service struct {
	cfg            conf.PluginsConfig
	maxStanzaBytes int
	log            *slog.Logger

	mu   sync.Mutex
	rt   *runtime.Runtime
	host *Host
}

var _ server.Service = (*Service)(nil)

// NewService returns the plugin service for the plugins section of the
// configuration; maxStanzaBytes is c2s.max_stanza_bytes, the most a
// plugin may send or put in place of a stanza.
func NewService(cfg conf.PluginsConfig, maxStanzaBytes int, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{cfg: cfg, maxStanzaBytes: maxStanzaBytes, log: log}
}

// Name is "plugins".
func (s *Service) Name() string { return "plugins" }

// Start starts the runtime and loads the catalogue's enabled plugins (one
// that fails to load is logged; the node starts anyway).
func (s *Service) Start(ctx context.Context, n *server.Node) error {
	w := s.cfg.Wasm
	ro := runtime.Options{
		MaxHostCalls: w.MaxHostCalls, MaxHostBytes: w.MaxHostBytes, MaxKVBytes: w.MaxKVBytes,
		MaxStanzaBytes: s.maxStanzaBytes,
		CacheDir:       filepath.Join(s.cfg.Dir, "compiled"),
		Logger:         s.log.With("component", "plugins", "node", n.Cluster().NodeName()),
	}
	rt, err := runtime.New(ctx, ro)
	if err != nil {
		// A cache directory the node cannot write costs time, not
		// plugins: compile in memory.
		ro.Logger.Warn("plugin compilation cache unusable; plugins are compiled at every start (plugins.dir)", "dir", ro.CacheDir, "err", err)
		ro.CacheDir = ""
		if rt, err = runtime.New(ctx, ro); err != nil {
			return fmt.Errorf("pluginhost: plugin runtime: %w", err)
		}
	}
	r := s.cfg.Rollout
	h := New(Options{
		Store: n.Store(), Cluster: n.Cluster(), Runtime: rt, Set: n.Plugins(),
		PluginHost: n.PluginHost(), Logger: s.log,
		Rollout: Rollout{Window: r.HealthWindow, MaxFailures: r.MaxFailures, MaxFailureRatio: r.MaxFailureRatio},
	})
	if err := h.Start(ctx); err != nil {
		rt.Close(ctx)
		return err
	}
	s.mu.Lock()
	s.rt, s.host = rt, h
	s.mu.Unlock()
	return nil
}

// Stop unloads the plugins and closes the runtime.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	h, rt := s.host, s.rt
	s.host, s.rt = nil, nil
	s.mu.Unlock()
	var errs []error
	if h != nil {
		h.Stop(ctx)
	}
	if rt != nil {
		errs = append(errs, rt.Close(ctx))
	}
	return errors.Join(errs...)
}

// Host returns the running plugin host (nil before Start and after Stop).
func (s *Service) Host() *Host {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}
