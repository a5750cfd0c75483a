package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/storage"
)

// Status is a rolling upgrade's progress, stored in the shared properties.
type Status struct {
	Plugin  string    `json:"plugin"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	State   string    `json:"state"` // running, done, failed, rolled-back
	Error   string    `json:"error,omitempty"`
	Steps   []Step    `json:"steps"`
	Started time.Time `json:"started"`
}

// Step is one node's part.
type Step struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	State   string `json:"state"` // pending, upgrading, healthy, failed, rolled-back
}

// Upgrade returns the current or last rolling upgrade ("idle" if none).
func (h *Host) Upgrade(ctx context.Context) (Status, error) {
	v, err := h.o.Store.GetProperty(ctx, statusKey)
	if errors.Is(err, storage.ErrNotFound) {
		return Status{State: "idle"}, nil
	}
	if err != nil {
		return Status{}, err
	}
	var st Status
	return st, json.Unmarshal([]byte(v), &st)
}

// StartUpgrade begins a rolling upgrade of plugin name to version. The
// senior node coordinates; another node forwards the request to it. It
// returns once the upgrade started; progress is read with Upgrade.
func (h *Host) StartUpgrade(ctx context.Context, name, version string) error {
	rec, err := h.o.Store.GetPlugin(ctx, name, version)
	if err != nil {
		return fmt.Errorf("pluginhost: %s %s: %w", name, version, err)
	}
	_ = rec
	if !h.o.Cluster.Senior() {
		members, err := h.o.Cluster.Members(ctx)
		if err != nil {
			return err
		}
		senior := seniorOf(members)
		if senior != "" && senior != h.o.Cluster.NodeName() {
			return h.callNode(ctx, senior, kindUpgrade, name, version)
		}
	}
	return h.startCoordinating(name, version)
}

func (h *Host) handleUpgrade(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var req applyRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	var rep applyReply
	if err := h.startCoordinating(req.Name, req.Version); err != nil {
		rep.Error = err.Error()
	}
	return json.Marshal(rep)
}

func seniorOf(ms []cluster.Member) string {
	if len(ms) == 0 {
		return ""
	}
	sort.Slice(ms, func(i, j int) bool {
		if !ms[i].Started.Equal(ms[j].Started) {
			return ms[i].Started.Before(ms[j].Started)
		}
		return ms[i].Name < ms[j].Name
	})
	return ms[0].Name
}

func (h *Host) startCoordinating(name, version string) error {
	h.upMu.Lock()
	if h.running {
		h.upMu.Unlock()
		return ErrUpgradeRunning
	}
	h.running = true
	h.upMu.Unlock()
	// Visible before StartUpgrade returns: a console page rendered right
	// after the request must not show the previous upgrade's "done" (and
	// so never poll for this one's progress).
	h.save(context.Background(), Status{Plugin: name, To: version, State: "running", Started: time.Now().UTC()})
	go func() {
		defer func() {
			h.upMu.Lock()
			h.running = false
			h.upMu.Unlock()
		}()
		ctx := context.Background()
		if err := h.rollingUpgrade(ctx, name, version); err != nil {
			h.log.Error("rolling upgrade failed", "plugin", name, "version", version, "err", err)
		}
	}()
	return nil
}

// rollingUpgrade moves every live node to version, one at a time, in name
// order. Each step waits for the node to report the version loaded and
// healthy. On the first failure the upgraded nodes (and the failed one)
// are moved back to the version they ran before.
func (h *Host) rollingUpgrade(ctx context.Context, name, version string) error {
	members, err := h.o.Cluster.Members(ctx)
	if err != nil {
		return err
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	before := map[string]string{} // node → version it ran
	if nps, err := h.o.Store.ListNodePlugins(ctx); err == nil {
		for _, np := range nps {
			if np.Name == name && np.State == "loaded" {
				before[np.Node] = np.Version
			}
		}
	}
	st := Status{Plugin: name, To: version, State: "running", Started: time.Now().UTC()}
	for _, m := range members {
		if st.From == "" {
			st.From = before[m.Name]
		}
		st.Steps = append(st.Steps, Step{Node: m.Name, Version: before[m.Name], State: "pending"})
	}
	h.save(ctx, st)
	for i := range st.Steps {
		node := st.Steps[i].Node
		st.Steps[i].State = "upgrading"
		h.save(ctx, st)
		err := h.applyOn(ctx, node, name, version)
		if err == nil {
			err = h.checkMember(ctx, node)
		}
		if err != nil {
			st.Steps[i].State = "failed"
			st.Error = fmt.Sprintf("%s: %v", node, err)
			st.State = "failed"
			h.save(ctx, st)
			h.rollBack(ctx, &st, i, name, before)
			return err
		}
		st.Steps[i].Version, st.Steps[i].State = version, "healthy"
		h.save(ctx, st)
	}
	// Restarted nodes must come back on the new version: make it the one
	// enabled in the catalogue.
	if err := SetEnabled(ctx, h.o.Store, name, version, true); err != nil {
		h.log.Error("upgrade done but the catalogue still enables the old version", "plugin", name, "err", err)
	}
	st.State = "done"
	h.save(ctx, st)
	return nil
}

func (h *Host) rollBack(ctx context.Context, st *Status, failed int, name string, before map[string]string) {
	for j := failed; j >= 0; j-- {
		node := st.Steps[j].Node
		if err := h.applyOn(ctx, node, name, before[node]); err != nil {
			h.log.Error("rollback failed", "node", node, "plugin", name, "err", err)
			continue
		}
		st.Steps[j].Version, st.Steps[j].State = before[node], "rolled-back"
	}
	st.State = "rolled-back"
	h.save(ctx, *st)
}

// checkMember confirms the node is still a live member after its step.
func (h *Host) checkMember(ctx context.Context, node string) error {
	ms, err := h.o.Cluster.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Name == node {
			return nil
		}
	}
	return fmt.Errorf("node %s left the cluster during its upgrade", node)
}

func (h *Host) save(ctx context.Context, st Status) {
	b, _ := json.Marshal(st)
	if err := h.o.Store.SetProperty(ctx, statusKey, string(b)); err != nil {
		h.log.Warn("saving upgrade progress", "err", err)
	}
}
