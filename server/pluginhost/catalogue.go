package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/storage"
)

// CatalogueProperty is the shared property written after every change of
// which plugin versions are enabled or present. Its value means nothing
// (the time and a counter); writing it is what tells running nodes,
// through PostgreSQL's notification, to compare what they run with the
// catalogue. Anything that changes the catalogue outside this package
// should write it too (Touch).
const CatalogueProperty = "plugins.catalogue.changed"

// Refusal is a catalogue change refused because of the catalogue's or the
// cluster's state (a version that exists, a plugin in use, an upgrade
// running). Its message says what to do; errors.Is matches Err
// (storage.ErrExists, ErrInUse or ErrUpgradeRunning). The admin API
// answers 409 with it.
type Refusal struct {
	Reason string
	Err    error
}

func (r *Refusal) Error() string { return r.Reason }
func (r *Refusal) Unwrap() error { return r.Err }

// touches makes every Touch of this process a new value, even within one
// clock tick.
var touches atomic.Int64

// Touch writes CatalogueProperty: every running node reconciles soon.
func Touch(ctx context.Context, props storage.Properties) error {
	v := fmt.Sprintf("%s#%d", time.Now().UTC().Format(time.RFC3339Nano), touches.Add(1))
	return props.SetProperty(ctx, CatalogueProperty, v)
}

// Upload adds a version to the catalogue after checking that the
// artifact is a plugin module, disabled until an operator enables it or
// rolls it out. A name and version already in the catalogue is refused:
// a version's artifact never changes, since nodes load, report and roll
// back by version.
func Upload(ctx context.Context, store storage.PluginCatalogue, name, version string, artifact []byte) error {
	if err := runtime.Validate(ctx, artifact); err != nil {
		return err
	}
	err := store.PutPlugin(ctx, storage.PluginRecord{Name: name, Version: version, Checksum: runtime.Checksum(artifact),
		Artifact: artifact, Uploaded: time.Now().UTC()})
	if errors.Is(err, storage.ErrExists) {
		return &Refusal{Err: err, Reason: fmt.Sprintf(
			"%s %s is already in the catalogue; a version's artifact cannot be replaced (nodes load and roll back by version): upload it as a new version, or delete %s %s first",
			name, version, name, version)}
	}
	return err
}

// SetEnabled enables one version of a plugin in the catalogue, disabling
// its other versions so exactly one is what nodes run, or disables it,
// then tells running nodes (Touch). The console, the API and the offline
// CLI all use it; the API also asks every node at once (Host.SyncCluster).
// It is refused while a rolling upgrade of the plugin runs.
func SetEnabled(ctx context.Context, store Store, name, version string, on bool) error {
	if _, err := store.GetPlugin(ctx, name, version); err != nil {
		return err
	}
	if st, err := readStatus(ctx, store); err == nil && st.active() && st.Plugin == name {
		return &Refusal{Err: ErrUpgradeRunning, Reason: fmt.Sprintf(
			"a rolling upgrade of %s to %s is running (coordinated by %s): wait for it to end", name, st.To, st.Coordinator)}
	}
	if err := setEnabled(ctx, store, name, version, on); err != nil {
		return err
	}
	return Touch(ctx, store)
}

// setEnabled writes the flags without checks or Touch.
func setEnabled(ctx context.Context, store storage.PluginCatalogue, name, version string, on bool) error {
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

// Delete removes a version of a plugin from the catalogue, or every
// version when version is "". It is refused (a *Refusal matching
// ErrInUse or ErrUpgradeRunning) while a version to delete is enabled,
// while a node that live reports true for runs it (loaded, or disabled
// after failures: its instance is still there), or while a rolling upgrade
// of the plugin runs. live == nil counts every report: for when no node
// runs to ask (the offline CLI).
func Delete(ctx context.Context, store Store, name, version string, live func(node string) bool) error {
	recs, err := store.ListPlugins(ctx)
	if err != nil {
		return err
	}
	var del []storage.PluginRecord
	for _, r := range recs {
		if r.Name == name && (version == "" || r.Version == version) {
			del = append(del, r)
		}
	}
	what := name
	if version != "" {
		what = name + " " + version
	}
	if len(del) == 0 {
		return fmt.Errorf("pluginhost: %s: %w", what, storage.ErrNotFound)
	}
	if st, err := readStatus(ctx, store); err == nil && st.active() && st.Plugin == name {
		return &Refusal{Err: ErrUpgradeRunning, Reason: fmt.Sprintf(
			"a rolling upgrade of %s to %s is running: wait for it to end (it may roll back to %s)", name, st.To, st.From)}
	}
	for _, r := range del {
		if r.Enabled {
			return &Refusal{Err: ErrInUse, Reason: fmt.Sprintf(
				"%s %s is enabled: disable it first (every node unloads it), then delete it", name, r.Version)}
		}
	}
	nps, err := store.ListNodePlugins(ctx)
	if err != nil {
		return err
	}
	var running []string
	for _, np := range nps {
		if np.Name != name || (version != "" && np.Version != version) || (np.State != StateLoaded && np.State != StateDisabled) {
			continue
		}
		if live != nil && !live(np.Node) {
			continue
		}
		running = append(running, fmt.Sprintf("%s runs %s (%s since %s)", np.Node, np.Version, np.State, np.Updated.Format(time.RFC3339)))
	}
	if len(running) > 0 {
		sort.Strings(running)
		return &Refusal{Err: ErrInUse, Reason: fmt.Sprintf("%s is in use: %s; disable it and wait for the nodes to unload it, then delete it",
			what, strings.Join(running, ", "))}
	}
	for _, r := range del {
		if err := store.DeletePlugin(ctx, r.Name, r.Version); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return Touch(ctx, store)
}

// readStatus reads the last rolling upgrade's status ("idle" if none).
func readStatus(ctx context.Context, props storage.Properties) (Status, error) {
	v, err := props.GetProperty(ctx, statusKey)
	if errors.Is(err, storage.ErrNotFound) {
		return Status{State: "idle"}, nil
	}
	if err != nil {
		return Status{}, err
	}
	var st Status
	return st, json.Unmarshal([]byte(v), &st)
}

// sortReports orders reports by node, then plugin.
func sortReports(nps []storage.NodePlugin) {
	sort.Slice(nps, func(i, j int) bool {
		if nps[i].Node != nps[j].Node {
			return nps[i].Node < nps[j].Node
		}
		return nps[i].Name < nps[j].Name
	})
}
