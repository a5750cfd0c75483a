package pluginhost

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Rollout is how a rolling upgrade judges a node that loaded the new
// version: by the plugin's real calls (every stanza it handles) over
// Window. Config: plugins.rollout.
type Rollout struct {
	// Window is how long each node's new version is watched before the
	// next node moves. Default 30s.
	Window time.Duration
	// MaxFailures failed calls (traps and timeouts) within the window
	// make the node unhealthy. Default 3.
	MaxFailures int
	// MaxFailureRatio: more than this share of the window's calls
	// failing also makes it unhealthy (a plugin that fails on one stanza
	// in two, with little traffic). Default 0.1.
	MaxFailureRatio float64
	// Poll is how often the coordinator reads the node's counters.
	// Default 1s.
	Poll time.Duration
}

func (r *Rollout) defaults() {
	if r.Window <= 0 {
		r.Window = 30 * time.Second
	}
	if r.MaxFailures <= 0 {
		r.MaxFailures = 3
	}
	if r.MaxFailureRatio <= 0 {
		r.MaxFailureRatio = 0.1
	}
	if r.Poll <= 0 {
		r.Poll = time.Second
	}
}

// Health is what one node reports about one plugin: the version it runs
// and that version's calls since it was loaded.
type Health struct {
	Version  string `json:"version"`
	State    string `json:"state"` // see the State constants
	Error    string `json:"error,omitempty"`
	Calls    int64  `json:"calls"`
	Failures int64  `json:"failures"`
	Traps    int64  `json:"traps"`
	Timeouts int64  `json:"timeouts"`
}

// LocalHealth returns this node's Health for plugin name.
func (h *Host) LocalHealth(name string) Health {
	h.mu.Lock()
	p, st := h.loaded[name], h.states[name]
	h.mu.Unlock()
	out := Health{Version: st.Version, State: st.State, Error: st.Error}
	if st.State == "" {
		out.State = StateUnloaded
	}
	if p != nil {
		ph := p.Health()
		out.Version, out.Calls, out.Failures, out.Traps, out.Timeouts = p.Version(), ph.Calls, ph.Failures, ph.Traps, ph.Timeouts
		if ph.Disabled {
			out.State, out.Error = StateDisabled, ph.Reason
		}
	}
	return out
}

func (h *Host) handleHealth(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var req applyRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	return json.Marshal(h.LocalHealth(req.Name))
}

// healthOn reads a node's Health for name, locally or over its link.
func (h *Host) healthOn(ctx context.Context, node, name string) (Health, error) {
	if node == h.o.Cluster.NodeName() {
		return h.LocalHealth(name), nil
	}
	payload, _ := json.Marshal(applyRequest{Name: name})
	raw, err := h.o.Cluster.Call(ctx, node, kindHealth, payload)
	if err != nil {
		return Health{}, err
	}
	var out Health
	return out, json.Unmarshal(raw, &out)
}

// judge says why a node running version is unhealthy, or nil.
func (r Rollout) judge(hl Health, version string) error {
	running := hl.Version == version && (hl.State == StateLoaded || hl.State == StateDisabled)
	switch {
	case !running:
		return fmt.Errorf("the node runs %q (%s) instead of %s: %s", hl.Version, hl.State, version, firstLine(hl.Error))
	case hl.Failures >= int64(r.MaxFailures):
		return fmt.Errorf("%d of %d calls failed (%d traps, %d timeouts), reaching plugins.rollout.max_failures (%d) within %s",
			hl.Failures, hl.Calls, hl.Traps, hl.Timeouts, r.MaxFailures, r.Window)
	case hl.Failures > 0 && float64(hl.Failures) > r.MaxFailureRatio*float64(hl.Calls):
		return fmt.Errorf("%d of %d calls failed (%d traps, %d timeouts), more than plugins.rollout.max_failure_ratio (%g) of them",
			hl.Failures, hl.Calls, hl.Traps, hl.Timeouts, r.MaxFailureRatio)
	case hl.State == StateDisabled:
		return fmt.Errorf("the node disabled %s after repeated failures: %s", version, hl.Error)
	}
	return nil
}

// firstLine cuts an error at its first line: a guest's trap carries its
// stack trace, which belongs in the node's log, not in a status line.
func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
