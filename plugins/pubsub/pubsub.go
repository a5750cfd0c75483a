// Package pubsub is the general XEP-0060 publish-subscribe service, at
// its own subdomain (pubsub.<domain> by default, Host.ServeDomain), listed
// in the domain's disco#items. The XEP-0060 semantics are the engine PEP
// uses too (plugins/internal/pubsub); this package makes a service of it.
//
// Requests: create (named or instant nodes, with a configuration form),
// configure, default, delete (with redirect), purge, publish (with
// XEP-0223 publish-options as preconditions), retract (notify), items
// (all, the newest max_items, by ID), subscribe and unsubscribe with
// subscription options, the requester's own subscriptions and
// affiliations, and the owner's management of both; disco#info on the
// service (pubsub/service and the features) and on a node (pubsub/leaf
// with its meta-data), disco#items on the service (the nodes the
// requester may see) and on a node (its item IDs). Access models open,
// presence, roster (the node owners' rosters) and whitelist; every error
// carries its pubsub#errors condition. Who may create nodes is a setting
// (create: local users, the default; admins; anyone, remote users too);
// the server's administrators own every node.
//
// Cluster. Every node of a cluster runs the plugin and receives the
// requests its clients (or peers over s2s) send. Each pubsub node is a
// key of plugins/placement: requests naming a node are handled on that
// key's owner, one at a time, so two publishes to one node from clients
// on different servers cannot interleave their max_items eviction or
// overwrite each other's configuration changes; a request about no node
// in particular (disco on the service, an instant node, the requester's
// lists) is the key "". The state itself is all in the shared store
// (nothing is handed over when a key moves), and each change's
// notifications leave once, from the owner, through the cluster-wide
// router: every subscriber gets each event once, on whatever node it is
// connected.
//
// Storage: four map stores (storage.Modules): "pubsub" holds the node
// configurations under the owner "<domain>/", "pubsub_items",
// "pubsub_subscriptions" and "pubsub_affiliations" each node's items,
// subscriptions and affiliations under the owner "<domain>/<node>", so
// each node has its own quotas.
//
// Settings, under plugins.settings["xep0060.pubsub"]: domain (default
// pubsub.<domain>), name (the disco name, default "Publish-Subscribe"),
// create (local, admins or anyone; default local), max_nodes (default
// 10000, 0 for no limit), max_bytes (bytes of items per node, default
// 10 MiB). The service is off with plugins.disabled: [xep0060.pubsub].
package pubsub

import (
	"context"
	"fmt"
	"strings"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/pubsub"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/plugins/placement"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0060.pubsub"

// Stores: the map stores the service keeps its state in. Never rename
// them once released.
const (
	Store              = "pubsub" // node configurations
	StoreItems         = "pubsub_items"
	StoreSubscriptions = "pubsub_subscriptions"
	StoreAffiliations  = "pubsub_affiliations"
)

// Who may create nodes (the create setting).
const (
	CreateLocal  = "local"  // users of this server's domain
	CreateAdmins = "admins" // the configured administrators
	CreateAnyone = "anyone" // any authenticated entity, remote ones too
)

// Defaults of the settings.
const (
	DefaultName     = "Publish-Subscribe"
	DefaultMaxNodes = 10000
	DefaultMaxBytes = 10 << 20
	// maxRows bounds one node's subscriptions, and its affiliations.
	maxRows = 100000
)

// serviceKey is the placement key of requests that name no node.
// Node names are never empty, so it cannot collide with one.
const serviceKey = ""

// Defaults is the configuration of a new node: open access, publishers
// publish, the newest 256 items kept, the last one sent on subscribing.
var Defaults = pubsub.Config{
	AccessModel:           pubsub.AccessOpen,
	PublishModel:          pubsub.PublishPublishers,
	MaxItems:              256,
	PersistItems:          true,
	DeliverPayloads:       true,
	DeliverNotifications:  true,
	NotifyConfig:          false,
	NotifyDelete:          true,
	NotifyRetract:         true,
	Subscribe:             true,
	NotificationType:      "headline",
	SendLastPublishedItem: pubsub.SendLastOnSub,
}

var features = append(pubsub.Features("instant-nodes"), wire.NSDiscoInfo, wire.NSDiscoItems)

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin is the pubsub service.
type Plugin struct {
	host   plugins.Host
	engine *pubsub.Engine
	place  *placement.Placement
	domain string
	name   string
	create string

	release func()
}

var (
	_ plugins.Configurable = (*Plugin)(nil)
	_ placement.Module     = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

func (p *Plugin) ID() string { return ID }

// Settings documents plugins.settings["xep0060.pubsub"].
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{
		{Key: "domain", Type: "string", Default: "pubsub.<domain>", Doc: "the service's address, a subdomain of the server's domain"},
		{Key: "name", Type: "string", Default: DefaultName, Doc: "the service's name in disco"},
		{Key: "create", Type: "string", Default: CreateLocal, Values: []string{CreateLocal, CreateAdmins, CreateAnyone}, Doc: "who may create nodes: local users, admins, or anyone (remote users too)"},
		{Key: "max_nodes", Type: "int", Default: fmt.Sprint(DefaultMaxNodes), Doc: "nodes the service may hold (0: no limit)"},
		{Key: "max_bytes", Type: "int", Default: fmt.Sprint(DefaultMaxBytes), Doc: "bytes of items one node may store (0: no limit)"},
	}
}

// Domain returns the address the service runs at (after Start).
func (p *Plugin) Domain() string { return p.domain }

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	cfg := host.Config()
	p.domain = strings.ToLower(plugins.SettingString(cfg, ID, "domain", "pubsub."+host.Domain()))
	p.name = plugins.SettingString(cfg, ID, "name", DefaultName)
	p.create = plugins.SettingString(cfg, ID, "create", CreateLocal)
	p.engine = pubsub.New(pubsub.Options{
		Store: host.Store(),
		Layout: pubsub.Layout{Nodes: Store, Items: StoreItems,
			Subscriptions: StoreSubscriptions, Affiliations: StoreAffiliations, PerNodeOwner: true},
		Limits:       pubsub.SettingLimits(cfg, ID, DefaultMaxNodes, DefaultMaxBytes, maxRows, "the pubsub service's storage", "node"),
		Logger:       host.Logger(),
		Route:        host.Route,
		Defaults:     Defaults,
		InstantNodes: true,
		MayCreate:    p.mayCreate,
		Admin:        host.IsAdmin,
	})
	p.place = placement.New(placement.Options{
		Cluster: host.Cluster(), Module: p, Name: "nodes", Route: host.Route, Logger: host.Logger(),
	})
	p.place.Start()
	release, err := host.ServeDomain(plugins.Service{Domain: p.domain, Name: p.name, Handle: p.handle})
	if err != nil {
		_ = p.place.Stop(ctx)
		return fmt.Errorf("plugins.settings.%s.domain: %w", ID, err)
	}
	p.release = release
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error {
	if p.release != nil {
		p.release()
	}
	if p.place != nil {
		return p.place.Stop(ctx)
	}
	return nil
}

// mayCreate applies the create setting; administrators always may.
func (p *Plugin) mayCreate(service, requester string, local bool) bool {
	switch {
	case p.host.IsAdmin(requester):
		return true
	case p.create == CreateAnyone:
		return true
	case p.create == CreateLocal:
		return local
	}
	return false
}

// handle runs on the node where a stanza for the service arrived: IQs go
// to the owner of the node they name; nobody lives at JIDs under the
// service's domain.
func (p *Plugin) handle(ctx context.Context, el *wire.Element) error {
	if el.IsError() || (el.Name == "iq" && el.Type() == "result") {
		return nil // an answer to nothing we asked, or a bounced notification
	}
	if el.To() != p.domain {
		return wire.ErrServiceUnavailable
	}
	switch {
	case el.Name == "presence":
		return nil
	case el.Name != "iq":
		return wire.ErrServiceUnavailable
	}
	q := el.FirstChild()
	if q == nil {
		return wire.ErrBadRequest
	}
	switch q.NS() {
	case pubsub.NS, pubsub.NSOwner, wire.NSDiscoInfo, wire.NSDiscoItems:
	default:
		return wire.ErrServiceUnavailable
	}
	p.place.Dispatch(ctx, nodeOf(q), el)
	return nil
}

// nodeOf returns the node a request is about: the disco query's node, or
// the node of the pubsub verb (publish-options and options forms name
// none of their own); serviceKey for none.
func nodeOf(q *wire.Element) string {
	if q.NS() == wire.NSDiscoInfo || q.NS() == wire.NSDiscoItems {
		return q.Attr("node")
	}
	for _, c := range q.Children {
		if n := c.Attr("node"); n != "" {
			return n
		}
	}
	return serviceKey
}

// Rebuild makes this node the host of a pubsub node. Nothing is kept in
// memory: the store has it all.
func (p *Plugin) Rebuild(ctx context.Context, key string, handoffs [][]byte) error { return nil }

// Release gives a pubsub node up; there is nothing to hand over.
func (p *Plugin) Release(ctx context.Context, key string) ([]byte, error) { return nil, nil }

// Handle answers one request on the owner of its node.
func (p *Plugin) Handle(ctx context.Context, key string, el *wire.Element) error {
	res, err := p.answer(ctx, el)
	if err != nil {
		return err
	}
	p.host.Route(ctx, wire.IQResult(el, res))
	return nil
}

func (p *Plugin) answer(ctx context.Context, iq *wire.Element) (*wire.Element, error) {
	q := iq.FirstChild()
	requester := wire.JIDOf(iq.From()).Bare()
	get := iq.Type() == "get"
	switch {
	case q.NS() == wire.NSDiscoInfo && get:
		return p.discoInfo(ctx, requester, q.Attr("node"))
	case q.NS() == wire.NSDiscoItems && get:
		return p.discoItems(ctx, requester, q.Attr("node"))
	case q.NS() == pubsub.NS || q.NS() == pubsub.NSOwner:
		local := xmpputil.Domain(iq.From()) == p.host.Domain()
		return p.engine.HandleIQ(ctx, pubsub.Request{Service: p.domain, From: iq.From(), Local: local, IQ: iq})
	}
	return nil, wire.ErrBadRequest
}

// discoInfo is XEP-0060 §5.1 on the service and §5.3/§5.4 on a node.
func (p *Plugin) discoInfo(ctx context.Context, requester, node string) (*wire.Element, error) {
	q := wire.NewNS("query", wire.NSDiscoInfo)
	if node == "" {
		q.Append(wire.New("identity", "category", "pubsub", "type", "service", "name", p.name))
		for _, f := range features {
			q.Append(wire.New("feature", "var", f))
		}
		return q, nil
	}
	cfg, err := p.engine.NodeConfig(ctx, p.domain, node)
	if err != nil || !p.engine.MayRetrieve(ctx, p.domain, node, requester) {
		return nil, wire.ErrItemNotFound
	}
	q.SetAttr("node", node)
	q.Append(wire.New("identity", "category", "pubsub", "type", "leaf"))
	q.Append(wire.New("feature", "var", pubsub.NS))
	q.Append(cfg.MetaData())
	return q, nil
}

// discoItems is XEP-0060 §5.2 (the nodes) and §5.5 (a node's items).
func (p *Plugin) discoItems(ctx context.Context, requester, node string) (*wire.Element, error) {
	list, ok := p.engine.DiscoItems(ctx, p.domain, node, requester)
	if !ok {
		return nil, wire.ErrItemNotFound
	}
	q := wire.NewNS("query", wire.NSDiscoItems)
	q.SetAttr("node", node)
	for _, it := range list {
		el := wire.New("item", "jid", it.JID)
		el.SetAttr("node", it.Node)
		el.SetAttr("name", it.Name)
		q.Append(el)
	}
	return q, nil
}
