package pluginhost

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// Reconcile brings this node in line with the catalogue: it loads the
// enabled version of every plugin, unloads what is no longer enabled, and
// reports each plugin's state (clearing what an earlier run of the node
// reported and no longer holds). A plugin under a rolling upgrade whose
// coordinator is alive is left alone. retry tries again a version whose
// load failed before; without it (the periodic pass) a version that failed
// within retryFailedEvery is left as reported.
func (h *Host) Reconcile(ctx context.Context, retry bool) error {
	return h.reconcile(ctx, retry, "")
}

// reconcile is Reconcile; revive also reloads plugin revive when the
// node had disabled it after failures (an operator enabled it again).
func (h *Host) reconcile(ctx context.Context, retry bool, revive string) error {
	h.applyMu.Lock()
	defer h.applyMu.Unlock()
	recs, err := h.o.Store.ListPlugins(ctx)
	if err != nil {
		return err
	}
	want := map[string]storage.PluginRecord{} // name → enabled version
	for _, r := range recs {
		if !r.Enabled {
			continue
		}
		if prev, ok := want[r.Name]; ok {
			// SetEnabled keeps one; older catalogues may hold two.
			h.log.Warn("two versions of a plugin are enabled; running the newer upload", "plugin", r.Name, "versions", []string{prev.Version, r.Version})
			if r.Uploaded.Before(prev.Uploaded) {
				continue
			}
		}
		want[r.Name] = r
	}
	skip := h.upgrading(ctx)
	self := h.o.Cluster.NodeName()
	reported := map[string]storage.NodePlugin{} // what the store says this node runs
	if nps, err := h.o.Store.ListNodePlugins(ctx); err == nil {
		for _, np := range nps {
			if np.Node == self {
				reported[np.Name] = np
			}
		}
	}
	names := map[string]bool{}
	for n := range want {
		names[n] = true
	}
	for n := range reported {
		names[n] = true
	}
	h.mu.Lock()
	for n := range h.loaded {
		names[n] = true
	}
	h.mu.Unlock()
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)

	for _, name := range sorted {
		if name == skip {
			continue
		}
		version := want[name].Version
		h.mu.Lock()
		cur, failed := h.loaded[name], h.failed[name]
		recent := failed.version == version && time.Since(failed.at) < retryFailedEvery
		h.mu.Unlock()
		switch {
		case version == "" && cur == nil:
			if np, ok := reported[name]; ok && np.State != StateUnloaded {
				h.report(ctx, storage.NodePlugin{Name: name, Version: np.Version, State: StateUnloaded}) // an earlier run's report
			}
		case version == "":
			_ = h.applyLocked(ctx, name, "")
		case cur != nil && cur.Version() == version && cur.Disabled() && name != revive:
			if np := reported[name]; np.State != StateDisabled || np.Version != version {
				h.report(ctx, storage.NodePlugin{Name: name, Version: version, State: StateDisabled, Error: cur.Health().Reason})
			}
		case !retry && recent && (cur == nil || cur.Version() != version):
			// Failed lately and reported then; a nudge, or a later pass,
			// tries again.
		default:
			_ = h.applyLocked(ctx, name, version) // logs and reports failures itself
		}
	}
	return nil
}

// upgrading returns the plugin a live rolling upgrade is moving, "" when
// none: its coordinator is this node, still running it, or a live member.
// A coordinator that died leaves the plugin to the catalogue again (which
// the upgrade had not changed: nodes go back to the version it enables).
func (h *Host) upgrading(ctx context.Context) string {
	st, err := readStatus(ctx, h.o.Store)
	if err != nil || !st.active() || st.Coordinator == "" {
		return ""
	}
	if st.Coordinator == h.o.Cluster.NodeName() {
		h.upMu.Lock()
		defer h.upMu.Unlock()
		if h.running {
			return st.Plugin
		}
		return ""
	}
	ms, err := h.o.Cluster.Members(ctx)
	if err != nil {
		return st.Plugin // cannot tell: leave it to the coordinator
	}
	for _, m := range ms {
		if m.Name == st.Coordinator {
			return st.Plugin
		}
	}
	return ""
}

// nudge asks the reconcile loop for a pass soon.
func (h *Host) nudge() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// reconcileLoop reconciles when nudged (a catalogue notification, the
// node rejoining the cluster; those retry failed versions) and every
// ReconcileEvery (which does not).
func (h *Host) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(h.o.ReconcileEvery)
	defer t.Stop()
	for {
		retry := false
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
			retry = true
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		if err := h.Reconcile(rctx, retry); err != nil && ctx.Err() == nil {
			h.log.Warn("reading the plugin catalogue failed; the node keeps what it runs", "err", err)
		}
		cancel()
	}
}

// NodeSync is one node's answer to SyncCluster.
type NodeSync struct {
	Node string
	// States are what the node runs after reconciling.
	States []storage.NodePlugin
	// Err is set when the node did not answer (it converges on its own
	// when it next hears from the catalogue) or could not read it.
	Err error
}

type syncRequest struct {
	Revive string `json:"revive,omitempty"`
}

type syncReply struct {
	States []storage.NodePlugin `json:"states"`
	Error  string               `json:"error,omitempty"`
}

// SyncCluster asks every live node, this one included, to reconcile with
// the catalogue now and waits (each node up to StepTimeout) for what each
// then runs. revive names a plugin an operator just enabled: nodes that
// had disabled it after failures load it afresh.
func (h *Host) SyncCluster(ctx context.Context, revive string) []NodeSync {
	ms, err := h.o.Cluster.Members(ctx)
	if err != nil {
		return []NodeSync{{Node: h.o.Cluster.NodeName(), Err: err}}
	}
	out := make([]NodeSync, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		out[i].Node = m.Name
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, h.o.StepTimeout)
			defer cancel()
			out[i].States, out[i].Err = h.syncOn(cctx, m.Name, revive)
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func (h *Host) syncOn(ctx context.Context, node, revive string) ([]storage.NodePlugin, error) {
	if node == h.o.Cluster.NodeName() {
		if err := h.reconcile(ctx, true, revive); err != nil {
			return nil, err
		}
		return h.States(), nil
	}
	payload, _ := json.Marshal(syncRequest{Revive: revive})
	raw, err := h.o.Cluster.Call(ctx, node, kindSync, payload)
	if err != nil {
		return nil, err
	}
	var rep syncReply
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return rep.States, &remoteError{rep.Error}
	}
	return rep.States, nil
}

type remoteError struct{ msg string }

func (e *remoteError) Error() string { return e.msg }

func (h *Host) handleSync(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var req syncRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	// The asking node may give up waiting; the pass still finishes, and
	// reports what it did.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	var rep syncReply
	if err := h.reconcile(rctx, true, req.Revive); err != nil {
		rep.Error = err.Error()
	}
	rep.States = h.States()
	return json.Marshal(rep)
}
