package server

import (
	"context"
	"log/slog"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// host is what the node offers plugins (plugins.Host). The Manager starts
// each plugin with its own (ForPlugin), whose Cluster is namespaced by the
// plugin's ID and whose service claims are recorded under it.
type host struct {
	n      *Node
	plugin string
}

var _ plugins.ScopedHost = (*host)(nil)

func (h *host) ForPlugin(id string) plugins.Host { return &host{n: h.n, plugin: id} }
func (h *host) Cluster() plugins.Cluster         { return h.n.pnet.For(h.plugin) }

// ServeDomain claims a service domain for the plugin (plugins.Manager
// checks it); the node's certificate is made to name it (Node.nameServices)
// or, when it cannot be any more, the gap is logged.
func (h *host) ServeDomain(s plugins.Service) (func(), error) {
	release, err := h.n.plugins.ServeDomain(h.plugin, s)
	if err != nil {
		return nil, err
	}
	h.n.serviceClaimed(s.Domain)
	return release, nil
}

func (h *host) Domain() string             { return h.n.cfg.Domain }
func (h *host) Config() *conf.Config       { return h.n.LiveConfig() }
func (h *host) Store() storage.Store       { return h.n.store }
func (h *host) Logger() *slog.Logger       { return h.n.log }
func (h *host) Hooks() *plugins.Hooks      { return h.n.hooks }
func (h *host) Users() plugins.UserManager { return h.n.users }

// Registry is where built-in plugins register their metrics.
func (h *host) Registry() prometheus.Registerer { return h.n.registry }

func (h *host) Broadcast(ctx context.Context, ev plugins.Event, data []byte) error {
	return h.n.events.broadcast(ctx, ev, data)
}

func (h *host) Route(ctx context.Context, el *wire.Element) { h.n.router.Route(ctx, el) }

func (h *host) Resources(ctx context.Context, bare string) ([]plugins.Resource, error) {
	return h.n.router.Resources(ctx, bare)
}

func (h *host) SetCarbons(ctx context.Context, full string, on bool) error {
	return h.n.router.SetCarbons(ctx, full, on)
}

// IsAdmin compares bare JIDs in their canonical form.
func (h *host) IsAdmin(bare string) bool {
	j, err := wire.ParseJID(bare)
	if err != nil {
		return false
	}
	for _, a := range h.n.cfg.Admin.Admins {
		if aj, err := wire.ParseJID(a); err == nil && aj.Bare() == j.Bare() {
			return true
		}
	}
	return false
}
