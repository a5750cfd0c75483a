// Package ping is XEP-0199 XMPP ping to the server: an IQ get with
// <ping xmlns='urn:xmpp:ping'/> to the domain (or with no 'to') gets an
// empty result.
//
// A ping to a user's bare JID is not answered on the user's behalf: the
// plugin does not claim the namespace for accounts, so the router answers
// service-unavailable, which RFC 6121 §8.5.3.1 allows (and which tells the
// pinger nothing about presence). Pings to full JIDs go to the client.
package ping

import (
	"context"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0199.ping"

// NS is the ping namespace.
const NS = wire.NSPing

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin answers pings to the server.
type Plugin struct{}

var (
	_ plugins.IQHandler     = (*Plugin)(nil)
	_ plugins.DiscoFeatures = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

func (p *Plugin) ID() string                                         { return ID }
func (p *Plugin) Start(ctx context.Context, host plugins.Host) error { return nil }
func (p *Plugin) Stop(ctx context.Context) error                     { return nil }
func (p *Plugin) DiscoFeatures() []string                            { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer}

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	if iq.Stanza.Type() != "get" || iq.Payload().Name != "ping" {
		return nil, wire.ErrBadRequest
	}
	return nil, nil
}
