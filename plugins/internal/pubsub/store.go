package pubsub

import (
	"context"
	"errors"
	"fmt"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Layout says where one kind of service keeps its state: four map stores
// (storage.Modules), so each gets its own quota (storage.Limits counts an
// owner's entries in one store).
//
//   - Nodes: one item per node, keyed by the node's name, in the
//     collection "" of the service's owner: the node's configuration.
//   - Items: the node's items keyed by item ID, in publish order (a
//     republished ID moves to the newest place); Limits.Max is the node's
//     max_items, so the oldest go in the same transaction as the new one.
//   - Subscriptions: keyed by the subscriber's JID as it subscribed.
//   - Affiliations: keyed by bare JID, the value is the affiliation.
//
// The items, subscriptions and affiliations of a node live under the
// service's owner in a collection named after the node (PEP: the account
// owns its nodes, and its quota counts them all), or, with PerNodeOwner,
// under an owner of their own, "SERVICE/NODE", in the collection "" (a
// pubsub service: each node its own quota, and a quota check counts one
// node's rows, not the whole service's).
type Layout struct {
	Nodes, Items, Subscriptions, Affiliations string
	PerNodeOwner                              bool
}

// nodesOwner is the owner of a service's node records. A service domain
// ("pubsub.example.com") must not look like an account's bare JID in the
// store (storage.Modules: Users.DeleteUser clears "name" and "name@…"),
// so it gets a slash: "pubsub.example.com/".
func (l Layout) nodesOwner(service string) string {
	if l.PerNodeOwner {
		return service + "/"
	}
	return service
}

// place returns the owner and collection of a node's items,
// subscriptions and affiliations.
func (l Layout) place(service, node string) (owner, coll string) {
	if l.PerNodeOwner {
		return service + "/" + node, ""
	}
	return service, node
}

// nsRecord is the namespace of stored node records. It was named when PEP
// alone had them; the general service's records use it too.
const nsRecord = "urn:xmpp:aviary:pep"

// recordLimits bounds what the store parses back; writes are bounded by
// the stanza size limit, which an operator may raise past the reader
// default.
var recordLimits = wire.Limits{MaxStanzaBytes: 16 << 20}

// Item is one published item.
type Item struct {
	ID        string
	Publisher string // bare JID, "" when unknown
	Payload   *wire.Element
	// Version is the store's version of this write of the item: every
	// write gets a new one, later writes of a node greater ones (0: not
	// stored). It tells two copies of one publish apart from two
	// publishes of one item ID, which PEP needs to send each once.
	Version int64
}

// Element returns the <item/> as results and notifications carry it.
func (it *Item) Element(withPayload bool) *wire.Element {
	el := wire.New("item", "id", it.ID)
	if it.Publisher != "" {
		el.SetAttr("publisher", it.Publisher)
	}
	if withPayload && it.Payload != nil {
		el.Append(it.Payload.Copy())
	}
	return el
}

func parseItem(value []byte) (*Item, error) {
	el, err := wire.Parse(value, recordLimits)
	if err != nil {
		return nil, err
	}
	return itemOf(el), nil
}

func itemOf(el *wire.Element) *Item {
	it := &Item{ID: el.Attr("id"), Publisher: el.Attr("publisher")}
	if len(el.Children) > 0 {
		it.Payload = el.Children[0]
	}
	return it
}

// Subscription is one entity's subscription to a node. Every stored
// subscription is in the state "subscribed": nodes with the authorize
// access model, which would make pending ones, are not offered.
type Subscription struct {
	JID     string
	SubID   string
	Options SubscribeOptions
}

func (s *Subscription) bytes() []byte {
	el := wire.New("subscription", "jid", s.JID, "subid", s.SubID)
	if !s.Options.Deliver {
		el.SetAttr("deliver", "false")
	}
	return []byte(el.String())
}

func parseSubscription(value []byte) (*Subscription, error) {
	el, err := wire.Parse(value, recordLimits)
	if err != nil {
		return nil, err
	}
	return &Subscription{JID: el.Attr("jid"), SubID: el.Attr("subid"), Options: SubscribeOptions{Deliver: el.Attr("deliver") != "false"}}, nil
}

// Affiliations (XEP-0060 §4.1).
const (
	AffOwner       = "owner"
	AffPublisher   = "publisher"
	AffPublishOnly = "publish-only"
	AffMember      = "member"
	AffNone        = "none"
	AffOutcast     = "outcast"
)

func validAffiliation(a string) bool {
	switch a {
	case AffOwner, AffPublisher, AffPublishOnly, AffMember, AffNone, AffOutcast:
		return true
	}
	return false
}

// store is the engine's persistence: the four map stores of a Layout.
type store struct {
	st     storage.Store
	layout Layout
	limits Limits
	log    func(msg string, args ...any)
}

func (s *store) nodes() storage.Map { return s.st.Map(s.layout.Nodes) }
func (s *store) items() storage.Map { return s.st.Map(s.layout.Items) }
func (s *store) subs() storage.Map  { return s.st.Map(s.layout.Subscriptions) }
func (s *store) affs() storage.Map  { return s.st.Map(s.layout.Affiliations) }

// loadNode reads a node's configuration; ErrNoNode when it does not
// exist. A record of the single-item PEP (before items had a store of
// their own) carries its last item: it is moved to the items store on
// the first read, so nothing of it is lost.
func (s *store) loadNode(ctx context.Context, service, node string, defaults Config) (*Config, error) {
	it, err := s.nodes().Get(ctx, s.layout.nodesOwner(service), "", node)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNoNode
	}
	if err != nil {
		return nil, err
	}
	el, err := wire.Parse(it.Value, recordLimits)
	if err != nil || el.Name != "node" || el.NS() != nsRecord {
		s.log("pubsub: unreadable node record, treating it as absent", "service", service, "node", node, "err", err)
		return nil, ErrNoNode
	}
	cfg := defaults
	if x := el.Child("x", NSData); x != nil {
		if err := cfg.Apply(x); err != nil {
			s.log("pubsub: node record with a bad configuration, keeping the defaults for it", "service", service, "node", node, "err", err)
		}
	} else if a := el.Attr("access"); a != "" {
		cfg.AccessModel = a
	}
	if legacy := el.Child("item", ""); legacy != nil {
		if err := s.migrateLegacyItem(ctx, service, node, &cfg, legacy); err != nil {
			return nil, err
		}
	}
	return &cfg, nil
}

// migrateLegacyItem moves the item a single-item PEP record carried into
// the items store (unless the node already has an item of that ID: a
// concurrent reader moved it) and rewrites the record without it.
func (s *store) migrateLegacyItem(ctx context.Context, service, node string, cfg *Config, legacy *wire.Element) error {
	if len(legacy.Children) == 1 && legacy.Attr("id") != "" {
		owner, coll := s.layout.place(service, node)
		_, err := s.items().Get(ctx, owner, coll, legacy.Attr("id"))
		if errors.Is(err, storage.ErrNotFound) {
			it := itemOf(legacy)
			// No quota here: the item was stored under the old one.
			_, err = s.items().Set(ctx, owner, coll, it.ID, []byte(it.Element(true).String()), storage.Limits{Max: cfg.MaxItems})
		}
		if err != nil {
			return fmt.Errorf("pubsub: moving the last item of %s %s to the items store: %w", service, node, err)
		}
	}
	_, err := s.nodes().Set(ctx, s.layout.nodesOwner(service), "", node, recordBytes(cfg), storage.Limits{})
	return err
}

func recordBytes(cfg *Config) []byte {
	el := wire.NewNS("node", nsRecord)
	// The access attribute is what a node of the previous release reads.
	el.SetAttr("access", cfg.AccessModel)
	el.Append(cfg.Form("submit", nil))
	return []byte(el.String())
}

// saveNode writes a node's configuration; creating one counts against
// the service's node quota.
func (s *store) saveNode(ctx context.Context, service, node string, cfg *Config) error {
	_, err := s.nodes().Set(ctx, s.layout.nodesOwner(service), "", node, recordBytes(cfg), s.limits.Nodes)
	if s.layout.PerNodeOwner {
		// The node quota is the service's, whatever the rest is counted per.
		l := s.limits
		l.Per = "service"
		return l.quotaError(err, "nodes")
	}
	return s.limits.quotaError(err, "nodes")
}

// nodeExists reports whether a node record exists (without parsing it).
func (s *store) nodeExists(ctx context.Context, service, node string) (bool, error) {
	_, err := s.nodes().Get(ctx, s.layout.nodesOwner(service), "", node)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// listNodes returns the names of a service's nodes, oldest first.
func (s *store) listNodes(ctx context.Context, service string) ([]string, error) {
	list, err := s.nodes().List(ctx, s.layout.nodesOwner(service), "", storage.MapQuery{})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i, it := range list {
		out[i] = it.Key
	}
	return out, nil
}

// deleteNode removes a node with its items, subscriptions and
// affiliations. The record goes first: a node that fails half-way is
// gone for clients, and what is left of it is cleared by the next
// create (see createNode).
func (s *store) deleteNode(ctx context.Context, service, node string) error {
	if err := s.nodes().Delete(ctx, s.layout.nodesOwner(service), "", node); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return s.clearNode(ctx, service, node)
}

// clearNode removes whatever items, subscriptions and affiliations a
// node left.
func (s *store) clearNode(ctx context.Context, service, node string) error {
	owner, coll := s.layout.place(service, node)
	for _, m := range []storage.Map{s.items(), s.subs(), s.affs()} {
		if _, err := m.DeleteCollection(ctx, owner, coll); err != nil {
			return err
		}
	}
	return nil
}

// putItem stores an item, evicting the oldest past max_items. Past the
// owner's byte quota it fails with not-acceptable naming the limit.
func (s *store) putItem(ctx context.Context, service, node string, cfg *Config, it *Item) error {
	owner, coll := s.layout.place(service, node)
	lim := s.limits.Items
	lim.Max = cfg.MaxItems
	v, err := s.items().Set(ctx, owner, coll, it.ID, []byte(it.Element(true).String()), lim)
	if err != nil {
		return s.limits.quotaError(err, "items")
	}
	it.Version = v
	return nil
}

// getItem returns one item; nil when absent.
func (s *store) getItem(ctx context.Context, service, node, id string) (*Item, error) {
	owner, coll := s.layout.place(service, node)
	v, err := s.items().Get(ctx, owner, coll, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	it, err := parseItem(v.Value)
	if err != nil {
		return nil, err
	}
	it.Version = v.Version
	return it, nil
}

// listItems returns a node's items, oldest first: all of them, or the
// newest max when max > 0.
func (s *store) listItems(ctx context.Context, service, node string, max int) ([]*Item, error) {
	owner, coll := s.layout.place(service, node)
	q := storage.MapQuery{}
	if max > 0 {
		q = storage.MapQuery{Limit: max, Newest: true}
	}
	list, err := s.items().List(ctx, owner, coll, q)
	if err != nil {
		return nil, err
	}
	out := make([]*Item, 0, len(list))
	for _, v := range list {
		it, err := parseItem(v.Value)
		if err != nil {
			s.log("pubsub: unreadable item, left out", "service", service, "node", node, "id", v.Key, "err", err)
			continue
		}
		it.Version = v.Version
		out = append(out, it)
	}
	if q.Newest {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, nil
}

// lastItem returns a node's newest item; nil when it has none.
func (s *store) lastItem(ctx context.Context, service, node string) (*Item, error) {
	items, err := s.listItems(ctx, service, node, 1)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	return items[0], nil
}

// deleteItem removes one item; false when it was absent.
func (s *store) deleteItem(ctx context.Context, service, node, id string) (bool, error) {
	owner, coll := s.layout.place(service, node)
	err := s.items().Delete(ctx, owner, coll, id)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// purgeItems removes every item of a node.
func (s *store) purgeItems(ctx context.Context, service, node string) error {
	owner, coll := s.layout.place(service, node)
	_, err := s.items().DeleteCollection(ctx, owner, coll)
	return err
}

// trimItems keeps a node's newest max items (after max_items was
// lowered; publishing evicts on its own).
func (s *store) trimItems(ctx context.Context, service, node string, max int) error {
	if max <= 0 {
		return nil
	}
	owner, coll := s.layout.place(service, node)
	list, err := s.items().List(ctx, owner, coll, storage.MapQuery{Newest: true})
	if err != nil {
		return err
	}
	for i := max; i < len(list); i++ {
		if err := s.items().Delete(ctx, owner, coll, list[i].Key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return nil
}

// subscriptions returns a node's subscriptions.
func (s *store) subscriptions(ctx context.Context, service, node string) ([]*Subscription, error) {
	owner, coll := s.layout.place(service, node)
	list, err := s.subs().List(ctx, owner, coll, storage.MapQuery{})
	if err != nil {
		return nil, err
	}
	out := make([]*Subscription, 0, len(list))
	for _, v := range list {
		sub, err := parseSubscription(v.Value)
		if err != nil {
			s.log("pubsub: unreadable subscription, left out", "service", service, "node", node, "jid", v.Key, "err", err)
			continue
		}
		out = append(out, sub)
	}
	return out, nil
}

// subscription returns jid's subscription to a node; nil when none.
func (s *store) subscription(ctx context.Context, service, node, jid string) (*Subscription, error) {
	owner, coll := s.layout.place(service, node)
	v, err := s.subs().Get(ctx, owner, coll, jid)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseSubscription(v.Value)
}

func (s *store) putSubscription(ctx context.Context, service, node string, sub *Subscription) error {
	owner, coll := s.layout.place(service, node)
	_, err := s.subs().Set(ctx, owner, coll, sub.JID, sub.bytes(), s.limits.Subscriptions)
	if errors.Is(err, storage.ErrQuotaExceeded) {
		return errTooManySubs
	}
	return err
}

func (s *store) deleteSubscription(ctx context.Context, service, node, jid string) error {
	owner, coll := s.layout.place(service, node)
	err := s.subs().Delete(ctx, owner, coll, jid)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// affiliations returns a node's stored affiliations by bare JID.
func (s *store) affiliations(ctx context.Context, service, node string) (map[string]string, error) {
	owner, coll := s.layout.place(service, node)
	list, err := s.affs().List(ctx, owner, coll, storage.MapQuery{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list))
	for _, v := range list {
		out[v.Key] = string(v.Value)
	}
	return out, nil
}

// setAffiliation stores one; "none" removes it.
func (s *store) setAffiliation(ctx context.Context, service, node, jid, aff string) error {
	owner, coll := s.layout.place(service, node)
	if aff == AffNone {
		err := s.affs().Delete(ctx, owner, coll, jid)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	}
	_, err := s.affs().Set(ctx, owner, coll, jid, []byte(aff), s.limits.Affiliations)
	return s.limits.quotaError(err, "affiliations")
}

// Limits are the quotas a service's writes are checked against (zero
// fields: none). Items.Max is ignored: each node's max_items sets it.
type Limits struct {
	Nodes         storage.Limits
	Items         storage.Limits
	Subscriptions storage.Limits
	Affiliations  storage.Limits
	// What names the storage in quota errors ("PEP storage"), Per the
	// owner it is counted for ("account").
	What, Per string
}

// SettingLimits reads the quotas both services take from their settings:
// max_nodes (nodes of the service) and max_bytes (bytes of items: PEP's
// for the account, the service's per node), each with its default, 0
// meaning none. maxRows bounds the subscriptions and affiliations others
// may make the owner store. what and per name the storage in errors.
func SettingLimits(cfg *conf.Config, id string, defNodes, defBytes, maxRows int, what, per string) Limits {
	return Limits{
		Nodes:         storage.Limits{Items: plugins.SettingInt(cfg, id, "max_nodes", defNodes)},
		Items:         storage.Limits{Bytes: int64(plugins.SettingInt(cfg, id, "max_bytes", defBytes))},
		Subscriptions: storage.Limits{Items: maxRows},
		Affiliations:  storage.Limits{Items: maxRows},
		What:          what, Per: per,
	}
}

// quotaError turns a store's quota error into not-acceptable with a text
// naming the limit, e.g. "PEP storage is full: at most 1000 nodes per
// account". Other errors pass through.
func (l Limits) quotaError(err error, items string) error {
	what, per := l.What, l.Per
	if what == "" {
		what = "pubsub storage"
	}
	if per == "" {
		per = "node"
	}
	return xmpputil.QuotaErrorPer(err, what, items, per)
}
