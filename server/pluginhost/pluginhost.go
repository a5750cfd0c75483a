// Package pluginhost keeps a node's third-party (WebAssembly) plugins in
// step with the shared catalogue, and runs rolling upgrades through the
// cluster.
//
// On every node it loads, at start, the enabled version of each catalogue
// plugin, and answers "plugin.apply" messages by loading a given version
// (checksum verified), swapping it in atomically, and stopping the old one:
// sessions never notice. The senior node coordinates a rolling upgrade:
// one node at a time, each confirmed loaded and healthy before the next;
// on a failure it stops and rolls the upgraded nodes back. Progress is kept
// in the shared properties so any node's console shows it.
//
// The three upgrade paths operators know from Openfire map onto this:
//   - rolling, online: StartUpgrade;
//   - all nodes down: enable the new version in the catalogue (aviary plugin
//     enable NAME VERSION); nodes load it when they start;
//   - clustering disabled, each node upgraded, clustering enabled: with the
//     switch off, ApplyLocal on each node (aviary plugin apply --node URL).
//
// Service runs the WebAssembly runtime and the Host as one of the node's
// services (server/assembly starts it before the admin console, which
// shows and drives it, and whether or not the console listens).
package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/storage"
)

// Message kinds on the node links.
const (
	kindApply   = "plugin.apply"
	kindUpgrade = "plugin.upgrade"
	statusKey   = "plugins.upgrade.status"
)

// Errors.
var (
	ErrUpgradeRunning = errors.New("pluginhost: a rolling upgrade is already running")
	ErrChecksum       = errors.New("pluginhost: artifact checksum does not match the catalogue")
)

// Set is the node's live plugin set (plugins.Manager implements it).
type Set interface {
	// Swap installs an already started plugin, atomically replacing the
	// plugin with the same ID, and returns the replaced one (nil if none).
	Swap(p plugins.Plugin) (old plugins.Plugin)
	// Remove takes the plugin with that ID out and returns it.
	Remove(id string) (old plugins.Plugin)
}

// Store is what pluginhost needs from storage.
type Store interface {
	storage.PluginCatalogue
	storage.Properties
}

// Options build a Host.
type Options struct {
	Store   Store
	Cluster cluster.Cluster
	Runtime *runtime.Runtime
	Set     Set
	// PluginHost is what started plugins get (the node's plugins.Host).
	PluginHost plugins.Host
	Logger     *slog.Logger
	// StepTimeout bounds one node's upgrade step. Default 30s.
	StepTimeout time.Duration
	// HealthCheck, when set, runs on a node after it loaded a plugin; an
	// error fails the step (tests use it to inject failures).
	HealthCheck func(ctx context.Context, name, version string) error
}

// Host is one node's plugin host.
type Host struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex
	loaded map[string]*runtime.Plugin // by catalogue name

	upMu    sync.Mutex // one rolling upgrade at a time on the coordinator
	running bool
}

// New returns a Host; call Start.
func New(o Options) *Host {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 30 * time.Second
	}
	h := &Host{o: o, log: o.Logger.With("component", "pluginhost"), loaded: map[string]*runtime.Plugin{}}
	o.Cluster.Handle(kindApply, h.handleApply)
	o.Cluster.Handle(kindUpgrade, h.handleUpgrade)
	return h
}

// Start loads the enabled version of every catalogue plugin. A plugin that
// fails to load is logged and reported; the node starts anyway.
func (h *Host) Start(ctx context.Context) error {
	recs, err := h.o.Store.ListPlugins(ctx)
	if err != nil {
		return fmt.Errorf("pluginhost: reading the catalogue: %w", err)
	}
	for _, r := range recs {
		if !r.Enabled {
			continue
		}
		if err := h.ApplyLocal(ctx, r.Name, r.Version); err != nil {
			h.log.Error("plugin failed to load at start", "plugin", r.Name, "version", r.Version, "err", err)
		}
	}
	return nil
}

// Stop unloads every plugin.
func (h *Host) Stop(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, p := range h.loaded {
		h.o.Set.Remove(p.ID())
		_ = p.Stop(ctx)
		delete(h.loaded, name)
	}
}

// Loaded returns name → version of the plugins running on this node.
func (h *Host) Loaded() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.loaded))
	for n, p := range h.loaded {
		out[n] = p.Version()
	}
	return out
}

// ApplyLocal makes this node run version of plugin name ("" unloads it).
// The new version is compiled, started and health-checked before it
// replaces the old one, so a bad artifact leaves the old version running.
func (h *Host) ApplyLocal(ctx context.Context, name, version string) error {
	node := h.o.Cluster.NodeName()
	report := func(v, state string) {
		_ = h.o.Store.SetNodePlugin(ctx, storage.NodePlugin{Node: node, Name: name, Version: v, State: state, Updated: time.Now().UTC()})
	}
	if version == "" {
		h.mu.Lock()
		old := h.loaded[name]
		delete(h.loaded, name)
		h.mu.Unlock()
		if old != nil {
			h.o.Set.Remove(old.ID())
			_ = old.Stop(ctx)
		}
		report("", "unloaded")
		return nil
	}
	h.mu.Lock()
	cur := h.loaded[name]
	h.mu.Unlock()
	if cur != nil && cur.Version() == version {
		report(version, "loaded")
		return nil
	}
	rec, err := h.o.Store.GetPlugin(ctx, name, version)
	if err != nil {
		return fmt.Errorf("pluginhost: %s %s: %w", name, version, err)
	}
	if runtime.Checksum(rec.Artifact) != rec.Checksum {
		report(version, "failed")
		return ErrChecksum
	}
	p, err := h.o.Runtime.Load(ctx, name, version, rec.Artifact)
	if err != nil {
		report(version, "failed")
		return err
	}
	if err := p.Start(ctx, h.o.PluginHost); err != nil {
		_ = p.Stop(ctx)
		report(version, "failed")
		return err
	}
	if h.o.HealthCheck != nil {
		if err := h.o.HealthCheck(ctx, name, version); err != nil {
			_ = p.Stop(ctx)
			report(version, "failed")
			return fmt.Errorf("pluginhost: health check of %s %s: %w", name, version, err)
		}
	}
	old := h.o.Set.Swap(p)
	h.mu.Lock()
	h.loaded[name] = p
	h.mu.Unlock()
	if prev, ok := old.(*runtime.Plugin); ok {
		_ = prev.Retire(ctx, p)
	} else if old != nil {
		_ = old.Stop(ctx)
	}
	report(version, "loaded")
	h.log.Info("plugin loaded", "plugin", name, "version", version, "replaced", old != nil)
	return nil
}

type applyRequest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type applyReply struct {
	Version string `json:"version"`
	Error   string `json:"error,omitempty"`
}

func (h *Host) handleApply(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var req applyRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	rep := applyReply{Version: req.Version}
	if err := h.ApplyLocal(ctx, req.Name, req.Version); err != nil {
		rep.Error = err.Error()
	}
	return json.Marshal(rep)
}

// applyOn runs ApplyLocal on a node, locally or over its link.
func (h *Host) applyOn(ctx context.Context, node, name, version string) error {
	ctx, cancel := context.WithTimeout(ctx, h.o.StepTimeout)
	defer cancel()
	if node == h.o.Cluster.NodeName() {
		return h.ApplyLocal(ctx, name, version)
	}
	return h.callNode(ctx, node, kindApply, name, version)
}

// callNode sends a plugin request to another node and returns the error it
// reports.
func (h *Host) callNode(ctx context.Context, node, kind, name, version string) error {
	payload, _ := json.Marshal(applyRequest{Name: name, Version: version})
	raw, err := h.o.Cluster.Call(ctx, node, kind, payload)
	if err != nil {
		return err
	}
	var rep applyReply
	if err := json.Unmarshal(raw, &rep); err != nil {
		return err
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}

// Validate checks that an artifact compiles as a plugin with the ABI's
// exports, without running it: uploads are refused early, not at upgrade.
func (h *Host) Validate(ctx context.Context, name, version string, artifact []byte) error {
	return runtime.Validate(ctx, artifact)
}

// PluginStats are one loaded plugin's counters.
type PluginStats struct {
	Name, Version   string
	Calls, Failures int64
	Disabled        bool
	// Refused counts host calls refused past a per-stanza bound, by
	// bound ("calls", "bytes", "stanza", "kv").
	Refused map[string]int64
}

// Stats returns the counters of every loaded plugin, for metrics.
func (h *Host) Stats() []PluginStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]PluginStats, 0, len(h.loaded))
	for name, p := range h.loaded {
		calls, fails := p.Stats()
		out = append(out, PluginStats{Name: name, Version: p.Version(), Calls: calls, Failures: fails, Disabled: p.Disabled(), Refused: p.Refused()})
	}
	return out
}

// SetEnabled enables one version of a plugin in the catalogue, disabling
// its other versions so exactly one is what nodes load at start, or
// disables it. The console, the API and the offline CLI all use it.
func SetEnabled(ctx context.Context, store storage.PluginCatalogue, name, version string, on bool) error {
	if _, err := store.GetPlugin(ctx, name, version); err != nil {
		return err
	}
	if on {
		recs, err := store.ListPlugins(ctx)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Name == name && r.Version != version && r.Enabled {
				if err := store.SetPluginEnabled(ctx, name, r.Version, false); err != nil {
					return err
				}
			}
		}
	}
	return store.SetPluginEnabled(ctx, name, version, on)
}
