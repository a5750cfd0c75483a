// Package builtin links every built-in XEP plugin into the binary: each
// registers itself with plugins.Register in its init, so importing this
// package (the server does) makes them all available by ID.
//
//	xep0012.last      last activity (server uptime; users' idle time to subscribers)
//	xep0030.disco     service discovery (server/im identity, every plugin's features)
//	xep0045.muc       group chat at conference.<domain> (XEP-0045, 0410, 0421); settings under muc:
//	xep0049.private   private XML storage
//	xep0050.adhoc     ad-hoc commands: XEP-0133 service administration (admins only), and other plugins' commands for local users (deleting one's archive)
//	xep0054.vcard     vcard-temp
//	xep0060.pubsub    publish-subscribe service at pubsub.<domain> (XEP-0060), cluster-wide
//	xep0065.proxy     SOCKS5 bytestreams proxy (off unless listen is set)
//	xep0077.register  in-band registration (c2s.allow_registration), password change, unregister
//	xep0092.version   software version
//	xep0114.component external components (listener, handshake, their domains routed cluster-wide); under components:
//	xep0163.pep       personal eventing (PEP): a pubsub service on every account
//	xep0191.blocking  blocking command, enforced by an interceptor
//	xep0199.ping      ping to the server
//	xep0215.extdisco  STUN/TURN discovery with TURN REST API credentials; servers under external_services:
//	xep0280.carbons   message carbons switch
//	xep0313.mam       message archive (XEP-0313, 0359, 0441, 0424); settings under mam:
//	xep0357.push      push notifications to app servers (offline accounts, detached or CSI-inactive sessions), from push.<domain>
//	xep0363.upload    HTTP file upload at upload.DOMAIN, files in the shared store; under upload: (off until upload.url is set)
//
// Any of them can be turned off with plugins.disabled. Settings, under
// plugins.settings.<id>:
//
//	xep0092.version:  show_os: true      # report runtime.GOOS/GOARCH (default false)
//	xep0191.blocking: refresh_interval: "1m"  # re-read a block list in use this often (safety net; changes apply at once)
//	xep0060.pubsub:   domain: "pubsub.example.com", name: "Publish-Subscribe", create: local  # who creates nodes: local, admins, anyone
//	xep0065.proxy:    listen: "0.0.0.0:7777", host: "proxy.example.com"  # SOCKS5 relay; off by default
//	xep0357.push:     domain: "push.example.com", include_body: false, max_registrations: 10  # bodies only when this allows it and the client asked
package builtin

import (
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"

	_ "github.com/aviary-im/aviary/plugins/adhoc"     // xep0050.adhoc + XEP-0133 admin commands
	_ "github.com/aviary-im/aviary/plugins/blocking"  // xep0191.blocking
	_ "github.com/aviary-im/aviary/plugins/carbons"   // xep0280.carbons
	_ "github.com/aviary-im/aviary/plugins/component" // xep0114.component
	_ "github.com/aviary-im/aviary/plugins/disco"     // xep0030.disco
	_ "github.com/aviary-im/aviary/plugins/extdisco"  // xep0215.extdisco
	_ "github.com/aviary-im/aviary/plugins/last"      // xep0012.last
	_ "github.com/aviary-im/aviary/plugins/mam"       // xep0313.mam
	_ "github.com/aviary-im/aviary/plugins/muc"       // xep0045.muc
	_ "github.com/aviary-im/aviary/plugins/pep"       // xep0163.pep
	_ "github.com/aviary-im/aviary/plugins/ping"      // xep0199.ping
	_ "github.com/aviary-im/aviary/plugins/private"   // xep0049.private
	_ "github.com/aviary-im/aviary/plugins/proxy65"   // xep0065.proxy
	_ "github.com/aviary-im/aviary/plugins/pubsub"    // xep0060.pubsub
	_ "github.com/aviary-im/aviary/plugins/push"      // xep0357.push
	_ "github.com/aviary-im/aviary/plugins/register"  // xep0077.register
	_ "github.com/aviary-im/aviary/plugins/upload"    // xep0363.upload
	_ "github.com/aviary-im/aviary/plugins/vcard"     // xep0054.vcard
	_ "github.com/aviary-im/aviary/plugins/version"   // xep0092.version
)

// New constructs every registered plugin except those listed in
// cfg.Plugins.Disabled, in ID order, ready for plugins.NewManager.
func New(cfg *conf.Config) []plugins.Plugin {
	off := map[string]bool{}
	if cfg != nil {
		for _, id := range cfg.Plugins.Disabled {
			off[id] = true
		}
	}
	var out []plugins.Plugin
	for _, id := range plugins.Registered() {
		if off[id] {
			continue
		}
		p, err := plugins.New(id)
		if err != nil {
			continue
		}
		out = append(out, p)
	}
	return out
}
