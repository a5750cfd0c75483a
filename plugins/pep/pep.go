// Package pep is XEP-0163 Personal Eventing Protocol: every local account
// is a small publish-subscribe service (XEP-0060) at its bare JID, on which
// only the owner publishes and whose notifications go to the owner's own
// resources and to contacts subscribed to the owner's presence, filtered by
// what each client says it wants (XEP-0115 caps with NODE+notify features).
//
// IQs (namespace pubsub, and pubsub#owner for delete; no 'to' or 'to' the
// account's bare JID):
//   - publish (with optional publish-options): owner only; the node is
//     created on first publish (auto-create). Each node keeps its last item
//     only (max_items 1, as PEP nodes usually do).
//   - items (all, max_items, or by id), create, retract, and, for the
//     owner (pubsub#owner), configure (the access model) and delete.
//
// disco#info on the account reports pubsub/pep and the features below;
// disco#info on a node reports pubsub/leaf to whoever may retrieve it.
// There is no node index yet, so disco#items on the account lists nothing.
//
// Access models: presence (the default: the owner and contacts with
// subscription from or both), open (anyone may retrieve; notifications
// still go to presence subscribers only) and whitelist (the owner alone).
//
// Storage. Each node is one item of the map store "pep" (storage.Modules),
// in the account's collection "" under the node's name: the node's access
// model and its last item. (Schema migration 2 moved them there from the
// private XML store, where they were kept under "#pep NODE" keys.) Several
// items per node (max_items) will be items of a collection per node with
// storage.Limits.Max. Each account may keep at most max_nodes nodes of
// max_bytes in all (plugins.settings["xep0163.pep"]; defaults 1000 and
// 10 MiB, 0 for no limit); a publish, create or configure past either gets
// not-acceptable with a text naming the limit and changes nothing.
//
// Who gets notifications (caps.go). The plugin watches presence at two
// interceptor points: PointInbound sees a local user's broadcast presence
// (the owner's own resources), PointDeliver sees every presence delivered
// to a local session (a contact's resource, delivered to the owner). For
// each owner it keeps, in memory, the full JIDs whose presence it saw with
// their caps version; a version is resolved to its +notify features with a
// disco#info query (sent from the owner's bare JID to the contact's full
// JID, as Prosody does), cached by version. When a recipient becomes
// available or its caps change, the last item of every node it newly asks
// for is sent to it; this is how a late subscriber, or a client that just
// changed its notification filter, gets the current state.
//
// Cluster. Items live in the shared store. The recipient table is rebuilt
// on each node from the presence that node delivers: an owner publishes
// from a session on some node, and that session received (on login probes
// and later broadcasts) the presence of every contact and of the owner's
// other resources, on whatever node they are. Verified caps versions
// (sha-1, checked against the XEP-0115 hash) are also written to the
// shared properties ("pep.caps.<ver>"), because the answer to a caps query
// arrives on the node of the client that answers, which may not be the
// node that asked; that node resolves it from the shared entry next time.
package pep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0163.pep"

// Namespaces.
const (
	NSPubSub  = "http://jabber.org/protocol/pubsub"
	NSOwner   = "http://jabber.org/protocol/pubsub#owner"
	NSEvent   = "http://jabber.org/protocol/pubsub#event"
	NSErrors  = "http://jabber.org/protocol/pubsub#errors"
	NSCaps    = "http://jabber.org/protocol/caps"
	NSData    = "jabber:x:data"
	nsStorage = "urn:xmpp:aviary:pep" // the stored node record
)

// Access models.
const (
	AccessPresence  = "presence"
	AccessOpen      = "open"
	AccessWhitelist = "whitelist"
)

// Default quotas per account.
const (
	DefaultMaxNodes = 1000
	DefaultMaxBytes = 10 << 20
)

// workTimeout bounds background work (caps queries, last-item sends).
const workTimeout = 10 * time.Second

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin is the PEP service of every local account.
type Plugin struct {
	host   plugins.Host
	now    func() time.Time
	remove func()
	limits storage.Limits

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
	_ plugins.Configurable      = (*Plugin)(nil)
)

// Settings documents plugins.settings["xep0163.pep"].
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{
		{Key: "max_nodes", Type: "int", Default: strconv.Itoa(DefaultMaxNodes), Doc: "PEP nodes one account may have (0: no limit)"},
		{Key: "max_bytes", Type: "int", Default: strconv.Itoa(DefaultMaxBytes), Doc: "bytes of PEP nodes and items one account may store, all together (0: no limit)"},
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

// AccountFeatures are the XEP-0060 features this service implements.
func (p *Plugin) AccountFeatures() []string { return accountFeatures }

var accountFeatures = []string{
	NSPubSub,
	NSPubSub + "#access-open",
	NSPubSub + "#access-presence",
	NSPubSub + "#access-whitelist",
	NSPubSub + "#auto-create",
	NSPubSub + "#auto-subscribe",
	NSPubSub + "#config-node",
	NSPubSub + "#create-nodes",
	NSPubSub + "#delete-nodes",
	NSPubSub + "#filtered-notifications",
	NSPubSub + "#item-ids",
	NSPubSub + "#last-published",
	NSPubSub + "#persistent-items",
	NSPubSub + "#presence-notifications",
	NSPubSub + "#publish",
	NSPubSub + "#publish-options",
	NSPubSub + "#retract-items",
	NSPubSub + "#retrieve-items",
}

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
	p.limits = xmpputil.Limits(host.Config(), ID, "max_nodes", DefaultMaxNodes, "max_bytes", DefaultMaxBytes)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	removeClosed := host.Hooks().Add(plugins.EventSessionClosed, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.SessionEvent); ok {
			p.sessionClosed(ctx, ev.JID)
		}
		return nil
	})
	removeRoster := host.Hooks().Add(plugins.EventRosterChanged, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.RosterEvent); ok {
			p.rosterChanged(ev)
		}
		return nil
	})
	p.remove = func() { removeClosed(); removeRoster() }
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
	if owner == "" || xmpputil.Local(owner) == "" {
		return nil, wire.ErrServiceUnavailable
	}
	requester := xmpputil.Requester(iq)
	isOwner := iq.FromLocal && requester == owner
	q := iq.Payload()
	typ := iq.Stanza.Type()
	if q.NS() == NSOwner {
		if !isOwner {
			return nil, wire.ErrForbidden
		}
		return p.ownerIQ(ctx, owner, typ, q)
	}
	var verb *wire.Element
	for _, c := range q.Children {
		if c.Name == "publish-options" {
			continue
		}
		verb = c
		break
	}
	if verb == nil {
		return nil, wire.ErrBadRequest
	}
	switch {
	case typ == "set" && verb.Name == "publish":
		if !isOwner {
			return nil, wire.ErrForbidden
		}
		return p.publish(ctx, owner, iq.From, verb, q.Child("publish-options", ""))
	case typ == "get" && verb.Name == "items":
		return p.items(ctx, owner, requester, isOwner, verb)
	case typ == "set" && verb.Name == "create":
		if !isOwner {
			return nil, wire.ErrForbidden
		}
		return p.create(ctx, owner, verb, q.Child("configure", ""))
	case typ == "set" && verb.Name == "retract":
		if !isOwner {
			return nil, wire.ErrForbidden
		}
		return p.retract(ctx, owner, verb)
	case verb.Name == "subscribe" || verb.Name == "unsubscribe" || verb.Name == "subscriptions" ||
		verb.Name == "affiliations" || verb.Name == "options" || verb.Name == "default":
		// PEP subscriptions are implicit (presence and caps).
		return nil, wire.ErrFeatureNotImplemented
	}
	return nil, wire.ErrBadRequest
}

// publish stores an item (creating the node on first use) and notifies.
func (p *Plugin) publish(ctx context.Context, owner, from string, pub, options *wire.Element) (*wire.Element, error) {
	node := pub.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	items := pub.ChildrenNamed("item", "")
	if len(items) != 1 {
		return nil, errItemRequired
	}
	payload := payloadOf(items[0])
	if payload == nil {
		return nil, errInvalidPayload
	}
	access, err := accessFromForm(options)
	if err != nil {
		return nil, err
	}
	rec, err := p.load(ctx, owner, node)
	switch {
	case err == errNoNode:
		rec = &record{access: AccessPresence}
		if access != "" {
			rec.access = access
		}
	case err != nil:
		return nil, err
	case access != "" && access != rec.access:
		return nil, errPreconditionNotMet
	}
	id := items[0].Attr("id")
	if id == "" {
		id = randomID()
	}
	rec.itemID, rec.publisher, rec.payload = id, xmpputil.Bare(from), payload.Copy()
	if err := p.save(ctx, owner, node, rec); err != nil {
		return nil, err
	}
	p.notify(ctx, owner, node, rec, itemsEvent(node, rec))
	res := wire.NewNS("pubsub", NSPubSub)
	res.Append(wire.New("publish", "node", node).Append(wire.New("item", "id", id)))
	return res, nil
}

// payloadOf returns the item's one payload element, which must carry its
// own namespace.
func payloadOf(item *wire.Element) *wire.Element {
	if len(item.Children) != 1 {
		return nil
	}
	pl := item.Children[0]
	if pl.NS() == "" || pl.NS() == NSPubSub {
		return nil
	}
	return pl
}

// accessFromForm reads pubsub#access_model from publish-options or a
// configure form; "" when absent. Other fields are accepted as they are.
func accessFromForm(parent *wire.Element) (string, error) {
	if parent == nil {
		return "", nil
	}
	x := parent.Child("x", NSData)
	if x == nil {
		return "", nil
	}
	for _, f := range x.ChildrenNamed("field", "") {
		if f.Attr("var") != "pubsub#access_model" {
			continue
		}
		v := strings.TrimSpace(f.ChildText("value", ""))
		switch v {
		case AccessPresence, AccessOpen, AccessWhitelist:
			return v, nil
		}
		return "", errPreconditionNotMet
	}
	return "", nil
}

// items answers a retrieval: the last item, or nothing when it was asked
// for by another id.
func (p *Plugin) items(ctx context.Context, owner, requester string, isOwner bool, req *wire.Element) (*wire.Element, error) {
	node := req.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	rec, err := p.load(ctx, owner, node)
	if err == errNoNode {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	if !isOwner {
		ok, err := p.mayRetrieve(ctx, owner, requester, rec.access)
		if err != nil {
			return nil, err
		}
		if !ok {
			if rec.access == AccessPresence {
				return nil, errPresenceSubscriptionRequired
			}
			return nil, errNotInWhitelist
		}
	}
	out := wire.New("items", "node", node)
	if rec.payload != nil && req.Attr("max_items") != "0" {
		want := req.ChildrenNamed("item", "")
		match := len(want) == 0
		for _, w := range want {
			if w.Attr("id") == rec.itemID {
				match = true
			}
		}
		if match {
			out.Append(rec.item())
		}
	}
	return wire.NewNS("pubsub", NSPubSub).Append(out), nil
}

// mayRetrieve applies the access model to someone other than the owner.
func (p *Plugin) mayRetrieve(ctx context.Context, owner, requester, access string) (bool, error) {
	switch access {
	case AccessOpen:
		return true, nil
	case AccessPresence:
		subs, err := p.host.Store().Subscribers(ctx, owner)
		if err != nil {
			return false, err
		}
		for _, s := range subs {
			if s == requester {
				return true, nil
			}
		}
	}
	return false, nil
}

// create makes an empty node; conflict when it exists.
func (p *Plugin) create(ctx context.Context, owner string, req, configure *wire.Element) (*wire.Element, error) {
	node := req.Attr("node")
	if node == "" {
		return nil, wire.ErrNotAcceptable.WithText("instant nodes are not supported by PEP")
	}
	access, err := accessFromForm(configure)
	if err != nil {
		return nil, err
	}
	if _, err := p.load(ctx, owner, node); err == nil {
		return nil, wire.ErrConflict
	} else if err != errNoNode {
		return nil, err
	}
	rec := &record{access: AccessPresence}
	if access != "" {
		rec.access = access
	}
	return nil, p.save(ctx, owner, node, rec)
}

// retract removes the last item when the id matches and, when asked,
// notifies as for a publish.
func (p *Plugin) retract(ctx context.Context, owner string, req *wire.Element) (*wire.Element, error) {
	node := req.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	items := req.ChildrenNamed("item", "")
	if len(items) != 1 || items[0].Attr("id") == "" {
		return nil, errItemRequired
	}
	rec, err := p.load(ctx, owner, node)
	if err == errNoNode {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	id := items[0].Attr("id")
	if rec.payload == nil || rec.itemID != id {
		return nil, wire.ErrItemNotFound
	}
	rec.itemID, rec.publisher, rec.payload = "", "", nil
	if err := p.save(ctx, owner, node, rec); err != nil {
		return nil, err
	}
	if n := req.Attr("notify"); n == "true" || n == "1" {
		ev := wire.NewNS("event", NSEvent).Append(wire.New("items", "node", node).Append(wire.New("retract", "id", id)))
		p.notify(ctx, owner, node, rec, ev)
	}
	return nil, nil
}

// ownerIQ handles pubsub#owner: node configuration (the access model) and
// delete.
func (p *Plugin) ownerIQ(ctx context.Context, owner, typ string, q *wire.Element) (*wire.Element, error) {
	if cfg := q.Child("configure", ""); cfg != nil {
		return p.configure(ctx, owner, typ, cfg)
	}
	del := q.Child("delete", "")
	if typ != "set" || del == nil {
		return nil, wire.ErrFeatureNotImplemented
	}
	node := del.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	rec, err := p.load(ctx, owner, node)
	if err == errNoNode {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := p.drop(ctx, owner, node); err != nil {
		return nil, err
	}
	p.notify(ctx, owner, node, rec, wire.NewNS("event", NSEvent).Append(wire.New("delete", "node", node)))
	return nil, nil
}

// configure returns (get) or applies (set) a node's configuration form;
// pubsub#access_model is its one setting.
func (p *Plugin) configure(ctx context.Context, owner, typ string, req *wire.Element) (*wire.Element, error) {
	node := req.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	rec, err := p.load(ctx, owner, node)
	if err == errNoNode {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	if typ == "get" {
		return wire.NewNS("pubsub", NSOwner).Append(wire.New("configure", "node", node).Append(configForm(rec.access))), nil
	}
	if x := req.Child("x", NSData); x != nil && x.Attr("type") == "cancel" {
		return nil, nil
	}
	access, err := accessFromForm(req)
	if err != nil {
		return nil, wire.ErrNotAcceptable.WithText("unsupported access model")
	}
	if access == "" || access == rec.access {
		return nil, nil
	}
	rec.access = access
	return nil, p.save(ctx, owner, node, rec)
}

// configForm is the node configuration form (XEP-0060 §8.2).
func configForm(access string) *wire.Element {
	x := wire.NewNS("x", NSData).SetAttr("type", "form")
	x.Append(wire.New("field", "var", "FORM_TYPE", "type", "hidden").Append(wire.New("value").SetText(NSPubSub + "#node_config")))
	f := wire.New("field", "var", "pubsub#access_model", "type", "list-single", "label", "Who may subscribe and retrieve items")
	for _, m := range []string{AccessOpen, AccessPresence, AccessWhitelist} {
		f.Append(wire.New("option").Append(wire.New("value").SetText(m)))
	}
	f.Append(wire.New("value").SetText(access))
	x.Append(f)
	x.Append(wire.New("field", "var", "pubsub#max_items", "type", "text-single", "label", "Items kept").Append(wire.New("value").SetText("1")))
	x.Append(wire.New("field", "var", "pubsub#persist_items", "type", "boolean", "label", "Persist items").Append(wire.New("value").SetText("true")))
	return x
}

// AccountNodeInfo answers disco#info on a PEP node for whoever may
// retrieve its items (XEP-0060 §5.3: a leaf node).
func (p *Plugin) AccountNodeInfo(ctx context.Context, from, account, node string) ([]plugins.Identity, []string, bool) {
	rec, err := p.load(ctx, account, node)
	if err != nil {
		return nil, nil, false
	}
	if requester := xmpputil.Bare(from); requester != account {
		if ok, err := p.mayRetrieve(ctx, account, requester, rec.access); err != nil || !ok {
			return nil, nil, false
		}
	}
	return []plugins.Identity{{Category: "pubsub", Type: "leaf"}}, []string{NSPubSub}, true
}

// itemsEvent is the notification of the record's item.
func itemsEvent(node string, rec *record) *wire.Element {
	return wire.NewNS("event", NSEvent).Append(wire.New("items", "node", node).Append(rec.item()))
}

// notify sends an event to every recipient of the owner's node: the
// owner's resources and presence subscribers whose caps ask for
// NODE+notify. Recipients whose caps are not resolved yet get it when
// they are (as the last item).
func (p *Plugin) notify(ctx context.Context, owner, node string, rec *record, event *wire.Element) {
	targets := p.interested(ctx, owner, node)
	if len(targets) == 0 {
		return
	}
	allowed, err := p.allowedContacts(ctx, owner, rec.access)
	if err != nil {
		p.host.Logger().Warn("pep: subscribers", "owner", owner, "err", err)
	}
	for _, full := range targets {
		if b := xmpputil.Bare(full); b != owner && !allowed[b] {
			continue
		}
		p.host.Route(ctx, eventMessage(owner, full, event))
	}
}

// allowedContacts returns the contacts that may get the owner's events
// under an access model (the owner always may).
func (p *Plugin) allowedContacts(ctx context.Context, owner, access string) (map[string]bool, error) {
	if access == AccessWhitelist {
		return nil, nil
	}
	subs, err := p.host.Store().Subscribers(ctx, owner)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(subs))
	for _, s := range subs {
		out[s] = true
	}
	return out, nil
}

func eventMessage(owner, to string, event *wire.Element) *wire.Element {
	return wire.New("message", "type", "headline", "from", owner, "to", to, "id", "pep-"+randomID()).Append(event)
}

// sendLast sends the last item of each node to one recipient, if the
// access model lets it see them.
func (p *Plugin) sendLast(ctx context.Context, owner, full string, nodes []string) {
	if len(nodes) == 0 {
		return
	}
	var allowed map[string]bool
	contact := xmpputil.Bare(full)
	for _, node := range nodes {
		rec, err := p.load(ctx, owner, node)
		if err != nil || rec.payload == nil {
			continue
		}
		if contact != owner {
			if rec.access == AccessWhitelist {
				continue
			}
			if allowed == nil {
				allowed, err = p.allowedContacts(ctx, owner, rec.access)
				if err != nil {
					return
				}
			}
			if !allowed[contact] {
				continue
			}
		}
		p.host.Route(ctx, eventMessage(owner, full, itemsEvent(node, rec)))
	}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
