package pluginhost

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/aviary-im/aviary/cluster"
)

// Status is a rolling upgrade's progress, stored in the shared properties.
type Status struct {
	Plugin string `json:"plugin"`
	From   string `json:"from"`
	To     string `json:"to"`
	// State: running; rolling-back (a node failed, the upgraded nodes go
	// back); then done, rolled-back, or failed (a rollback failed too, or
	// the catalogue could not be changed at the end).
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	Steps []Step `json:"steps"`
	// Coordinator is the node running the upgrade; while it lives, the
	// other nodes leave the plugin to it.
	Coordinator string    `json:"coordinator,omitempty"`
	Started     time.Time `json:"started"`
	Updated     time.Time `json:"updated,omitzero"`
}

// Step is one node's part.
type Step struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// State: pending, upgrading (loading the new version), watching (its
	// health window), healthy, failed, rolled-back.
	State string `json:"state"`
	// What the new version's calls on the node showed while watched.
	Calls    int64  `json:"calls,omitempty"`
	Failures int64  `json:"failures,omitempty"`
	Traps    int64  `json:"traps,omitempty"`
	Timeouts int64  `json:"timeouts,omitempty"`
	Error    string `json:"error,omitempty"`
}

// active reports whether an upgrade in this state still holds its plugin.
func (st Status) active() bool { return st.State == "running" || st.State == "rolling-back" }

// Upgrade returns the current or last rolling upgrade ("idle" if none).
func (h *Host) Upgrade(ctx context.Context) (Status, error) {
	return readStatus(ctx, h.o.Store)
}

// StartUpgrade begins a rolling upgrade of plugin name to version. The
// senior node coordinates; another node forwards the request to it. It
// returns once the upgrade started; progress is read with Upgrade.
func (h *Host) StartUpgrade(ctx context.Context, name, version string) error {
	if _, err := h.o.Store.GetPlugin(ctx, name, version); err != nil {
		return fmt.Errorf("pluginhost: %s %s: %w", name, version, err)
	}
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
	defer h.upMu.Unlock()
	if h.running {
		return ErrUpgradeRunning
	}
	h.running = true
	// Visible before StartUpgrade returns: a console page rendered right
	// after the request must not show the previous upgrade's "done" (and
	// so never poll for this one's progress).
	st := &Status{Plugin: name, To: version, State: "running", Coordinator: h.o.Cluster.NodeName(), Started: time.Now().UTC()}
	h.save(context.Background(), st)
	go func() {
		ctx := context.Background()
		if err := h.rollingUpgrade(ctx, st); err != nil {
			h.log.Error("rolling upgrade failed", "plugin", name, "version", version, "err", err)
		}
		// The final state and the end of running go together: whoever
		// sees "done" may start the next upgrade at once, and no next
		// upgrade's status is overwritten by this one's.
		h.upMu.Lock()
		h.save(ctx, st)
		h.running = false
		h.upMu.Unlock()
		if st.State == "done" {
			// Nodes that were not part of it (one that joined meanwhile)
			// follow the catalogue now that the upgrade let go of it.
			if err := Touch(ctx, h.o.Store); err != nil {
				h.log.Warn("upgrade done but nodes were not told; they follow within plugins' reconcile interval", "err", err)
			}
		}
		h.nudge() // the plugin is the catalogue's again
	}()
	return nil
}

// rollingUpgrade moves every live node to st.To, one at a time, in name
// order. Each step loads the version on the node, then watches its real
// calls for the rollout window. On the first failure the rollout stops and
// the upgraded nodes (and the failed one) go back to the version they ran
// before; the catalogue, which still enables that version, is untouched.
// It leaves the final state in st for its caller to save.
func (h *Host) rollingUpgrade(ctx context.Context, st *Status) error {
	name, version := st.Plugin, st.To
	fail := func(err error) error {
		st.State, st.Error = "failed", err.Error()
		return err
	}
	members, err := h.o.Cluster.Members(ctx)
	if err != nil {
		return fail(fmt.Errorf("listing the nodes: %w", err))
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	before := map[string]string{} // node → version it ran
	if nps, err := h.o.Store.ListNodePlugins(ctx); err == nil {
		for _, np := range nps {
			if np.Name == name && (np.State == StateLoaded || np.State == StateDisabled) {
				before[np.Node] = np.Version
			}
		}
	}
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
			st.Steps[i].Version, st.Steps[i].State = version, "watching"
			h.save(ctx, st)
			err = h.watch(ctx, st, i)
		}
		if err != nil {
			st.Steps[i].State, st.Steps[i].Error = "failed", firstLine(err.Error())
			st.Error = fmt.Sprintf("%s: %s", node, firstLine(err.Error()))
			st.State = "rolling-back"
			h.save(ctx, st)
			h.rollBack(ctx, st, i, name, before)
			return err
		}
		st.Steps[i].State = "healthy"
		h.save(ctx, st)
	}
	// Restarted nodes must come back on the new version: make it the one
	// enabled in the catalogue, before the upgrade stops holding the
	// plugin (nodes would otherwise go back to the old one).
	if err := setEnabled(ctx, h.o.Store, name, version, true); err != nil {
		return fail(fmt.Errorf("every node runs %s, but enabling it in the catalogue failed (nodes will go back to %s): %w", version, st.From, err))
	}
	st.State = "done"
	h.log.Info("rolling upgrade done", "plugin", name, "version", version, "nodes", len(st.Steps))
	return nil
}

// watch follows step i's node for the rollout window and fails as soon as
// its calls make it unhealthy (see Rollout.judge) or it leaves.
func (h *Host) watch(ctx context.Context, st *Status, i int) error {
	r := h.o.Rollout
	node, version := st.Steps[i].Node, st.Steps[i].Version
	end := time.Now().Add(r.Window)
	for {
		if err := h.checkMember(ctx, node); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, h.o.StepTimeout)
		hl, err := h.healthOn(cctx, node, st.Plugin)
		cancel()
		if err != nil {
			return fmt.Errorf("reading its health: %w", err)
		}
		s := &st.Steps[i]
		if s.Calls != hl.Calls || s.Failures != hl.Failures {
			s.Calls, s.Failures, s.Traps, s.Timeouts = hl.Calls, hl.Failures, hl.Traps, hl.Timeouts
			h.save(ctx, st)
		}
		if err := r.judge(hl, version); err != nil {
			return err
		}
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(r.Poll, left)):
		}
	}
}

func (h *Host) rollBack(ctx context.Context, st *Status, failed int, name string, before map[string]string) {
	ok := true
	for j := failed; j >= 0; j-- {
		node := st.Steps[j].Node
		if err := h.applyOn(ctx, node, name, before[node]); err != nil {
			// The node follows the catalogue, which still enables the
			// old version, when it next reconciles.
			h.log.Error("rollback failed; the node goes back when it next reads the catalogue", "node", node, "plugin", name, "err", err)
			st.Steps[j].Error = joinErr(st.Steps[j].Error, "rollback failed: "+err.Error())
			ok = false
			continue
		}
		st.Steps[j].Version, st.Steps[j].State = before[node], "rolled-back"
	}
	st.State = "rolled-back"
	if !ok {
		st.State = "failed"
	}
	h.log.Warn("rolling upgrade stopped and rolled back", "plugin", name, "version", st.To, "back to", st.From, "error", st.Error)
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// checkMember confirms the node is still a live member.
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

func (h *Host) save(ctx context.Context, st *Status) {
	st.Updated = time.Now().UTC()
	b, _ := json.Marshal(st)
	if err := h.o.Store.SetProperty(ctx, statusKey, string(b)); err != nil {
		h.log.Warn("saving upgrade progress", "err", err)
	}
}
