// Package carbons is the XEP-0280 message carbons switch: a client enables
// or disables carbons for its own session with an IQ set to its server.
// The router generates the forwarded copies for sessions that turned them
// on (Host.SetCarbons records the choice, cluster-wide).
package carbons

import (
	"context"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0280.carbons"

// NS is the carbons namespace.
const NS = wire.NSCarbons

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin handles enable and disable.
type Plugin struct{ host plugins.Host }

var (
	_ plugins.IQHandler     = (*Plugin)(nil)
	_ plugins.DiscoFeatures = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

func (p *Plugin) ID() string                     { return ID }
func (p *Plugin) Stop(ctx context.Context) error { return nil }
func (p *Plugin) DiscoFeatures() []string        { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	return nil
}

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	if iq.Stanza.Type() != "set" {
		return nil, wire.ErrBadRequest
	}
	var on bool
	switch iq.Payload().Name {
	case "enable":
		on = true
	case "disable":
	default:
		return nil, wire.ErrBadRequest
	}
	from, err := wire.ParseJID(iq.From)
	if err != nil || !iq.FromLocal || from.Resource() == "" || from.Domain() != p.host.Domain() {
		return nil, wire.ErrNotAllowed
	}
	if err := p.host.SetCarbons(ctx, from.String(), on); err != nil {
		return nil, err
	}
	return nil, nil
}
