package router

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/storage"
)

// subState is the subscription part of a roster item: the RFC 6121
// Appendix A state is Sub plus the two pending flags ("None + Pending Out"
// is {none, true, false}).
type subState struct {
	Sub        string
	PendingOut bool
	PendingIn  bool
}

func (s subState) to() bool   { return s.Sub == storage.SubTo || s.Sub == storage.SubBoth }
func (s subState) from() bool { return s.Sub == storage.SubFrom || s.Sub == storage.SubBoth }

func (s subState) isNone() bool {
	return (s.Sub == storage.SubNone || s.Sub == "") && !s.PendingOut && !s.PendingIn
}

func makeSub(to, from bool) string {
	switch {
	case to && from:
		return storage.SubBoth
	case to:
		return storage.SubTo
	case from:
		return storage.SubFrom
	}
	return storage.SubNone
}

func stateOf(it storage.RosterItem) subState {
	sub := it.Subscription
	if sub == "" {
		sub = storage.SubNone
	}
	return subState{Sub: sub, PendingOut: it.PendingOut, PendingIn: it.PendingIn}
}

// Direction of a subscription stanza relative to the roster's owner.
const (
	outbound = false // the owner sent it (RFC 6121 Appendix A.2)
	inbound  = true  // the owner received it (Appendix A.3)
)

// transition applies RFC 6121 Appendix A: the new state of the owner's
// roster item after a subscription stanza of type typ in direction
// inbound, and whether it changed. The eight tables collapse to four
// rules, because each stanza type touches one direction of the
// subscription:
//
//	outbound subscribe    / inbound subscribe:   ask (PendingOut / PendingIn) unless already subscribed that way
//	outbound subscribed   / inbound subscribed:  a pending request (PendingIn / PendingOut) becomes from / to
//	outbound unsubscribed / inbound unsubscribe: from and PendingIn are cleared
//	outbound unsubscribe  / inbound unsubscribed: to and PendingOut are cleared
func transition(in bool, typ string, st subState) (subState, bool) {
	to, from := st.to(), st.from()
	n := st
	switch {
	case !in && typ == "subscribe":
		if !to {
			n.PendingOut = true
		}
	case in && typ == "subscribe":
		if !from {
			n.PendingIn = true
		}
	case !in && typ == "subscribed":
		if st.PendingIn {
			from, n.PendingIn = true, false
		}
	case in && typ == "subscribed":
		if st.PendingOut {
			to, n.PendingOut = true, false
		}
	case (!in && typ == "unsubscribed") || (in && typ == "unsubscribe"):
		from, n.PendingIn = false, false
	case (!in && typ == "unsubscribe") || (in && typ == "unsubscribed"):
		to, n.PendingOut = false, false
	default:
		return st, false
	}
	n.Sub = makeSub(to, from)
	return n, n != st
}

// subResult is what a subscription update did to the owner's roster.
type subResult struct {
	before  subState
	after   subState
	item    storage.RosterItem
	changed bool // the subscription state changed
	removed bool // the item was deleted
	push    bool // interested resources must get a roster push
	ver     int64
}

// updateSubscription applies one subscription stanza to owner's item for
// contact in one storage transaction. Items created only to remember a
// pending inbound request are kept out of the roster (InRoster false) and
// deleted again when the request is refused or withdrawn.
func (r *Router) updateSubscription(ctx context.Context, owner, contact string, in bool, typ string) (subResult, error) {
	var res subResult
	fn := func(it storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		res = subResult{}
		before := stateOf(it)
		after, changed := transition(in, typ, before)
		res.before, res.after, res.changed = before, after, changed
		wasIn := exists && it.InRoster
		n := it
		n.Subscription, n.PendingOut, n.PendingIn = after.Sub, after.PendingOut, after.PendingIn
		n.InRoster = wasIn
		switch {
		case !in && typ == "subscribe":
			n.InRoster = true // RFC 6121 §3.1.2: the request creates the item
		case !in && typ == "subscribed" && changed:
			n.InRoster = true // §3.1.5: approving creates the item
		}
		if !exists && !changed {
			return it, false, errUnchanged // nothing to remember
		}
		if !changed && n.InRoster == wasIn {
			return it, false, errUnchanged
		}
		remove := after.isNone() && !n.InRoster
		// Push only what a client can see: pending-in is not part of a
		// roster item's XML (RFC 6121 §3.1.3), so it alone pushes nothing.
		visible := wasIn != n.InRoster || before.Sub != after.Sub || before.PendingOut != after.PendingOut
		res.push = (n.InRoster || wasIn) && visible
		res.item = n
		return n, remove, nil
	}
	dctx, cancel := r.dbCtx(ctx)
	defer cancel()
	item, removed, changed, ver, err := r.store.UpdateRosterItem(dctx, owner, contact, r.rosterQuota(), fn)
	if errors.Is(err, errUnchanged) {
		res.changed, res.push = false, false
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if !changed {
		res.push = false
	}
	if !removed {
		res.item = item
	}
	res.removed, res.ver = removed, ver
	return res, nil
}
