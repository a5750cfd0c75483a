package pep

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/caps"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Caps tracking: which full JIDs get an owner's notifications for which
// nodes. Locking: p.mu guards recipients (and every record's fields),
// caps, queries and inflight; it is never held while calling out (store,
// Route). Notify sets are never changed once built, so they are shared
// without copying.
//
// Each item once (XEP-0163 §4.3.2, §4.3.3). An item reaches a client
// in one of two ways: as the last item, when its presence newly asks
// for the node, or as the notification of the publish. Its presence, the
// resolution of its caps and a publish may come in any order, so:
//   - The caps of each presence's record are resolved once
//     (resolveLocked: a later answer, shared entry or duplicate query
//     for the same record changes nothing), and that resolution sends
//     the last items of the nodes the client newly wants.
//   - A publish that finds the record unresolved cannot tell whether the
//     client wants the node: it notes the node as missed, and the
//     resolution sends that node's last item too, if wanted.
//   - Both ways record what they send in got, by the item's store
//     version: a last item is not sent when the client has that write or
//     a newer one; a publish skips the client when it had that very
//     write as the last item (read after the publish stored it).
//
// Every such decision for one owner is taken on one node, the owner's
// home (cluster.go), under p.mu.

// recipient is the record of one presence of a full JID whose available
// presence an owner receives (or of one of the owner's own resources).
// A new presence with other caps replaces the record (successor).
type recipient struct {
	ver      string          // XEP-0115 ver; "" when the presence had no caps
	capsNode string          // XEP-0115 node (the client's software)
	notify   map[string]bool // nodes it wants (+notify); nil until resolved
	// refused is set for a contact whose unknown caps were not asked
	// for: its subscription does not let it receive the owner's events
	// (see mayAsk). Its notify set is empty until it becomes a
	// subscriber (rosterChanged) or sends presence again.
	refused bool
	// before is what the client wanted before this presence (the
	// resolved set of an earlier one; nil for its first): it has had
	// the last items of those nodes.
	before map[string]bool
	// missed are nodes published to while notify was unresolved.
	missed map[string]bool
	// query is the caps query this record waits for, nil when none.
	query *query
	// got is what the client has been sent of each node it wants,
	// shared by the records of one full JID and kept for as long as it
	// keeps wanting the node.
	got map[string]delivery
}

// delivery is what one client has been sent of one node: store
// versions of items (pubsub.Item.Version).
type delivery struct {
	newest int64 // the newest write sent, as a notification or the last item
	last   int64 // the write sent as the last item
}

// successor returns the record of a new presence of the client whose
// previous record is prev (nil for its first presence), carrying what
// the client has had and what publishes it missed.
func successor(prev *recipient, ver, capsNode string) *recipient {
	r := &recipient{ver: ver, capsNode: capsNode}
	if prev == nil {
		r.got = map[string]delivery{}
		return r
	}
	r.got = prev.got
	if prev.notify != nil {
		r.before = prev.notify
	} else {
		r.before, r.missed = prev.before, prev.missed
	}
	return r
}

// resolveLocked installs the record's notify set, unless it has one
// already (then it returns nothing). It returns the nodes whose last
// item the client gets now: missed, those published to while it was
// unresolved (sent by the node that noted them, this one, home or not:
// only it knows), and wanted, the others it newly wants (sent from the
// owner's home).
func (r *recipient) resolveLocked(notify map[string]bool) (wanted, missed []string) {
	if r.notify != nil {
		return nil, nil
	}
	r.notify = notify
	for node := range r.got {
		if !notify[node] {
			delete(r.got, node) // wanted again later: the last item again
		}
	}
	for node := range notify {
		switch {
		case r.missed[node]:
			missed = append(missed, node)
		case !r.before[node]:
			wanted = append(wanted, node)
		}
	}
	r.before, r.missed = nil, nil
	sort.Strings(wanted)
	sort.Strings(missed)
	return wanted, missed
}

// missLocked notes that a publish to node found the record unresolved.
func (r *recipient) missLocked(node string) {
	if r.missed == nil {
		r.missed = map[string]bool{}
	} else if r.missed[node] {
		return
	}
	// The map may be shared with the record this one succeeded: copy.
	m := make(map[string]bool, len(r.missed)+1)
	for k := range r.missed {
		m[k] = true
	}
	m[node] = true
	r.missed = m
}

// notifiedLocked tells whether the publish of write version of node
// notifies the client (which wants node): not when it had that write as
// the last item. It records the write as sent.
func (r *recipient) notifiedLocked(node string, version int64) bool {
	if version <= 0 {
		return true // not a publish, or an item not stored: nothing to claim
	}
	d := r.got[node]
	if version == d.last {
		return false
	}
	d.newest = max(d.newest, version)
	r.got[node] = d
	return true
}

// query is one disco#info request in flight for a caps version, and the
// recipients waiting for its answer.
type query struct {
	id       string
	ver      string
	sent     time.Time
	to       string
	capsNode string
	owner    string
	waiters  []waiter
}

// waiter is a record waiting for its caps to be resolved. rec is nil for
// an answer to a query this node did not ask: then it resolves the
// client's record only if that has the version ver.
type waiter struct {
	owner, full string
	rec         *recipient
	ver         string
}

const (
	queryPrefix = "pepcaps-"
	// queryTTL is how long a version's query is trusted to be answered
	// before another recipient with that version triggers a new one.
	queryTTL = 30 * time.Second
	// maxWaiters bounds the recipients queued behind one query.
	maxWaiters = 1024
	// propertyPrefix names shared verified caps: pep.caps.<ver> holds the
	// version's +notify nodes, one per line.
	propertyPrefix = "pep.caps."
)

// Intercept watches presence (who gets notifications) and catches the
// answers to the plugin's own caps queries. It never changes a stanza.
func (p *Plugin) Intercept(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
	el := st.El
	switch el.Name {
	case "presence":
		switch pt {
		case plugins.PointInbound:
			// A local user's broadcast presence: one of the owner's own
			// resources. Directed presence carries a 'to' and is skipped.
			if el.To() == "" {
				p.observe(wire.BareJID(el.From()), el.From(), el)
			}
		case plugins.PointDeliver:
			// Presence delivered to one of the owner's sessions.
			if st.Session != "" {
				p.observe(wire.BareJID(st.Session), el.From(), el)
			}
		}
	case "iq":
		// At PointDeliver: an answer another node passed on (cluster.go).
		if !strings.HasPrefix(el.ID(), queryPrefix) {
			return plugins.Continue, nil
		}
		if t := el.Type(); t == "result" || t == "error" {
			p.answer(el)
			return plugins.Handled, nil
		}
	}
	return plugins.Continue, nil
}

// observe records an available or unavailable presence of full as seen by
// owner.
func (p *Plugin) observe(owner, full string, el *wire.Element) {
	if owner == "" || !strings.Contains(full, "/") {
		return
	}
	switch el.Type() {
	case "unavailable":
		p.mu.Lock()
		if m := p.recipients[owner]; m != nil {
			delete(m, full)
			if len(m) == 0 {
				delete(p.recipients, owner)
			}
		}
		p.mu.Unlock()
		return
	case "":
	default:
		return // subscriptions, probes, errors
	}
	var ver, capsNode string
	if c := el.Child("c", NSCaps); c != nil {
		ver, capsNode = c.Attr("ver"), c.Attr("node")
	}
	p.mu.Lock()
	m := p.recipients[owner]
	if m == nil {
		m = map[string]*recipient{}
		p.recipients[owner] = m
	}
	prev := m[full]
	if prev != nil && prev.ver == ver && !prev.refused {
		p.mu.Unlock()
		return
	}
	rec := successor(prev, ver, capsNode)
	m[full] = rec
	if ver == "" {
		rec.resolveLocked(map[string]bool{})
		p.mu.Unlock()
		return
	}
	if n, ok := p.caps[ver]; ok {
		wanted, missed := rec.resolveLocked(n)
		p.mu.Unlock()
		p.sendLastItems(owner, full, wanted, missed)
		return
	}
	w := waiter{owner: owner, full: full, rec: rec}
	if wire.BareJID(full) != owner {
		// A contact's client is asked only once its subscription is
		// known to allow events: the check reads the roster.
		p.mu.Unlock()
		p.askIfSubscribed(w)
		return
	}
	q := p.enqueueLocked(w)
	p.mu.Unlock()
	if q != nil {
		p.goWork(func(ctx context.Context) { p.resolve(ctx, q) })
	}
}

// askIfSubscribed queries, in the background, the caps of a contact's
// client when the contact may receive the owner's events: a subscription
// from or both (XEP-0163 §4.2, the presence access model). Anyone can
// send the owner directed presence (a room occupant, a stranger) and
// must not be sent a disco#info from the owner for it; such a recipient
// is marked refused, with nothing to notify.
func (p *Plugin) askIfSubscribed(w waiter) {
	p.goWork(func(ctx context.Context) {
		if !p.mayAsk(ctx, w.owner, w.full) {
			p.mu.Lock()
			if cur := p.recipients[w.owner][w.full]; cur == w.rec && cur.notify == nil {
				cur.resolveLocked(map[string]bool{})
				cur.refused = true
			}
			p.mu.Unlock()
			return
		}
		if q := p.requeue(w); q != nil {
			p.resolve(ctx, q)
		}
	})
}

// mayAsk reports whether the owner's server may ask full's client for
// its caps: one of the owner's own resources, or a contact subscribed to
// the owner's presence.
func (p *Plugin) mayAsk(ctx context.Context, owner, full string) bool {
	contact := wire.BareJID(full)
	if contact == owner {
		return true
	}
	it, err := p.host.Store().GetRosterItem(ctx, owner, contact)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			p.host.Logger().Warn("pep: reading the roster before a caps query", "owner", owner, "err", err)
		}
		return false
	}
	return it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth
}

// rosterChanged asks again for the caps of a contact's clients that were
// refused, once the contact's subscription lets it receive events. Those
// still being checked are asked again too: their check may have read the
// roster before the change.
func (p *Plugin) rosterChanged(ev *plugins.RosterEvent) {
	if ev.Removed || (ev.Subscription != storage.SubFrom && ev.Subscription != storage.SubBoth) {
		return
	}
	var again []waiter
	p.mu.Lock()
	for full, rec := range p.recipients[ev.Owner] {
		if (rec.refused || rec.notify == nil) && rec.ver != "" && wire.BareJID(full) == ev.Contact {
			fresh := successor(rec, rec.ver, rec.capsNode)
			p.recipients[ev.Owner][full] = fresh
			again = append(again, waiter{owner: ev.Owner, full: full, rec: fresh})
		}
	}
	p.mu.Unlock()
	for _, w := range again {
		p.askIfSubscribed(w)
	}
}

// enqueueLocked queues a waiter for its version's query and returns a new
// query to send, or nil when one is already in flight (or the record
// waits for one already).
func (p *Plugin) enqueueLocked(w waiter) *query {
	if p.askingLocked(w.rec) {
		return nil
	}
	now := p.now()
	q := p.inflight[w.rec.ver]
	if q != nil && now.Sub(q.sent) < queryTTL {
		if len(q.waiters) < maxWaiters {
			q.waiters = append(q.waiters, w)
			w.rec.query = q
		}
		return nil
	}
	for id, old := range p.queries {
		if now.Sub(old.sent) >= queryTTL {
			delete(p.queries, id)
			if p.inflight[old.ver] == old {
				delete(p.inflight, old.ver)
			}
		}
	}
	q = &query{id: p.queryID(), ver: w.rec.ver, sent: now, to: w.full, owner: w.owner, capsNode: w.rec.capsNode, waiters: []waiter{w}}
	p.queries[q.id] = q
	p.inflight[q.ver] = q
	w.rec.query = q
	return q
}

// askingLocked tells whether rec waits for a query still in flight.
func (p *Plugin) askingLocked(rec *recipient) bool {
	q := rec.query
	return q != nil && p.queries[q.id] == q && p.now().Sub(q.sent) < queryTTL
}

// resolve looks the version up in the shared properties, and asks the
// client with disco#info when no node verified it yet.
func (p *Plugin) resolve(ctx context.Context, q *query) {
	if n, ok := p.sharedCaps(ctx, q.ver); ok {
		p.mu.Lock()
		p.rememberLocked(q.ver, n)
		delete(p.queries, q.id)
		if p.inflight[q.ver] == q {
			delete(p.inflight, q.ver)
		}
		waiters := q.waiters
		p.mu.Unlock()
		for _, w := range waiters {
			p.setNotify(w, n)
		}
		return
	}
	info := wire.NewNS("query", wire.NSDiscoInfo)
	if q.capsNode != "" {
		info.SetAttr("node", q.capsNode+"#"+q.ver)
	}
	p.host.Route(ctx, wire.New("iq", "type", "get", "id", q.id, "from", q.owner, "to", q.to).Append(info))
}

// answer handles the result (or error) of a caps query. It may arrive on
// a node that did not ask (the answering client's node): then it only
// shares a verified version and sends the last items the answer asks for.
func (p *Plugin) answer(el *wire.Element) {
	from, owner := el.From(), wire.BareJID(el.To())
	p.mu.Lock()
	q := p.queries[el.ID()]
	if q != nil {
		delete(p.queries, q.id)
		if p.inflight[q.ver] == q {
			delete(p.inflight, q.ver)
		}
	}
	p.mu.Unlock()
	if node, ok := askingNode(el.ID()); q == nil && ok && node != p.nodeName() {
		fwd := el.Copy()
		p.goWork(func(ctx context.Context) { p.forwardAnswer(ctx, node, fwd) })
		return
	}

	info := el.Child("query", wire.NSDiscoInfo)
	notify := map[string]bool{}
	verified := false
	ver := ""
	if el.Type() == "result" && info != nil {
		notify = notifyNodes(info)
		if q != nil {
			ver = q.ver
		} else if _, v, ok := strings.Cut(info.Attr("node"), "#"); ok {
			ver = v
		}
		verified = ver != "" && CapsHash(info) == ver
	}
	if verified {
		p.mu.Lock()
		p.rememberLocked(ver, notify)
		p.mu.Unlock()
	}
	var waiters, again []waiter
	if q != nil {
		for _, w := range q.waiters {
			// An unverified answer describes the responder only; the
			// others with that version are asked themselves (the
			// responder may have moved on to another version and
			// answered with an error, as Smack does when two clients
			// share a version and one of them changes its features).
			if verified || w.full == from {
				waiters = append(waiters, w)
			} else {
				again = append(again, w)
			}
		}
	} else if owner != "" {
		waiters = []waiter{{owner: owner, full: from, ver: ver}}
	}
	p.askAgain(again)
	p.goWork(func(ctx context.Context) {
		if verified {
			if err := p.host.Store().SetProperty(ctx, propertyPrefix+ver, joinNodes(notify)); err != nil {
				p.host.Logger().Warn("pep: sharing caps", "ver", ver, "err", err)
			}
		}
		for _, w := range waiters {
			p.setNotify(w, notify)
		}
	})
}

// requeue queues w's caps query again, unless its client left or changed
// caps meanwhile; it returns the query to send, nil when there is none.
func (p *Plugin) requeue(w waiter) *query {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recipients[w.owner][w.full] != w.rec {
		return nil
	}
	return p.enqueueLocked(w)
}

// askAgain queries the clients of waiters whose query another client
// answered without verification, those still waiting with that version.
func (p *Plugin) askAgain(ws []waiter) {
	for _, w := range ws {
		if q := p.requeue(w); q != nil {
			p.goWork(func(ctx context.Context) { p.resolve(ctx, q) })
		}
	}
}

// setNotify resolves a waiting record and sends the client the last
// items that brings it.
func (p *Plugin) setNotify(w waiter, notify map[string]bool) {
	p.mu.Lock()
	cur := p.recipients[w.owner][w.full]
	var wanted, missed []string
	switch {
	case cur == nil:
	case w.rec == nil:
		// An answer this node did not ask for: use it if it fits.
		if cur.ver == w.ver {
			wanted, missed = cur.resolveLocked(notify)
		}
	case cur == w.rec:
		wanted, missed = cur.resolveLocked(notify)
	}
	// Otherwise the client left or changed caps since.
	p.mu.Unlock()
	p.sendLastItems(w.owner, w.full, wanted, missed)
}

// sendLastItems sends, in the background, the last items a resolution
// brings a client: those of the nodes it newly wants from the owner's
// home only, which sees every presence the others see (cluster.go);
// those of the nodes a publish missed from this node, which noted them.
func (p *Plugin) sendLastItems(owner, full string, wanted, missed []string) {
	if len(wanted) == 0 && len(missed) == 0 {
		return
	}
	p.goWork(func(ctx context.Context) {
		nodes := missed
		if len(wanted) > 0 && p.home(ctx, owner) {
			nodes = append(slices.Clone(wanted), missed...)
		}
		p.sendLast(ctx, owner, full, nodes)
	})
}

// claimLast tells whether the write version of node, read as its last
// item, goes to full: the client still wants the node and has not had
// that write or a newer one. It records the write as sent.
func (p *Plugin) claimLast(owner, full, node string, version int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.recipients[owner][full]
	if cur == nil || (cur.notify != nil && !cur.notify[node]) {
		return false
	}
	d := cur.got[node]
	if version <= d.newest {
		return false
	}
	cur.got[node] = delivery{newest: version, last: version}
	return true
}

// interested returns the owner's recipients that a node's event reaches;
// version is the store version of a published item, 0 for other events.
// Unresolved recipients whose version another node resolved are
// resolved from the shared properties; those still unknown note the
// publish as missed (they get the item when resolved, if they want it)
// and get a query when none is in flight for them.
func (p *Plugin) interested(ctx context.Context, owner, node string, version int64) []string {
	var out []string
	type pending struct {
		full, ver string
	}
	var unknown []pending
	type lastItems struct {
		full           string
		wanted, missed []string
	}
	var sends []lastItems
	defer func() {
		for _, s := range sends {
			p.sendLastItems(owner, s.full, s.wanted, s.missed)
		}
	}()
	p.mu.Lock()
	for full, rec := range p.recipients[owner] {
		if rec.notify == nil {
			if n, ok := p.caps[rec.ver]; ok {
				wanted, missed := rec.resolveLocked(n)
				sends = append(sends, lastItems{full, wanted, missed})
			}
		}
		switch {
		case rec.notify == nil:
			unknown = append(unknown, pending{full, rec.ver})
		case rec.notify[node] && rec.notifiedLocked(node, version):
			out = append(out, full)
		}
	}
	p.mu.Unlock()
	for _, u := range unknown {
		n, shared := p.sharedCaps(ctx, u.ver)
		p.mu.Lock()
		cur := p.recipients[owner][u.full]
		if cur == nil {
			p.mu.Unlock()
			continue // gone meanwhile
		}
		if shared && cur.ver == u.ver {
			p.rememberLocked(u.ver, n)
			wanted, missed := cur.resolveLocked(n)
			sends = append(sends, lastItems{u.full, wanted, missed})
		}
		if cur.notify != nil {
			if cur.notify[node] && cur.notifiedLocked(node, version) {
				out = append(out, u.full)
			}
			p.mu.Unlock()
			continue
		}
		if version > 0 {
			cur.missLocked(node)
		}
		if p.askingLocked(cur) {
			p.mu.Unlock()
			continue
		}
		w := waiter{owner: owner, full: u.full, rec: cur}
		if wire.BareJID(u.full) != owner {
			p.mu.Unlock()
			p.askIfSubscribed(w)
			continue
		}
		q := p.enqueueLocked(w)
		p.mu.Unlock()
		if q != nil {
			p.goWork(func(ctx context.Context) { p.resolve(ctx, q) })
		}
	}
	sort.Strings(out)
	return out
}

// maxCaps bounds the versions cached in memory; past it the cache starts
// over (the shared properties still hold every verified version).
const maxCaps = 10000

// rememberLocked caches a resolved version.
func (p *Plugin) rememberLocked(ver string, notify map[string]bool) {
	if len(p.caps) >= maxCaps {
		p.caps = map[string]map[string]bool{}
	}
	p.caps[ver] = notify
}

// sharedCaps reads a version another node verified.
func (p *Plugin) sharedCaps(ctx context.Context, ver string) (map[string]bool, bool) {
	v, err := p.host.Store().GetProperty(ctx, propertyPrefix+ver)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			p.host.Logger().Warn("pep: reading shared caps", "ver", ver, "err", err)
		}
		return nil, false
	}
	n := map[string]bool{}
	for _, node := range strings.Split(v, "\n") {
		if node != "" {
			n[node] = true
		}
	}
	return n, true
}

// sessionClosed forgets an owner's recipients once the owner has no
// session left on this node: they are rebuilt from presence when the
// owner comes back.
func (p *Plugin) sessionClosed(ctx context.Context, full string) {
	owner := wire.BareJID(full)
	res, err := p.host.Resources(ctx, owner)
	if err != nil {
		return
	}
	node := p.host.Config().Cluster.NodeName
	for _, r := range res {
		if r.JID != full && r.Node == node {
			return
		}
	}
	p.mu.Lock()
	delete(p.recipients, owner)
	p.mu.Unlock()
}

// notifyNodes returns the nodes a disco#info answer asks notifications for.
func notifyNodes(info *wire.Element) map[string]bool {
	n := map[string]bool{}
	for _, f := range info.ChildrenNamed("feature", "") {
		if node, ok := strings.CutSuffix(f.Attr("var"), "+notify"); ok && node != "" {
			n[node] = true
		}
	}
	return n
}

func joinNodes(n map[string]bool) string {
	list := make([]string, 0, len(n))
	for k := range n {
		list = append(list, k)
	}
	sort.Strings(list)
	return strings.Join(list, "\n")
}

// CapsHash computes the XEP-0115 §5.1 verification string of a disco#info
// answer and returns its SHA-1 in base64, to compare with a 'ver'.
func CapsHash(info *wire.Element) string { return caps.Hash(info) }
