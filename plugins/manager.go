package plugins

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/aviary-im/aviary/wire"
)

// Manager holds a node's running plugins and dispatches to them: IQs by
// namespace, interceptors by point, stream and disco features. The router
// and the stream layer call it; they never see individual plugins.
//
// This is the contract; the built-in set and the run-time loader fill it.
type Manager struct {
	host Host
	log  *slog.Logger
	// plugins is a copy-on-write snapshot: the stanza path reads it without
	// a lock, and Swap/Remove (third-party plugins loaded at run time)
	// publish a new slice under mu.
	plugins atomic.Pointer[[]Plugin]
	// gen changes whenever the plugin list does (Start, Swap, Remove), so
	// that what is derived from every plugin (the server's XEP-0115 caps)
	// can be cached until then.
	gen atomic.Uint64
	mu  sync.Mutex
	svc services // claimed service domains (service.go)
}

// NewManager returns a manager for the given plugins (not yet started).
func NewManager(host Host, log *slog.Logger, list []Plugin) *Manager {
	m := &Manager{host: host, log: log}
	m.plugins.Store(&list)
	return m
}

// list returns the current plugin snapshot; callers must not modify it.
func (m *Manager) list() []Plugin { return *m.plugins.Load() }

// Swap installs an already started plugin, atomically replacing the one
// with the same ID (returned, still running: the caller stops it), or
// appending it. Stanzas in flight finish on whichever version they started.
func (m *Manager) Swap(p Plugin) (old Plugin) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.list()
	next := make([]Plugin, 0, len(cur)+1)
	for _, x := range cur {
		if x.ID() == p.ID() {
			old = x
			next = append(next, p)
			continue
		}
		next = append(next, x)
	}
	if old == nil {
		next = append(next, p)
	}
	m.plugins.Store(&next)
	m.gen.Add(1)
	return old
}

// Remove takes the plugin with that ID out (the caller stops it).
func (m *Manager) Remove(id string) (old Plugin) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.list()
	next := make([]Plugin, 0, len(cur))
	for _, x := range cur {
		if x.ID() == id {
			old = x
			continue
		}
		next = append(next, x)
	}
	m.plugins.Store(&next)
	m.releaseServices(id)
	m.gen.Add(1)
	return old
}

// Generation changes whenever the set of running plugins does; what is
// computed from all of them can be cached for one generation.
func (m *Manager) Generation() uint64 { return m.gen.Load() }

// Plugin returns the running plugin with that ID, or nil: how one
// built-in finds another it builds on (a group-chat service finds the
// message archive).
func (m *Manager) Plugin(id string) Plugin {
	for _, p := range m.list() {
		if p.ID() == id {
			return p
		}
	}
	return nil
}

// IDs returns the IDs of the running plugins.
func (m *Manager) IDs() []string {
	var out []string
	for _, p := range m.list() {
		out = append(out, p.ID())
	}
	return out
}

// Start starts every plugin in order. A plugin that fails to start is
// logged and left out; the node runs without it.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var started []Plugin
	for _, p := range m.list() {
		if ma, ok := p.(ManagerAware); ok {
			ma.SetManager(m)
		}
		if err := p.Start(ctx, m.HostFor(p)); err != nil {
			m.log.Error("plugin failed to start", "plugin", p.ID(), "err", err)
			_ = p.Stop(ctx)
			m.releaseServices(p.ID())
			continue
		}
		started = append(started, p)
	}
	m.plugins.Store(&started)
	m.gen.Add(1)
	return nil
}

// Stop stops every plugin in reverse order.
func (m *Manager) Stop(ctx context.Context) error {
	list := m.list()
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].Stop(ctx); err != nil {
			m.log.Warn("plugin stop failed", "plugin", list[i].ID(), "err", err)
		}
		m.releaseServices(list[i].ID())
	}
	return nil
}

// SessionsClosing tells every SessionsCloser that the node's sessions
// are about to close (the first step of a node's Stop), in plugin order.
func (m *Manager) SessionsClosing(ctx context.Context) {
	for _, p := range m.list() {
		if c, ok := p.(SessionsCloser); ok {
			c.SessionsClosing(ctx)
		}
	}
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
	for _, p := range m.list() {
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
	for _, pl := range m.list() {
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
	for _, p := range m.list() {
		if sf, ok := p.(StreamFeatures); ok {
			out = append(out, sf.StreamFeatures(authenticated)...)
		}
	}
	return out
}

// DiscoFeatures collects the server's disco#info features.
func (m *Manager) DiscoFeatures() []string {
	var out []string
	for _, p := range m.list() {
		if df, ok := p.(DiscoFeatures); ok {
			out = append(out, df.DiscoFeatures()...)
		}
	}
	return out
}

// AccountFeatures collects features of a user's bare JID.
func (m *Manager) AccountFeatures() []string {
	var out []string
	for _, p := range m.list() {
		if af, ok := p.(AccountFeatures); ok {
			out = append(out, af.AccountFeatures()...)
		}
	}
	return out
}
