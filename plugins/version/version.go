// Package version is XEP-0092 software version for the server: name
// "Aviary", the build's version, and the operating system only when the
// setting plugins.settings["xep0092.version"].show_os is true (default
// false: telling everyone the OS helps attackers more than users).
package version

import (
	"context"
	"runtime"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0092.version"

// NS is the software version namespace.
const NS = "jabber:iq:version"

// Version is the server's version, set at build time with
// -ldflags "-X github.com/aviary-im/aviary/plugins/version.Version=1.2.3".
var Version = "dev"

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin answers software version queries to the server.
type Plugin struct {
	showOS bool
}

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
	p.showOS = plugins.SettingBool(host.Config(), ID, "show_os", false)
	return nil
}

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	if iq.Stanza.Type() != "get" {
		return nil, wire.ErrBadRequest
	}
	q := wire.NewNS("query", NS).Append(
		wire.New("name").SetText("Aviary"),
		wire.New("version").SetText(Version),
	)
	if p.showOS {
		q.Append(wire.New("os").SetText(runtime.GOOS + "/" + runtime.GOARCH))
	}
	return q, nil
}

// Settings documents the plugin's one setting.
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{{Key: "show_os", Type: "bool", Default: "false", Doc: "include the operating system in answers"}}
}
