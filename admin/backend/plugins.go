package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/aviary-im/aviary/admin/api"
	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/storage"
)

// Plugins lists the catalogue and, for each version, what the live nodes
// report of it: loaded, failed, disabled by the node after failures, and
// for the enabled version every live node that does not run it.
func (b *Backend) Plugins(ctx context.Context) ([]api.Plugin, error) {
	recs, err := b.n.Store().ListPlugins(ctx)
	if err != nil {
		return nil, err
	}
	nps, err := b.n.Store().ListNodePlugins(ctx)
	if err != nil {
		return nil, err
	}
	ms, err := b.reachable(ctx) // every node, also while clustering is off
	if err != nil {
		return nil, err
	}
	report := map[string]map[string]storage.NodePlugin{} // node → plugin → report
	for _, np := range nps {
		if report[np.Node] == nil {
			report[np.Node] = map[string]storage.NodePlugin{}
		}
		report[np.Node][np.Name] = np
	}
	out := make([]api.Plugin, 0, len(recs))
	for _, r := range recs {
		p := api.Plugin{Name: r.Name, Version: r.Version, Checksum: r.Checksum, Enabled: r.Enabled, Uploaded: r.Uploaded}
		for _, m := range ms {
			np, ok := report[m.Name][r.Name]
			switch {
			case ok && np.Version == r.Version && (np.State != pluginhost.StateUnloaded || !r.Enabled):
				p.Nodes = append(p.Nodes, pluginState(np))
			case r.Enabled:
				miss := api.PluginState{Node: m.Name, Version: r.Version, State: "missing", Error: "no report"}
				if ok {
					miss.Error = fmt.Sprintf("it reports %s %s", np.State, np.Version)
					if np.Error != "" {
						miss.Error += ": " + np.Error
					}
					miss.Updated = np.Updated
				}
				p.Nodes = append(p.Nodes, miss)
			}
		}
		sort.Slice(p.Nodes, func(i, j int) bool { return p.Nodes[i].Node < p.Nodes[j].Node })
		out = append(out, p)
	}
	return out, nil
}

func pluginState(np storage.NodePlugin) api.PluginState {
	return api.PluginState{Node: np.Node, Name: np.Name, Version: np.Version, State: np.State, Error: np.Error, Updated: np.Updated}
}

// UploadPlugin adds a version to the catalogue after checking it is a
// plugin module; a version that exists is refused.
func (b *Backend) UploadPlugin(ctx context.Context, name, version string, artifact []byte) error {
	if b.o.Plugins == nil {
		return ErrNoPluginHost
	}
	err := pluginhost.Upload(ctx, b.n.Store(), name, version, artifact)
	var rf *pluginhost.Refusal
	switch {
	case errors.As(err, &rf):
		return refused(rf)
	case errors.Is(err, runtime.ErrBadModule):
		return &api.APIError{Status: http.StatusBadRequest, Message: "the artifact is not a usable plugin: " + err.Error()}
	}
	return err
}

// SetPluginEnabled enables one version (disabling the plugin's others, so
// exactly one version is what nodes run) or disables it, then has every
// live node follow at once and waits for them (StepTimeout each); a node
// that does not answer follows the catalogue when it next hears of it.
func (b *Backend) SetPluginEnabled(ctx context.Context, name, version string, on bool) error {
	err := pluginhost.SetEnabled(ctx, b.n.Store(), name, version, on)
	var rf *pluginhost.Refusal
	if errors.As(err, &rf) {
		return refused(rf)
	}
	if err != nil {
		return err
	}
	if b.o.Plugins == nil {
		return nil
	}
	revive := ""
	if on {
		revive = name // a node that disabled it after failures loads it afresh
	}
	for _, ns := range b.o.Plugins.SyncCluster(ctx, revive) {
		if ns.Err != nil {
			b.log.Warn("a node did not confirm the plugin change; it follows the catalogue when it next hears of it", "node", ns.Node, "plugin", name, "err", ns.Err)
		}
	}
	return nil
}

// DeletePlugin removes a version (or all versions) from the catalogue,
// refused while enabled or run by a live node.
func (b *Backend) DeletePlugin(ctx context.Context, name, version string) error {
	ms, err := b.reachable(ctx) // every node, also while clustering is off
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, m := range ms {
		live[m.Name] = true
	}
	err = pluginhost.Delete(ctx, b.n.Store(), name, version, func(node string) bool { return live[node] })
	var rf *pluginhost.Refusal
	if errors.As(err, &rf) {
		return refused(rf)
	}
	return err
}

// refused is the API's answer to a refused catalogue change.
func refused(rf *pluginhost.Refusal) error {
	return &api.APIError{Status: http.StatusConflict, Message: rf.Reason}
}

// StartUpgrade begins a rolling upgrade.
func (b *Backend) StartUpgrade(ctx context.Context, name, version string) error {
	if b.o.Plugins == nil {
		return ErrNoPluginHost
	}
	err := b.o.Plugins.StartUpgrade(ctx, name, version)
	if err != nil && strings.Contains(err.Error(), pluginhost.ErrUpgradeRunning.Error()) {
		// Over the node link the coordinator's error arrives as text.
		return &api.APIError{Status: http.StatusConflict, Message: "a rolling upgrade is already running: wait for it to end"}
	}
	return err
}

// Upgrade returns the rolling upgrade's progress.
func (b *Backend) Upgrade(ctx context.Context) (api.UpgradeStatus, error) {
	if b.o.Plugins == nil {
		return api.UpgradeStatus{State: "idle"}, nil
	}
	st, err := b.o.Plugins.Upgrade(ctx)
	if err != nil {
		return api.UpgradeStatus{}, err
	}
	out := api.UpgradeStatus{Plugin: st.Plugin, From: st.From, To: st.To, State: st.State, Error: st.Error, Started: st.Started, Coordinator: st.Coordinator}
	for _, s := range st.Steps {
		out.Steps = append(out.Steps, api.UpgradeStep{Node: s.Node, Version: s.Version, State: s.State,
			Calls: s.Calls, Failures: s.Failures, Traps: s.Traps, Timeouts: s.Timeouts, Error: s.Error})
	}
	return out, nil
}
