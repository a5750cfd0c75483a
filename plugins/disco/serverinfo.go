package disco

import (
	"sync"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins/internal/caps"
	"github.com/aviary-im/aviary/wire"
)

// The server's own entity capabilities (XEP-0115 §6.3) and its contact
// addresses (XEP-0157).
//
// The server announces its caps in the stream features, so that a client
// that has seen this server's disco#info before can skip asking for it
// again. The verification string covers the server's whole disco#info:
// identities, features and extended forms (the XEP-0157 serverinfo form
// among them). Plugins can be enabled and replaced at run time, so it is
// cached for one generation of the plugin manager and one configuration
// snapshot, and computed again when either changes.

// CapsNode is the 'node' of the server's caps: the software's URI.
const CapsNode = "https://github.com/aviary-im/aviary"

// NSServerInfo is the FORM_TYPE of XEP-0157 contact addresses.
const NSServerInfo = "http://jabber.org/network/serverinfo"

// serverCaps is the verification string of one plugin generation and
// configuration.
type serverCaps struct {
	gen uint64
	cfg *conf.Config
	ver string
}

type capsCache struct {
	mu  sync.Mutex
	cur *serverCaps
}

// serverInfoElement builds the server's disco#info <query/> for node.
func (p *Plugin) serverInfoElement(node string) *wire.Element {
	q := InfoElement(node, p.identities(), p.features())
	if form := serverInfoForm(p.host.Config()); form != nil {
		q.Append(form)
	}
	return q
}

// capsVer returns the verification string of the server's disco#info,
// computing it again when the plugins or the configuration changed.
func (p *Plugin) capsVer() string {
	var gen uint64
	if p.m != nil {
		gen = p.m.Generation()
	}
	cfg := p.host.Config()
	p.caps.mu.Lock()
	defer p.caps.mu.Unlock()
	if c := p.caps.cur; c != nil && c.gen == gen && c.cfg == cfg {
		return c.ver
	}
	ver := caps.Hash(p.serverInfoElement(""))
	p.caps.cur = &serverCaps{gen: gen, cfg: cfg, ver: ver}
	return ver
}

// capsNodeVer reports whether node is the server's caps node with the
// current verification string (node#ver, XEP-0115 §6.2).
func (p *Plugin) capsNodeVer(node string) bool {
	return node == CapsNode+"#"+p.capsVer()
}

// StreamFeatures offers the server's caps in the stream features, before
// and after authentication (XEP-0115 §6.3).
func (p *Plugin) StreamFeatures(authenticated bool) []*wire.Element {
	return []*wire.Element{wire.NewNS("c", caps.NS).SetAttr("hash", "sha-1").SetAttr("node", CapsNode).SetAttr("ver", p.capsVer())}
}

// serverInfoForm is the XEP-0157 form of the configured contact
// addresses (XEP-0128 extended information), or nil when none is set.
func serverInfoForm(cfg *conf.Config) *wire.Element {
	x := wire.NewNS("x", nsData).SetAttr("type", "result")
	x.Append(wire.New("field", "var", "FORM_TYPE", "type", "hidden").Append(wire.New("value").SetText(NSServerInfo)))
	some := false
	for _, l := range cfg.ServerInfo.Lists() {
		if len(l.Addresses) == 0 {
			continue
		}
		some = true
		f := wire.New("field", "var", l.Field, "type", "list-multi")
		for _, a := range l.Addresses {
			f.Append(wire.New("value").SetText(a))
		}
		x.Append(f)
	}
	if !some {
		return nil
	}
	return x
}

const nsData = "jabber:x:data"
