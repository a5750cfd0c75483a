// Package pep is XEP-0163 Personal Eventing Protocol: every local account
// is a publish-subscribe service (XEP-0060) at its bare JID, which the
// account owns: it alone creates, configures and deletes nodes and, by
// default, publishes. The XEP-0060 semantics live in the engine shared
// with the general pubsub service (plugins/internal/pubsub); this package
// adds what makes it PEP.
//
// IQs (namespaces pubsub and pubsub#owner; no 'to', or 'to' the
// account's bare JID): publish (nodes are created on first publish, with
// the XEP-0223 publish-options as their configuration; on an existing
// node the options are preconditions, and a mismatch answers conflict
// with precondition-not-met), items (all, the newest max_items, or by
// id), retract (notify), create, subscribe, unsubscribe, subscription
// options and lists, and for the owner configure, default, delete (with
// redirect), purge, and managing subscriptions and affiliations. Every
// error carries its pubsub#errors condition.
//
// A node keeps as many items as its pubsub#max_items says (the default
// 1; "max" keeps as many as the account's quota allows). New nodes have
// the presence access model; open, roster (with roster groups) and
// whitelist are the others. disco#info on the account reports pubsub/pep
// and the features; disco#info on a node reports pubsub/leaf, and
// disco#items lists the nodes (or a node's items) to whoever may
// retrieve them.
//
// Who gets notifications: the node's explicit subscribers and,
// implicitly, the owner's own resources and the contacts subscribed to
// the owner's presence whose clients ask for NODE+notify (XEP-0115 caps,
// caps.go), each allowed by the access model. When a recipient becomes
// available or its caps change, the last item of every node it newly
// asks for is sent to it (nodes whose send_last_published_item is
// on_sub_and_presence, the default); a new subscriber gets it on
// subscribing. A client gets each item once, as that last item or as
// the publish's notification, whatever the order in which its presence,
// the resolution of its caps and the publish come (caps.go).
//
// Conversions (bookmarks.go, avatar.go, vcard4.go): XEP-0402 bookmarks
// (urn:xmpp:bookmarks:1), XEP-0048 bookmarks in private XML (XEP-0049)
// and XEP-0048 bookmarks on the PEP node storage:bookmarks are kept in
// step (XEP-0402 §5 #compat, XEP-0411); the XEP-0084 avatar and the
// vcard-temp PHOTO (XEP-0398); the XEP-0292 vCard4 node and vcard-temp.
// A change a client makes through one is written to the others, on the
// server's behalf, before the client's request is answered.
//
// Storage: four map stores (storage.Modules), each under the account's
// bare JID: "pep" holds each node's configuration in the collection "",
// keyed by the node's name (schema migration 2 moved it there from the
// private XML store's "#pep NODE" keys); "pep_items" the items, in a
// collection per node, oldest evicted past max_items in the same write;
// "pep_subscriptions" and "pep_affiliations" the rest. Records of the
// single-item PEP, which carried their last item, are moved on first
// read. Each account may keep at most max_nodes nodes and max_bytes of
// items (plugins.settings["xep0163.pep"]; defaults 1000 and 10 MiB, 0 for
// no limit); a publish or create past either gets not-acceptable with a
// text naming the limit and changes nothing.
//
// Caps tracking (caps.go). The plugin watches presence at two
// interceptor points: PointInbound sees a local user's broadcast presence
// (the owner's own resources), PointDeliver sees every presence delivered
// to a local session (a contact's resource, delivered to the owner). For
// each owner it keeps, in memory, the full JIDs whose presence it saw with
// their caps version; a version is resolved to its +notify features with a
// disco#info query (sent from the owner's bare JID to the contact's full
// JID, as Prosody does), cached by version.
//
// Cluster. Nodes and items live in the shared store; a notification
// leaves once, from the node that handled the change, through the
// cluster-wide router. The recipient table is rebuilt on each node from
// the presence that node delivers: an owner publishes from a session on
// some node, and that session received (on login probes and later
// broadcasts) the presence of every contact and of the owner's other
// resources, on whatever node they are. Who gets a change without a
// subscription is decided on one node, the owner's home (the node of
// the owner's first resource), which also sends the last items: a
// change made on another node asks the home for that list (the cluster
// message "implicit", cluster.go) and falls back on its own table when
// the home cannot answer. Verified caps versions (sha-1, checked against
// the XEP-0115 hash) are also written to the shared properties
// ("pep.caps.<ver>"), because the answer to a caps query arrives on the
// node of the client that answers, which may not be the node that
// asked; that node resolves it from the shared entry next time.
package pep

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/pubsub"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0163.pep"

// Namespaces.
const (
	NSPubSub = pubsub.NS
	NSOwner  = pubsub.NSOwner
	NSEvent  = pubsub.NSEvent
	NSErrors = pubsub.NSErrors
	NSCaps   = "http://jabber.org/protocol/caps"
	NSData   = pubsub.NSData
)

// Access models.
const (
	AccessPresence  = pubsub.AccessPresence
	AccessOpen      = pubsub.AccessOpen
	AccessRoster    = pubsub.AccessRoster
	AccessWhitelist = pubsub.AccessWhitelist
)

// Stores: the map stores PEP keeps its state in (see the package doc).
// Never rename them once released.
const (
	Store              = "pep" // node configurations
	StoreItems         = "pep_items"
	StoreSubscriptions = "pep_subscriptions"
	StoreAffiliations  = "pep_affiliations"
)

// Default quotas per account.
const (
	DefaultMaxNodes = 1000
	DefaultMaxBytes = 10 << 20
	// maxRows bounds what others may make the account store: one
	// subscription or affiliation per JID and node, this many of each.
	maxRows = 10000
)

// workTimeout bounds background work (caps queries, last-item sends).
const workTimeout = 10 * time.Second

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin is the PEP service of every local account.
type Plugin struct {
	host   plugins.Host
	now    func() time.Time
	remove func()
	engine *pubsub.Engine

	ctx     context.Context // canceled at Stop
	cancel  context.CancelFunc
	wmu     sync.Mutex // orders goWork's Add against Stop's Wait
	stopped bool
	wg      sync.WaitGroup

	mu         sync.Mutex
	recipients map[string]map[string]*recipient // owner bare → full JID → caps state
	caps       map[string]map[string]bool       // verified caps ver → +notify nodes
	queries    map[string]*query                // query id → what it resolves
	inflight   map[string]*query                // caps ver → the query in flight
}

var (
	_ plugins.IQHandler         = (*Plugin)(nil)
	_ plugins.AccountFeatures   = (*Plugin)(nil)
	_ plugins.AccountIdentities = (*Plugin)(nil)
	_ plugins.Interceptor       = (*Plugin)(nil)
	_ plugins.AccountNodes      = (*Plugin)(nil)
	_ plugins.AccountItems      = (*Plugin)(nil)
	_ plugins.DiscoFeatures     = (*Plugin)(nil)
	_ plugins.Configurable      = (*Plugin)(nil)
)

// Settings documents plugins.settings["xep0163.pep"].
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{
		{Key: "max_nodes", Type: "int", Default: strconv.Itoa(DefaultMaxNodes), Doc: "PEP nodes one account may have (0: no limit)"},
		{Key: "max_bytes", Type: "int", Default: strconv.Itoa(DefaultMaxBytes), Doc: "bytes of PEP items one account may store, all nodes together (0: no limit)"},
	}
}

// New returns the plugin.
func New() *Plugin {
	return &Plugin{
		now:        time.Now,
		recipients: map[string]map[string]*recipient{},
		caps:       map[string]map[string]bool{},
		queries:    map[string]*query{},
		inflight:   map[string]*query{},
	}
}

func (p *Plugin) ID() string { return ID }

// Defaults is the configuration of a new PEP node: presence access, the
// last item kept and sent to contacts as they come online.
var Defaults = pubsub.Config{
	AccessModel:           AccessPresence,
	PublishModel:          pubsub.PublishPublishers,
	MaxItems:              1,
	PersistItems:          true,
	DeliverPayloads:       true,
	DeliverNotifications:  true,
	NotifyDelete:          true,
	NotifyRetract:         true,
	Subscribe:             true,
	NotificationType:      "headline",
	SendLastPublishedItem: pubsub.SendLastOnSubPresence,
}

// Conversion features (XEP-0402 §5, XEP-0411, XEP-0398).
const (
	FeatureBookmarksCompat    = NSBookmarks + "#compat"
	FeatureBookmarksCompatPEP = NSBookmarks + "#compat-pep"
	FeatureBookmarksConvert   = "urn:xmpp:bookmarks-conversion:0"
	FeatureVCardConversion    = "urn:xmpp:pep-vcard-conversion:0"
)

var features = pubsub.Features("auto-create", "auto-subscribe", "filtered-notifications", "presence-notifications", "presence-subscribe")

var accountFeatures = append(append([]string(nil), features...),
	FeatureBookmarksCompat, FeatureBookmarksCompatPEP, FeatureBookmarksConvert, FeatureVCardConversion)

// AccountFeatures are the XEP-0060 features of every account's service
// and the conversions it makes.
func (p *Plugin) AccountFeatures() []string { return accountFeatures }

// DiscoFeatures repeats the pubsub features on the server's disco#info,
// where clients look before they use their account's PEP (Smack's OMEMO
// manager wants the namespace, its OpenPGP one #access-whitelist), as
// Prosody and ejabberd advertise them; not #publish and #subscribe,
// which make Smack take the domain itself for a pubsub service.
func (p *Plugin) DiscoFeatures() []string { return serverFeatures }

var serverFeatures = func() []string {
	var out []string
	for _, f := range features {
		if f != NSPubSub+"#publish" && f != NSPubSub+"#subscribe" {
			out = append(out, f)
		}
	}
	return out
}()

// AccountIdentities adds pubsub/pep to the account's disco#info (XEP-0163 §6).
func (p *Plugin) AccountIdentities() []plugins.Identity {
	return []plugins.Identity{{Category: "pubsub", Type: "pep"}}
}

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NSPubSub: plugins.ToAccount, NSOwner: plugins.ToAccount}

func (p *Plugin) InterceptPoints() []plugins.Point { return points }

// points is shared: the manager asks for it on every stanza.
var points = []plugins.Point{plugins.PointInbound, plugins.PointDeliver, plugins.PointRemoteInbound}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	cfg := host.Config()
	p.engine = pubsub.New(pubsub.Options{
		Store: host.Store(),
		Layout: pubsub.Layout{Nodes: Store, Items: StoreItems,
			Subscriptions: StoreSubscriptions, Affiliations: StoreAffiliations},
		Limits:     pubsub.SettingLimits(cfg, ID, DefaultMaxNodes, DefaultMaxBytes, maxRows, "PEP storage", "account"),
		Logger:     host.Logger(),
		Route:      host.Route,
		Defaults:   Defaults,
		PEP:        true,
		AutoCreate: true,
		Implicit:   p.implicit,
		Changed:    p.changed,
	})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	removeClosed := host.Hooks().Add(plugins.EventSessionClosed, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.SessionEvent); ok {
			p.sessionClosed(ctx, ev.JID)
		}
		return nil
	})
	removeStored := host.Hooks().Add(plugins.EventXMLStored, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.XMLStoredEvent); ok {
			p.stored(ctx, ev)
		}
		return nil
	})
	removeRoster := host.Hooks().Add(plugins.EventRosterChanged, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.RosterEvent); ok {
			p.rosterChanged(ev)
		}
		return nil
	})
	removeImplicit := host.Cluster().Handle(kindImplicit, p.handleImplicit)
	p.remove = func() { removeClosed(); removeStored(); removeRoster(); removeImplicit() }
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error {
	if p.remove != nil {
		p.remove()
	}
	p.wmu.Lock()
	p.stopped = true
	p.wmu.Unlock()
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	return nil
}

// goWork runs fn in the background with a bounded context; Stop waits.
func (p *Plugin) goWork(fn func(ctx context.Context)) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.stopped || p.ctx == nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, workTimeout)
		defer cancel()
		fn(ctx)
	}()
}

// HandleIQ answers pubsub IQs on an account.
func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	owner := xmpputil.Target(iq)
	if owner == "" || wire.JIDOf(owner).Local() == "" {
		return nil, wire.ErrServiceUnavailable
	}
	if iq.FromLocal && wire.JIDOf(iq.From).Bare() == owner {
		if node := bookmarkNode(iq.Payload()); node != "" {
			if err := p.importBookmarks(ctx, owner, node); err != nil {
				p.host.Logger().Warn("pep: importing private XML bookmarks", "owner", owner, "err", err)
			}
		}
	}
	return p.engine.HandleIQ(ctx, pubsub.Request{Service: owner, From: iq.From, Local: iq.FromLocal, IQ: iq.Stanza})
}

// bookmarkNode returns the bookmarks node a pubsub request names, ""
// for any other.
func bookmarkNode(q *wire.Element) string {
	if q == nil {
		return ""
	}
	for _, c := range q.Children {
		if n := c.Attr("node"); n == NSBookmarks || n == NSBookmarksLegacy {
			return n
		}
	}
	return ""
}

// AccountNodeInfo answers disco#info on a PEP node for whoever may
// retrieve its items (XEP-0060 §5.3: a leaf node).
func (p *Plugin) AccountNodeInfo(ctx context.Context, from, account, node string) ([]plugins.Identity, []string, bool) {
	if !p.engine.MayRetrieve(ctx, account, node, wire.JIDOf(from).Bare()) {
		return nil, nil, false
	}
	return []plugins.Identity{{Category: "pubsub", Type: "leaf"}}, []string{NSPubSub}, true
}

// AccountItems answers disco#items on the account (its nodes) or on a
// node (its items' IDs), for whoever may retrieve them.
func (p *Plugin) AccountItems(ctx context.Context, from, account, node string) ([]plugins.DiscoItem, bool) {
	list, ok := p.engine.DiscoItems(ctx, account, node, wire.JIDOf(from).Bare())
	if !ok {
		return nil, false
	}
	out := make([]plugins.DiscoItem, len(list))
	for i, it := range list {
		out[i] = plugins.DiscoItem{JID: it.JID, Node: it.Node, Name: it.Name}
	}
	return out, true
}

// sendLast sends the last item of each node to one recipient, as the
// nodes' configuration and access models allow, unless it has that item
// already (claimLast).
func (p *Plugin) sendLast(ctx context.Context, owner, full string, nodes []string) {
	for _, node := range nodes {
		p.engine.SendLast(ctx, owner, node, full, func(it *pubsub.Item) bool {
			return p.claimLast(owner, full, node, it.Version)
		})
	}
}

func isNoNode(err error) bool { return errors.Is(err, pubsub.ErrNoNode) }

func randomID() string { return pubsub.RandomID() }
