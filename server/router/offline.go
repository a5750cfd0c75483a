package router

import (
	"context"
	"errors"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// storeOffline keeps a message for a user with no available resource
// (XEP-0160). No such account → service-unavailable; a queue past
// c2s.offline_limit messages or c2s.offline_max_bytes → service-unavailable
// with a text saying so (as Prosody answers when its offline store refuses
// a message; ejabberd says resource-constraint). When the database does
// not answer, the message waits in memory until it does (offlineretry.go),
// and only past that wait's bounds is it bounced (resource-constraint or
// internal-server-error, see stanzaErrorFor); another storage failure is
// bounced at once.
// After the commit it re-checks the routing table: a resource that became
// available while we stored would otherwise have taken the queue just
// before this message landed in it.
func (r *Router) storeOffline(ctx context.Context, el *wire.Element, a wire.JID) {
	if m, _ := ctx.Value(offlineMarkKey{}).(*offlineMark); m != nil {
		m.stored = true // stored, queued to be, or refused: not delivered live
	}
	if !worthStoring(el) {
		r.m.dropped.Inc()
		return
	}
	if r.store == nil {
		r.bounce(ctx, el, wire.ErrServiceUnavailable)
		return
	}
	bare := a.Bare()
	// While messages for the user wait, this one waits behind them; while
	// the database is known not to answer, it waits without asking.
	queue := r.retry.queueing(bare)
	checked := false
	var err error
	if !queue {
		var exists bool
		exists, err = r.lookupUser(ctx, a.Local())
		if err == nil && !exists {
			r.bounce(ctx, el, wire.ErrServiceUnavailable)
			return
		}
		// An account that could not be looked up is not taken for unknown:
		// the check is made again before the message is stored.
		checked = err == nil || !transient(err)
		queue = !checked
	}
	if !r.intercept(ctx, plugins.PointOffline, el, "", false) {
		return
	}
	if !queue {
		err = r.storeOfflineRaw(ctx, bare, el, r.offlineQuota())
		if err == nil {
			r.m.offline.Inc()
			r.flushOffline(ctx, bare)
			return
		}
		queue = transient(err)
	}
	if queue {
		if err = r.retry.keep(ctx, bare, a.Local(), el, checked, true, err); err == nil {
			return
		}
	}
	r.log.Debug("router: offline storage refused a message", "to", bare, "err", err)
	r.bounce(ctx, el, offlineRefusal(err))
}

// offlineMark, in the context a rerouted copy is routed with, learns
// whether the copy went to offline storage (custody.reroute).
type offlineMark struct{ stored bool }

type offlineMarkKey struct{}

func withOfflineMark(ctx context.Context, m *offlineMark) context.Context {
	return context.WithValue(ctx, offlineMarkKey{}, m)
}

// storeRerouted stores a rerouted copy of a message to a local user
// offline without looking for a live resource: the user's earlier copies
// went there (custody.reroute). Kept copies are messages offline storage
// keeps, so routeMessage's rules by type do not apply.
func (r *Router) storeRerouted(ctx context.Context, el *wire.Element) {
	a, err := wire.ParseJID(el.To())
	if err != nil || a.Domain() != r.domain || a.Local() == "" {
		r.route(ctx, el)
		return
	}
	if !r.intercept(ctx, plugins.PointUserMessage, el, "", false) {
		return
	}
	r.storeOffline(ctx, el, a)
}

// offlineRefusal is the stanza error for a message offline storage
// refused: stanzaErrorFor's, with a text when the queue is full.
func offlineRefusal(err error) *wire.StanzaError {
	se := stanzaErrorFor(err)
	if errors.Is(err, storage.ErrQuotaExceeded) {
		se = se.WithText("the recipient's offline message storage is full")
	}
	return se
}

// NSChatStates is XEP-0085.
const NSChatStates = "http://jabber.org/protocol/chatstates"

// worthStoring reports whether a message for an offline user is kept.
// Not kept, and dropped without an error: a message carrying the XEP-0334
// <no-store/> hint, and one with no <body/> that is only a chat state
// notification (XEP-0085 §5.5: stale "typing..." is noise), unless it
// carries the <store/> hint.
func worthStoring(el *wire.Element) bool {
	hasBody, chatState := false, false
	for _, c := range el.Children {
		switch ns := c.NS(); {
		case c.Name == "no-store" && ns == NSHints:
			return false
		case c.Name == "store" && ns == NSHints:
			return true
		case c.Name == "body":
			hasBody = true
		case ns == NSChatStates:
			chatState = true
		}
	}
	return hasBody || !chatState
}

// offlineQuota is one user's offline queue quota (c2s.offline_limit,
// c2s.offline_max_bytes).
func (r *Router) offlineQuota() storage.OfflineQuota {
	return storage.OfflineQuota{Messages: r.cfg.C2S.OfflineLimit, Bytes: int64(r.cfg.C2S.OfflineMaxBytes)}
}

func (r *Router) storeOfflineRaw(ctx context.Context, bare string, el *wire.Element, q storage.OfflineQuota) error {
	dctx, cancel := r.dbCtx(ctx)
	defer cancel()
	return r.store.StoreOffline(dctx, bare, el.Bytes(), q)
}

// flushOffline has the user's offline queue handed to the available
// resources with the highest non-negative priority, if there are any now:
// each one's pump takes what its session can take (backlog.go), so with
// several such resources each message goes to one of them. A resource on
// another node is asked to do it by its node.
func (r *Router) flushOffline(ctx context.Context, bare string) {
	routes, err := r.routesFromSource(ctx, bare)
	if err != nil {
		return
	}
	best := -1
	for i := range routes {
		if routes[i].Available && routes[i].Priority > best {
			best = routes[i].Priority
		}
	}
	if best < 0 {
		return
	}
	for i := range routes {
		rt := &routes[i]
		if !rt.Available || rt.Priority != best {
			continue
		}
		if r.isLocal(rt) {
			r.kickBacklog(ctx, rt.JID)
		} else {
			r.kickRemoteBacklog(ctx, *rt, bare)
		}
	}
}

// rosterOfflineLoader is a store that reads the roster and the first
// portion of the offline queue (up to maxBytes, skipping skip, as
// ReadOfflineUpTo) in one call (one round trip), as initial presence
// needs.
type rosterOfflineLoader interface {
	GetRosterReadOffline(ctx context.Context, owner string, skip []int64, maxBytes int) ([]storage.RosterItem, int64, []storage.OfflineMessage, bool, error)
}

// takeOffline takes the whole queue in one batch and stamps each message
// (for a node that cannot pace it, see kickRemoteBacklog).
func (r *Router) takeOffline(ctx context.Context, bare string) []*wire.Element {
	if r.store == nil {
		return nil
	}
	dctx, cancel := r.dbCtx(ctx)
	stored, err := r.store.TakeOffline(dctx, bare)
	cancel()
	if err != nil {
		r.log.Warn("router: taking offline messages failed", "jid", bare, "err", err)
		return nil
	}
	return r.stampOffline(bare, stored)
}

// stampOffline parses stored messages and stamps each with <delay/>.
func (r *Router) stampOffline(bare string, stored []storage.OfflineMessage) []*wire.Element {
	if len(stored) == 0 {
		return nil
	}
	out := make([]*wire.Element, 0, len(stored))
	for _, m := range stored {
		if el := r.stampOne(bare, m); el != nil {
			out = append(out, el)
		}
	}
	return out
}

// stampOne parses a stored message and stamps it with <delay/>; nil when
// it does not parse.
func (r *Router) stampOne(bare string, m storage.OfflineMessage) *wire.Element {
	el, err := wire.Parse(m.Stanza, r.linkLimits())
	if err != nil {
		r.log.Error("router: dropping unparsable offline message", "jid", bare, "id", m.ID, "err", err)
		return nil
	}
	if !hasDelay(el, r.domain) {
		el.Append(delayElement(r.domain, m.Stored))
	}
	return el
}

// restoreOffline puts messages back after a failed hand-over; the quota
// does not apply to messages the user already had. One the database does
// not take now waits until it does (offlineretry.go), behind any already
// waiting for the user.
func (r *Router) restoreOffline(ctx context.Context, bare string, msgs []*wire.Element) {
	local := wire.JIDOf(bare).Local()
	for _, el := range msgs {
		var err error
		if !r.retry.queueing(bare) {
			if err = r.storeOfflineRaw(ctx, bare, el, storage.OfflineQuota{}); err == nil || !transient(err) {
				if err != nil {
					r.log.Error("router: could not put an offline message back", "jid", bare, "err", err)
				}
				continue
			}
		}
		// No hold: the message was stored before, nobody waits for it.
		if err := r.retry.keep(context.Background(), bare, local, el, true, false, err); err != nil {
			r.log.Error("router: could not put an offline message back", "jid", bare, "err", err)
		}
	}
}

// delayElement is the XEP-0203 stamp added to delivered offline messages
// and to unavailable presence answering a probe.
func delayElement(from string, at time.Time) *wire.Element {
	return wire.New("delay", "xmlns", wire.NSDelay, "from", from, "stamp", at.UTC().Format("2006-01-02T15:04:05.000Z"))
}

func hasDelay(el *wire.Element, from string) bool {
	for _, c := range el.Children {
		if c.Name == "delay" && c.NS() == wire.NSDelay && c.Attr("from") == from {
			return true
		}
	}
	return false
}

// linkLimits bounds what the router parses from storage and cluster
// links: trusted sources, so a generous multiple of the client limit.
func (r *Router) linkLimits() wire.Limits {
	n := r.cfg.C2S.MaxStanzaBytes
	if n <= 0 {
		n = wire.DefaultMaxStanzaBytes
	}
	return wire.Limits{MaxStanzaBytes: 4*n + 4096}
}

// fallback handles a stanza for a full JID whose session is gone (it left
// between resolution and delivery, or its node died): messages to offline
// storage, IQ requests bounced with service-unavailable, presence dropped
// (RFC 6121 §8.5.3.2).
func (r *Router) fallback(ctx context.Context, el *wire.Element, full string) {
	switch el.Name {
	case "message":
		if isCarbonCopy(el) {
			return
		}
		switch el.Type() {
		case "", "normal", "chat":
			a, err := wire.ParseJID(full)
			if err != nil {
				return
			}
			r.storeOffline(ctx, el, a)
		case "groupchat":
			r.bounce(ctx, el, wire.ErrServiceUnavailable)
		}
	case "iq":
		if t := el.Type(); t == "get" || t == "set" {
			r.bounce(ctx, el, wire.ErrServiceUnavailable)
			return
		}
		r.m.dropped.Inc()
	default: // presence is transient
		r.m.dropped.Inc()
	}
}
