package pubsub

import (
	"context"
	"errors"
	"sort"
	"strconv"

	"github.com/aviary-im/aviary/wire"
)

// Request is one pubsub IQ get or set addressed to a service.
type Request struct {
	// Service is the PEP account's bare JID or the service's domain.
	Service string
	// From is the sender's full JID; Local is true when it is a user of
	// this domain.
	From  string
	Local bool
	IQ    *wire.Element
}

// HandleIQ answers a pubsub or pubsub#owner IQ: the result payload (nil
// for an empty result) or a stanza error.
func (e *Engine) HandleIQ(ctx context.Context, r Request) (*wire.Element, error) {
	q := r.IQ.FirstChild()
	requester := wire.JIDOf(r.From).Bare()
	if q == nil || q.Name != "pubsub" || requester == "" {
		return nil, wire.ErrBadRequest
	}
	set := r.IQ.Type() == "set"
	if q.NS() == NSOwner {
		return e.ownerIQ(ctx, r, requester, set, q)
	}
	var verb, options, publishOptions, configure *wire.Element
	for _, c := range q.Children {
		switch c.Name {
		case "options":
			options = c
		case "publish-options":
			publishOptions = c
		case "configure":
			configure = c
		default:
			if verb == nil {
				verb = c
			}
		}
	}
	if verb == nil && options != nil {
		verb, options = options, nil
	}
	if verb == nil {
		return nil, wire.ErrBadRequest
	}
	switch {
	case set && verb.Name == "publish":
		return e.publishIQ(ctx, r, requester, verb, publishOptions)
	case set && verb.Name == "retract":
		return nil, e.retractIQ(ctx, r, requester, verb)
	case set && verb.Name == "subscribe":
		return e.subscribe(ctx, r, requester, verb, options)
	case set && verb.Name == "unsubscribe":
		return nil, e.unsubscribe(ctx, r.Service, requester, verb)
	case verb.Name == "options":
		return e.subscriptionOptions(ctx, r.Service, requester, set, verb)
	case !set && verb.Name == "items":
		return e.items(ctx, r.Service, requester, verb)
	case !set && verb.Name == "subscriptions":
		return e.ownSubscriptions(ctx, r.Service, requester, verb.Attr("node"))
	case !set && verb.Name == "affiliations":
		return e.ownAffiliations(ctx, r.Service, requester, verb.Attr("node"))
	case set && verb.Name == "create":
		return e.createIQ(ctx, r, requester, verb, configure)
	case !set && verb.Name == "default":
		return wire.NewNS("pubsub", NS).Append(wire.New("default").Append(SubscribeOptions{Deliver: true}.Form("form"))), nil
	}
	return nil, wire.ErrBadRequest
}

// mayCreate reports whether requester may create nodes on the service.
func (e *Engine) mayCreate(r Request, requester string) bool {
	if e.opts.PEP {
		return requester == r.Service && r.Local
	}
	if e.implicitOwner(r.Service, requester) {
		return true
	}
	return e.opts.MayCreate != nil && e.opts.MayCreate(r.Service, requester, r.Local)
}

// createNode stores a new node with requester as its owner.
func (e *Engine) createNode(ctx context.Context, service, node, requester string, cfg *Config) error {
	// What a half-finished delete left under this name goes first.
	if err := e.st.clearNode(ctx, service, node); err != nil {
		return err
	}
	if err := e.st.saveNode(ctx, service, node, cfg); err != nil {
		return err
	}
	if !e.opts.PEP {
		return e.st.setAffiliation(ctx, service, node, requester, AffOwner)
	}
	return nil
}

func (e *Engine) createIQ(ctx context.Context, r Request, requester string, create, configure *wire.Element) (*wire.Element, error) {
	if !e.mayCreate(r, requester) {
		return nil, wire.ErrForbidden
	}
	node := create.Attr("node")
	instant := node == ""
	if instant {
		if !e.opts.InstantNodes {
			return nil, pubsubError(wire.ErrNotAcceptable, "nodeid-required")
		}
		node = RandomID()
	}
	if ok, err := e.st.nodeExists(ctx, r.Service, node); err != nil {
		return nil, err
	} else if ok {
		return nil, wire.ErrConflict
	}
	cfg := e.opts.Defaults
	if configure != nil {
		if x := configure.Child("x", NSData); x != nil {
			if err := cfg.Apply(x); err != nil {
				return nil, err
			}
		}
	}
	if err := e.createNode(ctx, r.Service, node, requester, &cfg); err != nil {
		return nil, err
	}
	if instant {
		return wire.NewNS("pubsub", NS).Append(wire.New("create", "node", node)), nil
	}
	return nil, nil
}

// publishIQ is XEP-0060 §7.1 with XEP-0223 publish-options.
func (e *Engine) publishIQ(ctx context.Context, r Request, requester string, pub, options *wire.Element) (*wire.Element, error) {
	node := pub.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	items := pub.ChildrenNamed("item", "")
	if len(items) > 1 {
		return nil, errInvalidPayload.WithText("one item per publish")
	}
	var form *wire.Element
	if options != nil {
		form = options.Child("x", NSData)
	}
	n, err := e.node(ctx, r.Service, node)
	create := false
	switch {
	case errors.Is(err, ErrNoNode):
		if !e.opts.AutoCreate || !e.mayCreate(r, requester) {
			if e.opts.PEP {
				return nil, wire.ErrForbidden // only the account publishes by default
			}
			return nil, wire.ErrItemNotFound
		}
		cfg := e.opts.Defaults
		if form != nil {
			if err := cfg.Apply(form); err != nil {
				return nil, errPreconditionNotMet(err.Error())
			}
		}
		n, create = &nodeRef{service: r.Service, node: node, cfg: &cfg}, true
	case err != nil:
		return nil, err
	case form != nil:
		if err := n.cfg.Preconditions(form); err != nil {
			return nil, err
		}
	}
	if !create {
		if err := e.mayPublish(ctx, n, requester, r.From); err != nil {
			return nil, err
		}
	}
	// The item is checked before a node is auto-created for it: a
	// refused publish leaves nothing behind.
	it, err := itemToPublish(n.cfg, items, requester)
	if err != nil {
		return nil, err
	}
	if create {
		if err := e.createNode(ctx, r.Service, node, requester, n.cfg); err != nil {
			return nil, err
		}
	}
	if err := e.publish(ctx, n, it); err != nil {
		return nil, err
	}
	if e.opts.Changed != nil {
		e.opts.Changed(ctx, Change{Kind: Published, Service: r.Service, Node: node, Item: it, From: r.From})
	}
	res := wire.NewNS("pubsub", NS)
	res.Append(wire.New("publish", "node", node).Append(wire.New("item", "id", it.ID)))
	return res, nil
}

// mayPublish applies the publish model (XEP-0060 §7.1.3.1).
func (e *Engine) mayPublish(ctx context.Context, n *nodeRef, requester, from string) error {
	aff, err := e.affiliation(ctx, n, requester)
	if err != nil {
		return err
	}
	switch aff {
	case AffOwner, AffPublisher, AffPublishOnly:
		return nil
	case AffOutcast:
		return wire.ErrForbidden
	}
	switch n.cfg.PublishModel {
	case PublishOpen:
		return nil
	case PublishSubscribers:
		for _, j := range []string{requester, from} {
			if s, err := e.st.subscription(ctx, n.service, n.node, j); err != nil {
				return err
			} else if s != nil {
				return nil
			}
		}
	}
	return wire.ErrForbidden
}

// itemToPublish checks a publish request's item against the node's
// event type (XEP-0060 §7.1.3.6): a persistent or payload-delivering
// node needs an item, a transient notification-only node must not get
// one; payloads are one element in a namespace of their own.
func itemToPublish(cfg *Config, items []*wire.Element, publisher string) (*Item, error) {
	if len(items) == 0 {
		if cfg.PersistItems || cfg.DeliverPayloads {
			return nil, errItemRequired
		}
		return &Item{ID: RandomID(), Publisher: publisher}, nil
	}
	if !cfg.PersistItems && !cfg.DeliverPayloads {
		return nil, errItemForbidden
	}
	el := items[0]
	it := &Item{ID: el.Attr("id"), Publisher: publisher}
	if it.ID == "" {
		it.ID = RandomID()
	}
	switch len(el.Children) {
	case 0:
		if cfg.DeliverPayloads {
			return nil, errPayloadRequired
		}
		return it, nil
	case 1:
	default:
		return nil, errInvalidPayload.WithText("one payload element per item")
	}
	pl := el.Children[0]
	if pl.NS() == "" || pl.NS() == NS {
		return nil, errInvalidPayload.WithText("the payload needs a namespace of its own")
	}
	if cfg.Type != "" && pl.NS() != cfg.Type {
		return nil, errInvalidPayload.WithText("the node's payloads are " + cfg.Type)
	}
	p := pl.Copy()
	p.Tail = ""
	if cfg.MaxPayloadSize > 0 && len(p.String()) > cfg.MaxPayloadSize {
		return nil, errPayloadTooBig
	}
	it.Payload = p
	return it, nil
}

// publish stores an item (when the node persists items) and notifies.
func (e *Engine) publish(ctx context.Context, n *nodeRef, it *Item) error {
	if n.cfg.PersistItems {
		if err := e.st.putItem(ctx, n.service, n.node, n.cfg, it); err != nil {
			return err
		}
	}
	e.notify(ctx, n, itemsEvent(n, it), nil, it)
	return nil
}

// notifyRequested reads a retract's notify attribute: explicit true or
// false, or the node's notify_retract when absent.
func notifyRequested(attr string, def bool) bool {
	switch attr {
	case "true", "1":
		return true
	case "false", "0":
		return false
	}
	return def
}

// retractIQ is XEP-0060 §7.2.
func (e *Engine) retractIQ(ctx context.Context, r Request, requester string, req *wire.Element) error {
	node := req.Attr("node")
	if node == "" {
		return errNodeIDRequired
	}
	var ids []string
	for _, it := range req.ChildrenNamed("item", "") {
		if it.Attr("id") == "" {
			return errItemRequired
		}
		ids = append(ids, it.Attr("id"))
	}
	if len(ids) == 0 {
		return errItemRequired
	}
	n, err := e.node(ctx, r.Service, node)
	if errors.Is(err, ErrNoNode) {
		return wire.ErrItemNotFound
	}
	if err != nil {
		return err
	}
	if !n.cfg.PersistItems {
		return errNoItemsWithoutStore
	}
	aff, err := e.affiliation(ctx, n, requester)
	if err != nil {
		return err
	}
	for _, id := range ids {
		it, err := e.st.getItem(ctx, n.service, n.node, id)
		if err != nil {
			return err
		}
		if it == nil {
			return wire.ErrItemNotFound
		}
		switch {
		case aff == AffOwner || aff == AffPublisher:
		case aff == AffPublishOnly && it.Publisher == requester:
		default:
			return wire.ErrForbidden
		}
	}
	notify := notifyRequested(req.Attr("notify"), n.cfg.NotifyRetract)
	for _, id := range ids {
		if err := e.retract(ctx, n, id, notify); err != nil {
			return err
		}
		if e.opts.Changed != nil {
			e.opts.Changed(ctx, Change{Kind: Retracted, Service: r.Service, Node: node, ItemID: id, From: r.From})
		}
	}
	return nil
}

// retract deletes an item and, when asked, notifies its removal.
func (e *Engine) retract(ctx context.Context, n *nodeRef, id string, notify bool) error {
	ok, err := e.st.deleteItem(ctx, n.service, n.node, id)
	if err != nil || !ok {
		return err
	}
	if notify {
		e.notify(ctx, n, eventElement(wire.New("items", "node", n.node).Append(wire.New("retract", "id", id))), nil, nil)
	}
	return nil
}

// items is XEP-0060 §6.5: every item, the newest max_items, or those
// asked for by ID (missing IDs are left out).
func (e *Engine) items(ctx context.Context, service, requester string, req *wire.Element) (*wire.Element, error) {
	node := req.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	n, err := e.node(ctx, service, node)
	if errors.Is(err, ErrNoNode) {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := e.checkAccess(ctx, n, requester); err != nil {
		return nil, err
	}
	out := wire.New("items", "node", node)
	res := wire.NewNS("pubsub", NS).Append(out)
	if !n.cfg.PersistItems {
		return res, nil
	}
	var list []*Item
	if want := req.ChildrenNamed("item", ""); len(want) > 0 {
		for _, w := range want {
			it, err := e.st.getItem(ctx, service, node, w.Attr("id"))
			if err != nil {
				return nil, err
			}
			if it != nil {
				list = append(list, it)
			}
		}
	} else {
		max := 0
		if m := req.Attr("max_items"); m != "" {
			v, err := strconv.Atoi(m)
			if err != nil || v < 0 {
				return nil, wire.ErrBadRequest.WithText("max_items is not a number")
			}
			if v == 0 {
				return res, nil
			}
			max = v
		}
		if list, err = e.st.listItems(ctx, service, node, max); err != nil {
			return nil, err
		}
	}
	for _, it := range list {
		out.Append(it.Element(true))
	}
	return res, nil
}

// subscriberJID checks the jid attribute of a subscribe, unsubscribe or
// options request: it must be the requester's own bare or full JID
// (XEP-0060 §6.1.3.1).
func subscriberJID(req *wire.Element, requester string) (string, error) {
	j := wire.JIDOf(req.Attr("jid")).String()
	if j == "" || wire.BareJID(j) != requester {
		return "", errInvalidJID
	}
	return j, nil
}

// subscribe is XEP-0060 §6.1, with subscription options (§6.3.7).
func (e *Engine) subscribe(ctx context.Context, r Request, requester string, req, options *wire.Element) (*wire.Element, error) {
	node, jid, err := subscriptionRequest(req, requester)
	if err != nil {
		return nil, err
	}
	n, err := e.node(ctx, r.Service, node)
	if errors.Is(err, ErrNoNode) {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	if !n.cfg.Subscribe {
		return nil, unsupported("subscribe")
	}
	if err := e.checkAccess(ctx, n, requester); err != nil {
		return nil, err
	}
	sub, err := e.st.subscription(ctx, r.Service, node, jid)
	if err != nil {
		return nil, err
	}
	if sub == nil {
		sub = &Subscription{JID: jid, SubID: RandomID(), Options: SubscribeOptions{Deliver: true}}
	}
	if options != nil {
		if x := options.Child("x", NSData); x != nil {
			if err := sub.Options.apply(x); err != nil {
				return nil, errInvalidOptions.WithText(err.Error())
			}
		}
	}
	if err := e.st.putSubscription(ctx, r.Service, node, sub); err != nil {
		return nil, err
	}
	if n.cfg.SendLastPublishedItem != SendLastNever && n.cfg.DeliverNotifications {
		e.sendLast(ctx, n, jid, nil)
	}
	return wire.NewNS("pubsub", NS).Append(subscriptionElement(node, sub, true)), nil
}

func subscriptionElement(node string, s *Subscription, withNode bool) *wire.Element {
	el := wire.New("subscription")
	if withNode {
		el.SetAttr("node", node)
	}
	el.SetAttr("jid", s.JID)
	el.SetAttr("subid", s.SubID)
	el.SetAttr("subscription", "subscribed")
	return el
}

// subscriptionRequest reads the node and jid of a subscribe,
// unsubscribe or options request.
func subscriptionRequest(req *wire.Element, requester string) (node, jid string, err error) {
	node = req.Attr("node")
	if node == "" {
		return "", "", errNodeIDRequired
	}
	jid, err = subscriberJID(req, requester)
	return node, jid, err
}

// existingSubscription returns the subscription an unsubscribe or
// options request names (its subid, if any, must match).
func (e *Engine) existingSubscription(ctx context.Context, service, requester string, req *wire.Element) (string, *Subscription, error) {
	node, jid, err := subscriptionRequest(req, requester)
	if err != nil {
		return "", nil, err
	}
	if ok, err := e.st.nodeExists(ctx, service, node); err != nil {
		return "", nil, err
	} else if !ok {
		return "", nil, wire.ErrItemNotFound
	}
	sub, err := e.st.subscription(ctx, service, node, jid)
	if err != nil {
		return "", nil, err
	}
	if sub == nil {
		return "", nil, errNotSubscribed
	}
	if id := req.Attr("subid"); id != "" && id != sub.SubID {
		return "", nil, errInvalidSubID
	}
	return node, sub, nil
}

// unsubscribe is XEP-0060 §6.2.
func (e *Engine) unsubscribe(ctx context.Context, service, requester string, req *wire.Element) error {
	node, sub, err := e.existingSubscription(ctx, service, requester, req)
	if err != nil {
		return err
	}
	return e.st.deleteSubscription(ctx, service, node, sub.JID)
}

// subscriptionOptions gets or sets a subscription's options (§6.3).
func (e *Engine) subscriptionOptions(ctx context.Context, service, requester string, set bool, req *wire.Element) (*wire.Element, error) {
	node, sub, err := e.existingSubscription(ctx, service, requester, req)
	if err != nil {
		return nil, err
	}
	jid := sub.JID
	if !set {
		opts := wire.New("options", "node", node, "jid", jid, "subid", sub.SubID).Append(sub.Options.Form("form"))
		return wire.NewNS("pubsub", NS).Append(opts), nil
	}
	x := req.Child("x", NSData)
	if x == nil {
		return nil, errInvalidOptions
	}
	if err := sub.Options.apply(x); err != nil {
		return nil, errInvalidOptions.WithText(err.Error())
	}
	return nil, e.st.putSubscription(ctx, service, node, sub)
}

// ownList answers the requester's subscriptions (§5.6) or affiliations
// (§5.7): an element named list holding what each(node) returns, for
// the one node asked for or every node of the service.
func (e *Engine) ownList(ctx context.Context, service, list, node string, each func(node string) ([]*wire.Element, error)) (*wire.Element, error) {
	nodes := []string{node}
	if node == "" {
		var err error
		if nodes, err = e.st.listNodes(ctx, service); err != nil {
			return nil, err
		}
	}
	out := wire.New(list)
	out.SetAttr("node", node)
	for _, nd := range nodes {
		els, err := each(nd)
		if err != nil {
			return nil, err
		}
		out.Append(els...)
	}
	return wire.NewNS("pubsub", NS).Append(out), nil
}

func (e *Engine) ownSubscriptions(ctx context.Context, service, requester, node string) (*wire.Element, error) {
	return e.ownList(ctx, service, "subscriptions", node, func(nd string) ([]*wire.Element, error) {
		subs, err := e.st.subscriptions(ctx, service, nd)
		var out []*wire.Element
		for _, s := range subs {
			if wire.BareJID(s.JID) == requester {
				out = append(out, subscriptionElement(nd, s, true))
			}
		}
		return out, err
	})
}

func (e *Engine) ownAffiliations(ctx context.Context, service, requester, node string) (*wire.Element, error) {
	return e.ownList(ctx, service, "affiliations", node, func(nd string) ([]*wire.Element, error) {
		aff, err := e.affiliation(ctx, &nodeRef{service: service, node: nd}, requester)
		if err != nil || aff == AffNone {
			return nil, err
		}
		return []*wire.Element{wire.New("affiliation", "node", nd, "affiliation", aff)}, nil
	})
}

// sortedKeys returns a map's keys in order, for stable answers.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
