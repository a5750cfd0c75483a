package pubsub

import (
	"context"
	"errors"
	"sort"

	"github.com/aviary-im/aviary/wire"
)

// ownerIQ answers pubsub#owner requests (XEP-0060 §8): configure,
// default, delete, purge, and the management of subscriptions and
// affiliations.
func (e *Engine) ownerIQ(ctx context.Context, r Request, requester string, set bool, q *wire.Element) (*wire.Element, error) {
	verb := q.FirstChild()
	if verb == nil {
		return nil, wire.ErrBadRequest
	}
	if verb.Name == "default" {
		if set {
			return nil, wire.ErrBadRequest
		}
		if verb.Attr("type") == "collection" {
			return nil, unsupported("collections")
		}
		cfg := e.opts.Defaults
		return wire.NewNS("pubsub", NSOwner).Append(wire.New("default").Append(cfg.Form("form", nil))), nil
	}
	node := verb.Attr("node")
	if node == "" {
		return nil, errNodeIDRequired
	}
	n, err := e.node(ctx, r.Service, node)
	if errors.Is(err, ErrNoNode) {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	if ok, err := e.isOwner(ctx, n, requester); err != nil {
		return nil, err
	} else if !ok {
		return nil, wire.ErrForbidden
	}
	switch {
	case verb.Name == "configure" && !set:
		groups, err := e.rosterGroups(ctx, n)
		if err != nil {
			return nil, err
		}
		return wire.NewNS("pubsub", NSOwner).Append(wire.New("configure", "node", node).Append(n.cfg.Form("form", groups))), nil
	case verb.Name == "configure":
		return nil, e.configure(ctx, n, verb)
	case verb.Name == "delete" && set:
		return nil, e.deleteIQ(ctx, r, n, verb)
	case verb.Name == "purge" && set:
		if !n.cfg.PersistItems {
			return nil, errNoItemsWithoutStore
		}
		if err := e.purge(ctx, n); err != nil {
			return nil, err
		}
		if e.opts.Changed != nil {
			e.opts.Changed(ctx, Change{Kind: Purged, Service: n.service, Node: node, From: r.From})
		}
		return nil, nil
	case verb.Name == "subscriptions" && !set:
		return e.listSubscriptions(ctx, n)
	case verb.Name == "subscriptions":
		return nil, e.setSubscriptions(ctx, n, verb)
	case verb.Name == "affiliations" && !set:
		return e.listAffiliations(ctx, n)
	case verb.Name == "affiliations":
		return nil, e.setAffiliations(ctx, n, verb)
	}
	return nil, wire.ErrBadRequest
}

// rosterGroups lists the roster groups of the node's roster owners, the
// options of pubsub#roster_groups_allowed.
func (e *Engine) rosterGroups(ctx context.Context, n *nodeRef) ([]string, error) {
	owners, err := e.rosterOwners(ctx, n)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, o := range owners {
		items, _, err := e.opts.Store.GetRoster(ctx, o)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			for _, g := range it.Groups {
				if !seen[g] {
					seen[g] = true
					out = append(out, g)
				}
			}
		}
	}
	for _, g := range n.cfg.RosterGroups {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out, nil
}

// configure applies a submitted configuration form (§8.2.4); a cancel
// changes nothing. Lowering max_items drops the oldest items at once.
func (e *Engine) configure(ctx context.Context, n *nodeRef, req *wire.Element) error {
	x := req.Child("x", NSData)
	if x == nil {
		return wire.ErrBadRequest
	}
	if x.Attr("type") == "cancel" {
		return nil
	}
	cfg := *n.cfg
	if err := cfg.Apply(x); err != nil {
		return err
	}
	return e.Reconfigure(ctx, n.service, n.node, cfg)
}

// Reconfigure stores a node's new configuration, trims its items to a
// lowered max_items and, when the node says so, notifies the change.
func (e *Engine) Reconfigure(ctx context.Context, service, node string, cfg Config) error {
	n, err := e.node(ctx, service, node)
	if err != nil {
		return err
	}
	old := *n.cfg
	if err := e.st.saveNode(ctx, service, node, &cfg); err != nil {
		return err
	}
	n.cfg = &cfg
	if cfg.MaxItems > 0 && (old.MaxItems == 0 || cfg.MaxItems < old.MaxItems) {
		if err := e.st.trimItems(ctx, service, node, cfg.MaxItems); err != nil {
			return err
		}
	}
	if cfg.NotifyConfig {
		conf := wire.New("configuration", "node", node)
		if cfg.DeliverPayloads {
			conf.Append(cfg.Form("result", nil))
		}
		e.notify(ctx, n, eventElement(conf), nil, nil)
	}
	return nil
}

// deleteIQ deletes a node (§8.4), telling its subscribers, with a
// redirect when the owner gave one.
func (e *Engine) deleteIQ(ctx context.Context, r Request, n *nodeRef, req *wire.Element) error {
	redirect := ""
	if rd := req.Child("redirect", ""); rd != nil {
		redirect = rd.Attr("uri")
	}
	if err := e.deleteNode(ctx, n, redirect); err != nil {
		return err
	}
	if e.opts.Changed != nil {
		e.opts.Changed(ctx, Change{Kind: Deleted, Service: n.service, Node: n.node, From: r.From})
	}
	return nil
}

func (e *Engine) deleteNode(ctx context.Context, n *nodeRef, redirect string) error {
	// Who to tell is read before the subscriptions go with the node.
	subs, err := e.st.subscriptions(ctx, n.service, n.node)
	if err != nil {
		return err
	}
	var recipients []string
	if n.cfg.NotifyDelete && n.cfg.DeliverNotifications {
		recipients = e.recipients(ctx, n, subs, nil)
	}
	if err := e.st.deleteNode(ctx, n.service, n.node); err != nil {
		return err
	}
	del := wire.New("delete", "node", n.node)
	if redirect != "" {
		del.Append(wire.New("redirect", "uri", redirect))
	}
	ev := eventElement(del)
	for _, to := range recipients {
		e.opts.Route(ctx, e.message(n, to, ev))
	}
	return nil
}

// purge removes every item (§8.5) and tells the subscribers when the
// node notifies retractions.
func (e *Engine) purge(ctx context.Context, n *nodeRef) error {
	if err := e.st.purgeItems(ctx, n.service, n.node); err != nil {
		return err
	}
	if n.cfg.NotifyRetract {
		e.notify(ctx, n, eventElement(wire.New("purge", "node", n.node)), nil, nil)
	}
	return nil
}

// listSubscriptions is §8.8.1.
func (e *Engine) listSubscriptions(ctx context.Context, n *nodeRef) (*wire.Element, error) {
	subs, err := e.st.subscriptions(ctx, n.service, n.node)
	if err != nil {
		return nil, err
	}
	out := wire.New("subscriptions", "node", n.node)
	for _, s := range subs {
		out.Append(subscriptionElement(n.node, s, false))
	}
	return wire.NewNS("pubsub", NSOwner).Append(out), nil
}

// setSubscriptions is §8.8.2: subscribed adds or keeps, none removes.
// Every entry is checked before any is applied.
func (e *Engine) setSubscriptions(ctx context.Context, n *nodeRef, req *wire.Element) error {
	type change struct{ jid, state string }
	var changes []change
	for _, s := range req.ChildrenNamed("subscription", "") {
		j := wire.JIDOf(s.Attr("jid")).String()
		state := s.Attr("subscription")
		if j == "" || (state != "subscribed" && state != "none") {
			return wire.ErrBadRequest.WithText("each subscription needs a jid and subscription='subscribed' or 'none'")
		}
		changes = append(changes, change{j, state})
	}
	for _, c := range changes {
		if c.state == "none" {
			if err := e.st.deleteSubscription(ctx, n.service, n.node, c.jid); err != nil {
				return err
			}
			continue
		}
		sub, err := e.st.subscription(ctx, n.service, n.node, c.jid)
		if err != nil {
			return err
		}
		if sub != nil {
			continue
		}
		sub = &Subscription{JID: c.jid, SubID: RandomID(), Options: SubscribeOptions{Deliver: true}}
		if err := e.st.putSubscription(ctx, n.service, n.node, sub); err != nil {
			return err
		}
	}
	return nil
}

// listAffiliations is §8.9.1; a PEP node lists its account as owner.
func (e *Engine) listAffiliations(ctx context.Context, n *nodeRef) (*wire.Element, error) {
	if err := e.loadAffs(ctx, n); err != nil {
		return nil, err
	}
	out := wire.New("affiliations", "node", n.node)
	if e.opts.PEP {
		out.Append(wire.New("affiliation", "jid", n.service, "affiliation", AffOwner))
	}
	for _, j := range sortedKeys(n.affs) {
		if e.opts.PEP && j == n.service {
			continue
		}
		out.Append(wire.New("affiliation", "jid", j, "affiliation", n.affs[j]))
	}
	return wire.NewNS("pubsub", NSOwner).Append(out), nil
}

// setAffiliations is §8.9.2. The PEP account stays the owner of its
// nodes, and a service node keeps at least one owner (not-acceptable).
// Every entry is checked before any is applied.
func (e *Engine) setAffiliations(ctx context.Context, n *nodeRef, req *wire.Element) error {
	if err := e.loadAffs(ctx, n); err != nil {
		return err
	}
	next := map[string]string{}
	for k, v := range n.affs {
		next[k] = v
	}
	type change struct{ jid, aff string }
	var changes []change
	for _, a := range req.ChildrenNamed("affiliation", "") {
		j := wire.JIDOf(a.Attr("jid")).Bare()
		aff := a.Attr("affiliation")
		if j == "" || !validAffiliation(aff) {
			return wire.ErrBadRequest.WithText("each affiliation needs a jid and a valid affiliation")
		}
		if e.opts.PEP && j == n.service {
			return wire.ErrNotAcceptable.WithText("the account owns its PEP nodes")
		}
		changes = append(changes, change{j, aff})
		if aff == AffNone {
			delete(next, j)
		} else {
			next[j] = aff
		}
	}
	if !e.opts.PEP {
		owners := 0
		for _, a := range next {
			if a == AffOwner {
				owners++
			}
		}
		if owners == 0 {
			return wire.ErrNotAcceptable.WithText("a node keeps at least one owner")
		}
	}
	for _, c := range changes {
		if err := e.st.setAffiliation(ctx, n.service, n.node, c.jid, c.aff); err != nil {
			return err
		}
	}
	n.affs = next
	return nil
}
