package router

import (
	"context"
	"maps"
	"slices"

	"github.com/aviary-im/aviary/wire"
)

// HandoverState is a session's routing state as it moves to another node
// (a stream-management resumption there, XEP-0198): what it takes for the
// session to go on as if nothing happened.
type HandoverState struct {
	JID        string   `json:"jid"`
	Presence   string   `json:"presence,omitempty"` // the last available presence, XML
	Priority   int      `json:"priority"`
	Available  bool     `json:"available"`
	Interested bool     `json:"interested"` // requested the roster: gets pushes
	Carbons    bool     `json:"carbons"`
	Directed   []string `json:"directed,omitempty"`
}

// Detach removes a bound local session without anyone noticing: no
// unavailable presence, no last activity; only its route goes. The
// session continues on another node, which calls Attach with the state.
// It reports false when s is not bound here.
func (r *Router) Detach(ctx context.Context, s Session) (HandoverState, bool) {
	full := s.JID().String()
	r.mu.Lock()
	rec := r.sessions[full]
	if rec == nil || rec.s != s {
		r.mu.Unlock()
		return HandoverState{}, false
	}
	r.removeLocked(rec)
	st := HandoverState{JID: rec.full, Priority: rec.priority, Available: rec.available,
		Interested: rec.interested, Carbons: rec.carbons, Directed: slices.Sorted(maps.Keys(rec.directed))}
	if rec.presence != nil {
		st.Presence = rec.presence.String()
	}
	r.mu.Unlock()
	if err := r.deleteRoute(context.WithoutCancel(ctx), full); err != nil {
		r.log.Warn("router: deleting route failed", "jid", full, "err", err)
	}
	return st, true
}

// Attach binds s with the state Detach returned on another node, sending
// nothing to anyone (the contacts saw no change), and publishes its route.
// It fails with wire.ErrConflict when that full JID is bound again here.
func (r *Router) Attach(ctx context.Context, s Session, st HandoverState) error {
	full, err := wire.ParseJID(st.JID)
	if err != nil || full.Resource() == "" || full.Domain() != r.domain {
		return wire.ErrBadRequest
	}
	rec := &session{s: s, full: full.String(), bare: full.Bare(), priority: st.Priority,
		available: st.Available, interested: st.Interested, carbons: st.Carbons}
	if st.Presence != "" {
		if rec.presence, err = wire.Parse([]byte(st.Presence), wire.Limits{}); err != nil {
			return wire.ErrBadRequest
		}
	}
	for _, to := range st.Directed {
		if rec.directed == nil {
			rec.directed = map[string]struct{}{}
		}
		rec.directed[to] = struct{}{}
	}
	r.mu.Lock()
	if r.sessions[rec.full] != nil {
		r.mu.Unlock()
		return wire.ErrConflict
	}
	rt := r.addLocked(rec)
	r.mu.Unlock()
	if err := r.putRoute(ctx, rt); err != nil {
		r.log.Warn("router: publishing route failed", "jid", rec.full, "err", err)
	}
	return nil
}

// Resumed is called once a session Attach bound here is live again (its
// client has <resumed/>). Stanzas that reached the old node or another
// node while the session was between the two found no route and went to
// offline storage, which a resumed session never asks for (it sends no
// initial presence): hand them over now, and once more a moment later
// for any that were still on their way.
func (r *Router) Resumed(ctx context.Context, s Session) {
	full := s.JID().String()
	r.mu.RLock()
	rec := r.sessions[full]
	available := rec != nil && rec.s == s && rec.available && rec.priority >= 0
	r.mu.RUnlock()
	if !available {
		return
	}
	bare := s.JID().Bare()
	ctx = context.WithoutCancel(ctx)
	r.flushOffline(ctx, bare)
	r.recheckOffline(ctx, bare)
}

// HandOver is called by a node handing a session over to node (a
// cross-node resumption) with what the session had not delivered: this
// node keeps a copy of each protected message until node reports that
// its client has it (or node dies, then it routes the copy again), and
// releases the message's old receipt then. It returns the numbers the
// new node's receipts carry (RemoteReceipt(this node, n); 0 for none), or
// nil when node does not take receipts (crash safety off, or an older
// version): then the old receipts are left to the caller.
func (r *Router) HandOver(node string, unsent []Unsent) []uint64 {
	return r.custody.handOver(node, unsent)
}

// TakeBack undoes HandOver for a node that never took the session: its
// call gave up before the answer came (a node too busy to answer within
// the caller's timeout still hands the session over), so it holds no
// receipts and will report none of these copies done. The copies kept for
// node under seqs stop waiting for it; TakeBack reports which were still
// kept, for the caller to route again with the receipts they had before
// the hand-over (released once routed, as for any stanza of a session
// that went away).
func (r *Router) TakeBack(node string, seqs []uint64) []bool {
	return r.custody.takeBack(node, seqs)
}
