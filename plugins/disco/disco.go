// Package disco is XEP-0030 service discovery.
//
// On the server (IQ to the domain) disco#info reports the identity
// server/im, the identities other plugins declare, every feature of every
// running plugin, sorted and without duplicates, and the XEP-0157 contact
// addresses of the configuration (server_info) as a serverinfo form;
// disco#items lists every service domain a plugin claimed
// (Host.ServeDomain: conference.example.org, with its name) and what
// plugins contribute (DiscoItems). Each service answers disco#info on its
// own domain itself: IQs to it go to its plugin. Nodes are answered by the
// plugin that owns them (XEP-0050 commands); any other node gets
// item-not-found, except the server's own caps node#ver.
//
// The server's entity capabilities (XEP-0115 §6.3) go out in the stream
// features, computed from that disco#info and again whenever plugins or
// the configuration change (serverinfo.go). Clients' caps need nothing
// here: the router forwards presence with its <c/> untouched.
//
// On a local user's bare JID, and for an IQ a user sends without 'to'
// (RFC 6120 §10.3.3: handled on behalf of the account; the router offers
// it as addressed to the sender's bare JID), disco#info reports
// account/registered, the identities plugins add there
// (AccountIdentities: pubsub/pep) and the features plugins offer on
// accounts (AccountFeatures); disco#info on a node of the account is
// answered by the plugin that knows it (AccountNodes: PEP nodes);
// disco#items is empty. It answers any requester: the features describe
// the server, and an account's existence is already visible through RFC
// 6121 errors. A JID with no account gets service-unavailable (RFC 6121
// §8.5.1).
package disco

import (
	"context"
	"errors"
	"slices"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0030.disco"

// Namespaces.
const (
	NSInfo  = wire.NSDiscoInfo
	NSItems = wire.NSDiscoItems
	// NSOffline is the XEP-0160 feature: the router stores messages for
	// users with no available resource.
	NSOffline = "msgoffline"
)

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin answers disco queries.
type Plugin struct {
	host plugins.Host
	m    *plugins.Manager
	caps capsCache // see serverinfo.go
}

var (
	_ plugins.IQHandler       = (*Plugin)(nil)
	_ plugins.DiscoFeatures   = (*Plugin)(nil)
	_ plugins.AccountFeatures = (*Plugin)(nil)
	_ plugins.DiscoIdentities = (*Plugin)(nil)
	_ plugins.ManagerAware    = (*Plugin)(nil)
	_ plugins.StreamFeatures  = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

func (p *Plugin) ID() string                     { return ID }
func (p *Plugin) SetManager(m *plugins.Manager)  { p.m = m }
func (p *Plugin) Stop(ctx context.Context) error { return nil }
func (p *Plugin) DiscoFeatures() []string        { return []string{NSInfo, NSItems, NSOffline} }
func (p *Plugin) AccountFeatures() []string      { return []string{NSInfo, NSItems} }
func (p *Plugin) DiscoIdentities() []plugins.Identity {
	return []plugins.Identity{{Category: "server", Type: "im", Name: "Aviary"}}
}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	return nil
}

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{
	NSInfo:  plugins.ToServer | plugins.ToAccount,
	NSItems: plugins.ToServer | plugins.ToAccount,
}

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	if iq.Stanza.Type() != "get" {
		return nil, wire.ErrBadRequest
	}
	q := iq.Payload()
	node := q.Attr("node")
	// iq.To is whom the router addressed: the domain or an account. An
	// IQ a client sends without 'to' is the account's (RFC 6120 §10.3.3):
	// the router offers it for the sender's bare JID first, so a to-less
	// disco#info describes the account, as Prosody and ejabberd answer
	// (clients such as aioxmpp look for PEP there).
	to := iq.To
	if to == "" {
		to = iq.Stanza.To()
	}
	if to == "" || to == p.host.Domain() || wire.JIDOf(to).String() == p.host.Domain() {
		if q.NS() == NSInfo {
			return p.serverInfo(ctx, iq.From, node)
		}
		return p.serverItems(ctx, iq.From, node)
	}
	return p.accountQuery(ctx, q.NS(), iq.From, to, node)
}

func (p *Plugin) serverInfo(ctx context.Context, from, node string) (*wire.Element, error) {
	if node == "" || p.capsNodeVer(node) {
		return p.serverInfoElement(node), nil
	}
	var (
		ids   []plugins.Identity
		feats []string
		ok    bool
	)
	if p.m != nil {
		ids, feats, ok = p.m.DiscoNodeInfo(ctx, from, node)
	}
	if !ok {
		return nil, wire.ErrItemNotFound
	}
	return InfoElement(node, ids, feats), nil
}

func (p *Plugin) identities() []plugins.Identity {
	if p.m == nil {
		return p.DiscoIdentities()
	}
	return p.m.Identities()
}

func (p *Plugin) features() []string {
	if p.m == nil {
		return plugins.SortedUnique(p.DiscoFeatures())
	}
	return plugins.SortedUnique(p.m.DiscoFeatures())
}

func (p *Plugin) serverItems(ctx context.Context, from, node string) (*wire.Element, error) {
	var items []plugins.DiscoItem
	if node == "" {
		if p.m != nil {
			for _, s := range p.m.Services() {
				items = append(items, plugins.DiscoItem{JID: s.Domain, Name: s.Name})
			}
			for _, it := range p.m.DiscoItems(ctx, from) {
				if it.Node != "" || !slices.ContainsFunc(items, func(x plugins.DiscoItem) bool { return x.JID == it.JID }) {
					items = append(items, it)
				}
			}
		}
	} else {
		var ok bool
		if p.m != nil {
			items, ok = p.m.DiscoNodeItems(ctx, from, node)
		}
		if !ok {
			return nil, wire.ErrItemNotFound
		}
	}
	return ItemsElement(node, items), nil
}

func (p *Plugin) accountQuery(ctx context.Context, ns, from, to, node string) (*wire.Element, error) {
	j, err := wire.ParseJID(to)
	if err != nil || j.Local() == "" || j.Domain() != p.host.Domain() {
		return nil, wire.ErrServiceUnavailable
	}
	if _, err := p.host.Store().GetUser(ctx, j.Local()); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, wire.ErrServiceUnavailable
		}
		return nil, err
	}
	if node != "" {
		if ns == NSInfo && p.m != nil {
			if ids, feats, ok := p.m.AccountNodeInfo(ctx, from, j.Bare(), node); ok {
				return InfoElement(node, ids, plugins.SortedUnique(feats)), nil
			}
		}
		return nil, wire.ErrItemNotFound
	}
	if ns == NSItems {
		return ItemsElement("", nil), nil
	}
	var feats []string
	ids := []plugins.Identity{{Category: "account", Type: "registered"}}
	if p.m != nil {
		feats = p.m.AccountFeatures()
		ids = append(ids, p.m.AccountIdentities()...)
	} else {
		feats = p.AccountFeatures()
	}
	return InfoElement("", ids, plugins.SortedUnique(feats)), nil
}

// InfoElement builds a disco#info <query/> with the identities and features
// in the given order.
func InfoElement(node string, ids []plugins.Identity, features []string) *wire.Element {
	q := wire.NewNS("query", NSInfo)
	q.SetAttr("node", node)
	for _, id := range ids {
		q.Append(wire.New("identity", "category", id.Category, "type", id.Type).SetAttr("name", id.Name))
	}
	for _, f := range features {
		q.Append(wire.New("feature", "var", f))
	}
	return q
}

// ItemsElement builds a disco#items <query/>.
func ItemsElement(node string, items []plugins.DiscoItem) *wire.Element {
	q := wire.NewNS("query", NSItems)
	q.SetAttr("node", node)
	for _, it := range items {
		q.Append(wire.New("item", "jid", it.JID).SetAttr("node", it.Node).SetAttr("name", it.Name))
	}
	return q
}
