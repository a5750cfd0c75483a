// Package pluginhost keeps a node's third-party (WebAssembly) plugins in
// step with the shared catalogue, and runs rolling upgrades through the
// cluster.
//
// The catalogue (storage.PluginCatalogue, in the shared database) is the
// truth: for each plugin it names the enabled version, and every node runs
// exactly that. A node reconciles with it (reconcile.go) when it starts,
// when the catalogue changes (SetEnabled, Delete and the end of an upgrade
// write the property CatalogueProperty, which PostgreSQL notifies to every
// node, clustered or not), when an operator's change asks every node over
// the node links ("plugin.sync", so the API can answer with what each node
// did), when the node rejoins the cluster, and every ReconcileEvery as a
// safety net. Events are only nudges: a node that missed them (down,
// clustering off, its database connection lost) converges at the next.
//
// What each node runs it reports in the catalogue's node table: loaded,
// failed (with the error; the node runs nothing of that plugin), disabled
// (the node switched it off after repeated failures) or unloaded. The
// console and the API show those reports for the live nodes.
//
// A rolling upgrade (upgrade.go) is coordinated by the senior node: one
// node at a time loads the new version, which is then watched on real
// stanzas for a window (failures, traps, timeouts); an unhealthy node
// stops the rollout and every upgraded node goes back to the version it
// ran. Only when every node is healthy does the catalogue enable the new
// version. While it runs, nodes leave that plugin to the coordinator.
// Progress is kept in the shared properties so any node's console shows it.
//
// The three upgrade paths operators know from Openfire map onto this:
//   - rolling, online: StartUpgrade;
//   - all nodes down: enable the new version in the catalogue (aviary
//     plugin enable NAME VERSION --config ...); nodes load it when they start;
//   - clustering disabled: enable the new version; every node follows the
//     catalogue through the database, not through the cluster.
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
	kindSync    = "plugin.sync"
	kindHealth  = "plugin.health"
	statusKey   = "plugins.upgrade.status"
)

// What a node reports it runs (storage.NodePlugin.State).
const (
	StateLoaded   = "loaded"   // running Version
	StateFailed   = "failed"   // Version did not load; nothing of the plugin runs
	StateDisabled = "disabled" // the node switched Version off after repeated failures
	StateUnloaded = "unloaded" // not running
)

// Errors.
var (
	ErrUpgradeRunning = errors.New("pluginhost: a rolling upgrade is already running")
	ErrChecksum       = errors.New("pluginhost: artifact checksum does not match the catalogue")
	// ErrInUse means a plugin version is enabled or runs on a node.
	ErrInUse = errors.New("pluginhost: plugin in use")
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
	// StepTimeout bounds one node's upgrade step and its answer to a
	// sync. Default 30s.
	StepTimeout time.Duration
	// Rollout judges each node during a rolling upgrade.
	Rollout Rollout
	// ReconcileEvery is how often the node compares what it runs with
	// the catalogue without being told to. Default 30s.
	ReconcileEvery time.Duration
	// HealthCheck, when set, runs on a node after it loaded a plugin; an
	// error fails the step (tests use it to inject failures).
	HealthCheck func(ctx context.Context, name, version string) error
}

// failure is a version that failed to load, and when.
type failure struct {
	version string
	at      time.Time
}

// retryFailedEvery is how often the periodic reconciliation tries again a
// version that failed to load (a nudge always does): often enough that a
// passing cause (the database unreachable) heals by itself, not so often
// that a broken artifact is compiled and logged every pass.
const retryFailedEvery = 5 * time.Minute

// Host is one node's plugin host.
type Host struct {
	o   Options
	log *slog.Logger

	// applyMu makes loads, unloads and reconciliations of this node
	// one at a time, so the catalogue and a rolling upgrade's steps
	// never interleave on one plugin.
	applyMu sync.Mutex

	mu     sync.Mutex
	loaded map[string]*runtime.Plugin    // by catalogue name
	states map[string]storage.NodePlugin // what this node last reported, by name
	failed map[string]failure            // by name: the last failed load, until one succeeds

	upMu    sync.Mutex // one rolling upgrade at a time on the coordinator
	running bool

	kick chan struct{} // asks the reconcile loop for a pass
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New returns a Host; call Start.
func New(o Options) *Host {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 30 * time.Second
	}
	if o.ReconcileEvery <= 0 {
		o.ReconcileEvery = 30 * time.Second
	}
	o.Rollout.defaults()
	h := &Host{o: o, log: o.Logger.With("component", "pluginhost", "node", o.Cluster.NodeName()),
		loaded: map[string]*runtime.Plugin{}, states: map[string]storage.NodePlugin{}, failed: map[string]failure{},
		kick: make(chan struct{}, 1)}
	o.Cluster.Handle(kindApply, h.handleApply)
	o.Cluster.Handle(kindUpgrade, h.handleUpgrade)
	o.Cluster.Handle(kindSync, h.handleSync)
	o.Cluster.Handle(kindHealth, h.handleHealth)
	o.Cluster.OnClusteredChange(func(clustered bool) {
		if clustered {
			h.nudge() // back in the cluster: it may have missed changes
		}
	})
	return h
}

// Start brings the node in line with the catalogue (a plugin that fails
// to load is logged and reported as failed; the node starts anyway) and
// starts following it.
func (h *Host) Start(ctx context.Context) error {
	if err := h.Reconcile(ctx, true); err != nil {
		return fmt.Errorf("pluginhost: reading the catalogue: %w", err)
	}
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.stop = stop
	if pl, ok := h.o.Store.(storage.PropertyListener); ok {
		h.wg.Go(func() {
			first := true
			pl.ListenProperty(lctx, CatalogueProperty, func(string) {
				if first { // the value at the time it listens: Start just reconciled
					first = false
					return
				}
				h.nudge()
			})
		})
	}
	h.wg.Go(func() { h.reconcileLoop(lctx) })
	return nil
}

// Stop stops following the catalogue and unloads every plugin, reporting
// them unloaded.
func (h *Host) Stop(ctx context.Context) {
	if h.stop != nil {
		h.stop()
	}
	h.wg.Wait()
	h.applyMu.Lock()
	defer h.applyMu.Unlock()
	h.mu.Lock()
	loaded := h.loaded
	h.loaded = map[string]*runtime.Plugin{}
	h.mu.Unlock()
	for name, p := range loaded {
		h.o.Set.Remove(p.ID())
		_ = p.Stop(ctx)
		h.report(ctx, storage.NodePlugin{Name: name, Version: p.Version(), State: StateUnloaded, Error: "the node stopped"})
	}
}

// Loaded returns name → version of the plugins running on this node
// (a plugin the node disabled after failures included).
func (h *Host) Loaded() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.loaded))
	for n, p := range h.loaded {
		out[n] = p.Version()
	}
	return out
}

// States returns what this node last reported for each plugin.
func (h *Host) States() []storage.NodePlugin {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]storage.NodePlugin, 0, len(h.states))
	for _, np := range h.states {
		out = append(out, np)
	}
	sortReports(out)
	return out
}

// report records what this node runs of a plugin, in memory and in the
// catalogue's node table.
func (h *Host) report(ctx context.Context, np storage.NodePlugin) {
	np.Node = h.o.Cluster.NodeName()
	np.Updated = time.Now().UTC()
	h.mu.Lock()
	h.states[np.Name] = np
	h.mu.Unlock()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := h.o.Store.SetNodePlugin(wctx, np); err != nil {
		h.log.Warn("reporting a plugin's state failed; the console may show an old one", "plugin", np.Name, "state", np.State, "err", err)
	}
}

// ApplyLocal makes this node run version of plugin name ("" unloads it).
// The new version is compiled, started and health-checked before it
// replaces the old one, so a bad artifact leaves the old version running.
// Running the same version again reloads it only when the node had
// disabled it after failures.
//
// The catalogue stays the truth: unless a rolling upgrade of the plugin
// is running, the node's next reconciliation moves it back to the
// catalogue's version.
func (h *Host) ApplyLocal(ctx context.Context, name, version string) error {
	h.applyMu.Lock()
	defer h.applyMu.Unlock()
	return h.applyLocked(ctx, name, version)
}

// applyLocked is ApplyLocal with applyMu held.
func (h *Host) applyLocked(ctx context.Context, name, version string) error {
	h.mu.Lock()
	cur := h.loaded[name]
	h.mu.Unlock()
	if version == "" {
		h.mu.Lock()
		delete(h.loaded, name)
		delete(h.failed, name)
		h.mu.Unlock()
		gone := ""
		if cur != nil {
			h.o.Set.Remove(cur.ID())
			_ = cur.Stop(ctx)
			gone = cur.Version()
			h.log.Info("plugin unloaded", "plugin", name, "version", gone)
		}
		h.report(ctx, storage.NodePlugin{Name: name, Version: gone, State: StateUnloaded})
		return nil
	}
	if cur != nil && cur.Version() == version && !cur.Disabled() {
		h.mu.Lock()
		st, ok := h.states[name]
		h.mu.Unlock()
		if !ok || st.State != StateLoaded || st.Version != version || st.Error != "" {
			h.report(ctx, storage.NodePlugin{Name: name, Version: version, State: StateLoaded})
		}
		return nil
	}
	p, err := h.load(ctx, name, version)
	if err != nil {
		h.loadFailed(ctx, name, version, cur, err)
		return err
	}
	old := h.o.Set.Swap(p)
	h.mu.Lock()
	h.loaded[name] = p
	delete(h.failed, name)
	h.mu.Unlock()
	if prev, ok := old.(*runtime.Plugin); ok {
		_ = prev.Retire(ctx, p)
	} else if old != nil {
		_ = old.Stop(ctx)
	}
	h.report(ctx, storage.NodePlugin{Name: name, Version: version, State: StateLoaded})
	h.log.Info("plugin loaded", "plugin", name, "version", version, "replaced", old != nil)
	return nil
}

// load reads, verifies, compiles, starts and checks one version; on error
// nothing of it runs.
func (h *Host) load(ctx context.Context, name, version string) (*runtime.Plugin, error) {
	rec, err := h.o.Store.GetPlugin(ctx, name, version)
	if err != nil {
		return nil, fmt.Errorf("pluginhost: %s %s: %w", name, version, err)
	}
	if runtime.Checksum(rec.Artifact) != rec.Checksum {
		return nil, ErrChecksum
	}
	p, err := h.o.Runtime.Load(ctx, name, version, rec.Artifact)
	if err != nil {
		return nil, err
	}
	p.OnDisable(func(reason string) { h.disabledItself(name, p, reason) })
	if err := p.Start(ctx, plugins.HostFor(h.o.PluginHost, p)); err != nil {
		_ = p.Stop(ctx)
		return nil, err
	}
	if h.o.HealthCheck != nil {
		if err := h.o.HealthCheck(ctx, name, version); err != nil {
			_ = p.Stop(ctx)
			return nil, fmt.Errorf("pluginhost: health check of %s %s: %w", name, version, err)
		}
	}
	return p, nil
}

// loadFailed logs and reports a failed load. When an earlier version
// still runs, the report says so: the node runs that one, and the error
// tells which load failed.
func (h *Host) loadFailed(ctx context.Context, name, version string, cur *runtime.Plugin, err error) {
	h.mu.Lock()
	h.failed[name] = failure{version: version, at: time.Now()}
	h.mu.Unlock()
	if cur != nil && !cur.Disabled() {
		h.log.Error("plugin version failed to load; the node keeps the running one", "plugin", name, "version", version, "running", cur.Version(), "err", err)
		h.report(ctx, storage.NodePlugin{Name: name, Version: cur.Version(), State: StateLoaded,
			Error: fmt.Sprintf("loading %s failed: %s", version, firstLine(err.Error()))})
		return
	}
	h.log.Error("plugin failed to load; the node runs without it", "plugin", name, "version", version, "err", err)
	state := StateFailed
	if cur != nil { // disabled after failures, and its replacement did not load
		state = StateDisabled
		version = cur.Version()
	}
	h.report(ctx, storage.NodePlugin{Name: name, Version: version, State: state, Error: firstLine(err.Error())})
}

// disabledItself reports a plugin the runtime switched off after
// repeated failures: it stays loaded and passes stanzas through until an
// operator enables it again or another version replaces it.
func (h *Host) disabledItself(name string, p *runtime.Plugin, reason string) {
	h.mu.Lock()
	current := h.loaded[name] == p
	h.mu.Unlock()
	if !current {
		return
	}
	h.log.Error("plugin disabled on this node after repeated failures; enable it again or roll another version", "plugin", name, "version", p.Version(), "reason", reason)
	h.report(context.Background(), storage.NodePlugin{Name: name, Version: p.Version(), State: StateDisabled, Error: reason})
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
