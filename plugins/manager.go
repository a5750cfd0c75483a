package plugins

import (
	"context"
	"log/slog"

	"github.com/aviary-im/aviary/wire"
)

// Manager holds a node's running plugins and dispatches to them: IQs by
// namespace, interceptors by point, stream and disco features. The router
// and the stream layer call it; they never see individual plugins.
//
// This is the contract; the built-in set and the run-time loader fill it.
type Manager struct {
	host    Host
	log     *slog.Logger
	plugins []Plugin
}

// NewManager returns a manager for the given plugins (not yet started).
func NewManager(host Host, log *slog.Logger, list []Plugin) *Manager {
	return &Manager{host: host, log: log, plugins: list}
}

// Start starts every plugin in order. A plugin that fails to start is
// logged and left out; the node runs without it.
func (m *Manager) Start(ctx context.Context) error {
	started := m.plugins[:0]
	for _, p := range m.plugins {
		if ma, ok := p.(ManagerAware); ok {
			ma.SetManager(m)
		}
		if err := p.Start(ctx, m.host); err != nil {
			m.log.Error("plugin failed to start", "plugin", p.ID(), "err", err)
			_ = p.Stop(ctx)
			continue
		}
		started = append(started, p)
	}
	m.plugins = started
	return nil
}

// Stop stops every plugin in reverse order.
func (m *Manager) Stop(ctx context.Context) error {
	for i := len(m.plugins) - 1; i >= 0; i-- {
		if err := m.plugins[i].Stop(ctx); err != nil {
			m.log.Warn("plugin stop failed", "plugin", m.plugins[i].ID(), "err", err)
		}
	}
	return nil
}

// HandleIQ dispatches an IQ get/set to the plugin that registered its
// payload namespace for the target. handled is false when none did; the
// router then answers service-unavailable.
func (m *Manager) HandleIQ(ctx context.Context, iq *IQ, target Target) (reply *wire.Element, handled bool) {
	payload := iq.Payload()
	if payload == nil {
		return nil, false
	}
	ns := payload.NS()
	for _, p := range m.plugins {
		h, ok := p.(IQHandler)
		if !ok {
			continue
		}
		if t, ok := h.IQNamespaces()[ns]; ok && t&target != 0 {
			res, err := h.HandleIQ(ctx, iq)
			if err != nil {
				se, ok := err.(*wire.StanzaError)
				if !ok {
					m.log.Error("plugin IQ handler failed", "plugin", p.ID(), "ns", ns, "err", err)
					se = wire.ErrInternalServerError
				}
				return wire.ErrorReply(iq.Stanza, se), true
			}
			return wire.IQResult(iq.Stanza, res), true
		}
	}
	return nil, false
}

// Intercept runs the interceptors registered for p, in plugin order, until
// one returns a verdict other than Continue.
func (m *Manager) Intercept(ctx context.Context, p Point, st *Stanza) (Verdict, error) {
	for _, pl := range m.plugins {
		ic, ok := pl.(Interceptor)
		if !ok {
			continue
		}
		for _, want := range ic.InterceptPoints() {
			if want != p {
				continue
			}
			v, err := ic.Intercept(ctx, p, st)
			if err != nil || v != Continue {
				return v, err
			}
		}
	}
	return Continue, nil
}

// StreamFeatures collects every plugin's stream features.
func (m *Manager) StreamFeatures(authenticated bool) []*wire.Element {
	var out []*wire.Element
	for _, p := range m.plugins {
		if sf, ok := p.(StreamFeatures); ok {
			out = append(out, sf.StreamFeatures(authenticated)...)
		}
	}
	return out
}

// DiscoFeatures collects the server's disco#info features.
func (m *Manager) DiscoFeatures() []string {
	var out []string
	for _, p := range m.plugins {
		if df, ok := p.(DiscoFeatures); ok {
			out = append(out, df.DiscoFeatures()...)
		}
	}
	return out
}

// AccountFeatures collects features of a user's bare JID.
func (m *Manager) AccountFeatures() []string {
	var out []string
	for _, p := range m.plugins {
		if af, ok := p.(AccountFeatures); ok {
			out = append(out, af.AccountFeatures()...)
		}
	}
	return out
}
