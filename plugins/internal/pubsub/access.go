package pubsub

import (
	"context"
	"errors"
	"slices"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// nodeRef is a node as one request sees it: its configuration, read
// once, and its affiliations, read when first needed.
type nodeRef struct {
	service, node string
	cfg           *Config
	affs          map[string]string
}

// node loads a node; ErrNoNode when it does not exist.
func (e *Engine) node(ctx context.Context, service, node string) (*nodeRef, error) {
	cfg, err := e.st.loadNode(ctx, service, node, e.opts.Defaults)
	if err != nil {
		return nil, err
	}
	return &nodeRef{service: service, node: node, cfg: cfg}, nil
}

// implicitOwner reports whether bare has owner rights on every node of
// the service: the PEP account itself, or an administrator.
func (e *Engine) implicitOwner(service, bare string) bool {
	if e.opts.PEP {
		return bare == service
	}
	return e.opts.Admin != nil && bare != "" && e.opts.Admin(bare)
}

// affiliation returns bare's affiliation with the node.
func (e *Engine) affiliation(ctx context.Context, n *nodeRef, bare string) (string, error) {
	if e.implicitOwner(n.service, bare) {
		return AffOwner, nil
	}
	if err := e.loadAffs(ctx, n); err != nil {
		return "", err
	}
	if a, ok := n.affs[bare]; ok {
		return a, nil
	}
	return AffNone, nil
}

func (e *Engine) loadAffs(ctx context.Context, n *nodeRef) error {
	if n.affs != nil {
		return nil
	}
	affs, err := e.st.affiliations(ctx, n.service, n.node)
	if err != nil {
		return err
	}
	n.affs = affs
	return nil
}

// isOwner reports whether bare may administer the node.
func (e *Engine) isOwner(ctx context.Context, n *nodeRef, bare string) (bool, error) {
	a, err := e.affiliation(ctx, n, bare)
	return a == AffOwner, err
}

// rosterOwners are the accounts whose rosters the presence and roster
// access models read: the PEP account, or a node's owners.
func (e *Engine) rosterOwners(ctx context.Context, n *nodeRef) ([]string, error) {
	if e.opts.PEP {
		return []string{n.service}, nil
	}
	if err := e.loadAffs(ctx, n); err != nil {
		return nil, err
	}
	var out []string
	for j, a := range n.affs {
		if a == AffOwner {
			out = append(out, j)
		}
	}
	slices.Sort(out)
	return out, nil
}

// checkAccess applies the node's access model to a requester who wants
// to retrieve items or subscribe (XEP-0060 §6.1.3, §6.5.9), with the
// error XEP-0060 names for each refusal.
func (e *Engine) checkAccess(ctx context.Context, n *nodeRef, requester string) error {
	aff, err := e.affiliation(ctx, n, requester)
	if err != nil {
		return err
	}
	switch aff {
	case AffOwner, AffPublisher, AffMember:
		return nil
	case AffOutcast:
		return wire.ErrForbidden
	}
	switch n.cfg.AccessModel {
	case AccessOpen:
		return nil
	case AccessPresence:
		ok, err := e.hasPresenceSubscription(ctx, n, requester)
		if err != nil || ok {
			return err
		}
		return errPresenceRequired
	case AccessRoster:
		ok, err := e.inRosterGroups(ctx, n, requester)
		if err != nil || ok {
			return err
		}
		return errNotInRosterGroup
	}
	return errClosedNode
}

// hasPresenceSubscription reports whether bare is subscribed to the
// presence of one of the roster owners (subscription from or both).
func (e *Engine) hasPresenceSubscription(ctx context.Context, n *nodeRef, bare string) (bool, error) {
	return e.inSomeRoster(ctx, n, bare, func(it storage.RosterItem) bool {
		return it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth
	})
}

// inRosterGroups reports whether bare is in a roster owner's roster in
// one of the groups the node allows.
func (e *Engine) inRosterGroups(ctx context.Context, n *nodeRef, bare string) (bool, error) {
	return e.inSomeRoster(ctx, n, bare, func(it storage.RosterItem) bool {
		return it.InRoster && groupsMeet(it.Groups, n.cfg.RosterGroups)
	})
}

// inSomeRoster reports whether a roster owner's item for bare passes ok.
func (e *Engine) inSomeRoster(ctx context.Context, n *nodeRef, bare string, ok func(storage.RosterItem) bool) (bool, error) {
	owners, err := e.rosterOwners(ctx, n)
	if err != nil {
		return false, err
	}
	for _, o := range owners {
		it, err := e.opts.Store.GetRosterItem(ctx, o, bare)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if ok(it) {
			return true, nil
		}
	}
	return false, nil
}

func groupsMeet(have, allowed []string) bool {
	for _, g := range have {
		if slices.Contains(allowed, g) {
			return true
		}
	}
	return false
}

// audience decides, for many recipients of one notification, who the
// access model lets see it, reading each roster owner's roster once.
type audience struct {
	e        *Engine
	n        *nodeRef
	loaded   bool
	presence map[string]bool     // bare JIDs with subscription from/both
	groups   map[string][]string // bare JID → roster groups
}

func (a *audience) load(ctx context.Context) error {
	if a.loaded {
		return nil
	}
	a.loaded = true
	a.presence = map[string]bool{}
	a.groups = map[string][]string{}
	owners, err := a.e.rosterOwners(ctx, a.n)
	if err != nil {
		return err
	}
	for _, o := range owners {
		items, _, err := a.e.opts.Store.GetRoster(ctx, o)
		if err != nil {
			return err
		}
		for _, it := range items {
			if it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth {
				a.presence[it.Contact] = true
			}
			if it.InRoster {
				a.groups[it.Contact] = append(a.groups[it.Contact], it.Groups...)
			}
		}
	}
	return nil
}

// allows reports whether bare may receive the node's events.
// implicit recipients (PEP's presence-based delivery) need a presence
// subscription on top of the access model, whatever the model.
func (a *audience) allows(ctx context.Context, bare string, implicit bool) bool {
	aff, err := a.e.affiliation(ctx, a.n, bare)
	if err != nil {
		a.e.log.Warn("pubsub: reading affiliations", "service", a.n.service, "node", a.n.node, "err", err)
		return false
	}
	if aff == AffOwner {
		return true
	}
	if aff == AffOutcast {
		return false
	}
	model := a.n.cfg.AccessModel
	if !implicit && (aff == AffPublisher || aff == AffMember || model == AccessOpen) {
		return true
	}
	if err := a.load(ctx); err != nil {
		a.e.log.Warn("pubsub: reading the roster for notifications", "service", a.n.service, "node", a.n.node, "err", err)
		return false
	}
	if implicit && !a.presence[bare] {
		return false
	}
	switch {
	case aff == AffPublisher || aff == AffMember || model == AccessOpen:
		return true
	case model == AccessPresence:
		return a.presence[bare]
	case model == AccessRoster:
		return groupsMeet(a.groups[bare], a.n.cfg.RosterGroups)
	}
	return false
}
