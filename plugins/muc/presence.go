package muc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// Handle processes one stanza for a room on its host.
func (p *Plugin) Handle(ctx context.Context, room string, el *wire.Element) error {
	node := el.Attr(nodeAttr)
	el.RemoveAttr(nodeAttr)
	if domainOf(el.From()) != strings.ToLower(p.host.Domain()) {
		node = "" // only this domain's nodes hold sessions
	}
	p.mu.Lock()
	r := p.rooms[room]
	p.mu.Unlock()
	req := &request{p: p, r: r, el: el, node: node, out: p.newOutbox(), room: room}
	defer func() {
		// Messages change nothing operators see but the subject; they
		// are the many, so they do not pay for the copy.
		if req.r != nil && (el.Name != "message" || el.Child("subject", "") != nil) {
			p.publish(req.r)
		}
	}()
	if el.From() == p.domain {
		// The service's own control stanzas (handle never dispatches a
		// stanza from the service domain: nobody else can send one).
		switch {
		case r == nil:
		case el.Child("nodes-gone", nsInternal) != nil:
			p.nodesGone(ctx, r, strings.Fields(el.Child("nodes-gone", nsInternal).Text))
		case el.Child("destroy", nsInternal) != nil:
			req.from = p.domain
			req.destroy(ctx, el.Child("destroy", nsInternal))
			req.out.flush(ctx)
		case el.Child("shutdown", nsInternal) != nil:
			p.shutdown(ctx, r)
		}
		if el.Child("shutdown", nsInternal) != nil {
			p.closed(room)
		}
		return nil
	}
	req.from = wire.JIDOf(el.From()).String()
	if req.from == "" {
		return wire.ErrJIDMalformed
	}
	req.bare = bareOf(req.from)
	_, req.nick, _ = strings.Cut(el.To(), "/")
	var err error
	switch el.Name {
	case "presence":
		err = req.presence(ctx)
	case "message":
		err = req.message(ctx)
	case "iq":
		err = req.iq(ctx)
	}
	req.out.flush(ctx)
	if err != nil && el.Type() == "error" {
		return nil // never answer an error with an error
	}
	return err
}

// request is one stanza being handled for a room.
type request struct {
	p    *Plugin
	r    *Room // nil: the room does not exist
	el   *wire.Element
	room string
	from string // the sender's full JID, normalized
	bare string
	nick string // the resource of 'to'
	node string // the node holding the sender's session ("" for other domains)
	out  *outbox
}

// reply sends a stanza to the sender, in order with the room's other
// stanzas to it.
func (q *request) reply(el *wire.Element) {
	q.out.addTo(q.from, q.node, el)
}

// fail answers the stanza with an error (a presence error keeps the
// nick's address as its 'from').
func (q *request) fail(se *wire.StanzaError) {
	e := wire.ErrorReply(q.el, se)
	e.RemoveAttr("to")
	e.RemoveAttr(nodeAttr)
	q.reply(e)
}

func (q *request) presence(ctx context.Context) error {
	r, el := q.r, q.el
	switch el.Type() {
	case "":
	case "unavailable":
		if r == nil {
			return nil
		}
		if o := r.bySession(q.from); o != nil {
			q.leave(ctx, o, el.ChildText("status", ""))
		}
		return nil
	case "error":
		// The occupant's server says it cannot be reached: it left.
		if r != nil {
			if o := r.bySession(q.from); o != nil {
				q.leave(ctx, o, "")
			}
		}
		return nil
	default:
		return nil // subscriptions and probes mean nothing to a room
	}
	if q.nick == "" {
		q.fail(wire.ErrJIDMalformed.WithText("a nickname is required"))
		return nil
	}
	nick := wire.JIDOf("x@x/" + q.nick).String()
	if nick == "" {
		q.fail(wire.ErrJIDMalformed.WithText("that nickname is not allowed"))
		return nil
	}
	q.nick = strings.TrimPrefix(nick, "x@x/")
	if r != nil {
		if o := r.bySession(q.from); o != nil {
			if o.Nick == q.nick {
				q.update(ctx, o)
			} else {
				q.changeNick(ctx, o)
			}
			return nil
		}
	}
	return q.join(ctx)
}

// join enters the room (XEP-0045 §7.2), creating it when it does not
// exist (§10.1).
func (q *request) join(ctx context.Context) error {
	p, el := q.p, q.el
	created := false
	if q.r == nil {
		if !q.mayCreate() {
			q.fail(wire.ErrNotAllowed.WithText("rooms are not created here by you"))
			return nil
		}
		if se := q.roomLimit(ctx); se != nil {
			q.fail(se)
			return nil
		}
		r := &Room{
			Name: q.room, Config: p.defaultConfig(), Affiliations: map[string]string{q.bare: affOwner},
			Occupants: map[string]*Occupant{}, Created: time.Now().UTC(), Locked: true,
		}
		// A join without the MUC element (a groupchat 1.0 client) gets an
		// instant room; one with it a locked room to configure.
		if el.Child("x", NS) == nil {
			r.Locked = false
		}
		q.r = r
		created = true
		p.mu.Lock()
		p.rooms[q.room] = r
		p.mu.Unlock()
	}
	r := q.r
	aff := r.affiliation(q.bare)
	if p.host.IsAdmin(q.bare) && q.node != "" {
		aff = affOwner
	}
	x := el.Child("x", NS)
	switch {
	case r.Locked && aff != affOwner:
		q.fail(wire.ErrItemNotFound.WithText("the room is being configured"))
		return nil
	case aff == affOutcast:
		q.fail(wire.ErrForbidden.WithText("you are banned from this room"))
		return nil
	case r.Config.MembersOnly && aff == affNone:
		q.fail(errRegistrationRequired.WithText("the room is members-only"))
		return nil
	case r.Config.Password != "" && aff != affOwner && (x == nil || x.ChildText("password", "") != r.Config.Password):
		q.fail(wire.ErrNotAuthorized.WithText("a password is required"))
		return nil
	}
	if o, ok := r.Occupants[q.nick]; ok && o.Bare != q.bare {
		q.fail(wire.ErrConflict.WithText("that nickname is in use"))
		return nil
	}
	if n := r.AffNicks[q.nick]; n != "" && n != q.bare {
		q.fail(wire.ErrConflict.WithText("that nickname is registered by another user"))
		return nil
	}
	if len(r.Occupants) >= r.maxUsers(p) && aff != affOwner && aff != affAdmin && r.Occupants[q.nick] == nil {
		q.fail(wire.ErrServiceUnavailable.WithText("the room is full"))
		return nil
	}
	role := r.defaultRole(aff)
	o := r.Occupants[q.nick]
	if o == nil {
		o = &Occupant{Nick: q.nick, Bare: q.bare, Role: role, Sessions: map[string]string{}}
	}
	o.Sessions[q.from] = q.node
	o.Presence = presenceBody(el)
	// Who is here already, to the newcomer.
	for _, other := range r.sortedOccupants() {
		if other.Nick == q.nick {
			continue
		}
		if !r.broadcastsPresence(other.Role) {
			continue
		}
		q.reply(p.occupantPresence(r, other, o))
	}
	r.Occupants[q.nick] = o
	// The newcomer, to everyone else; its own copy with 110 (and 201 when
	// it created the room) last.
	if r.broadcastsPresence(o.Role) {
		for _, other := range r.sortedOccupants() {
			if other != o {
				q.out.add(other, p.occupantPresence(r, o, other))
			}
		}
	}
	self := p.occupantPresence(r, o, o, 110)
	sx := self.Child("x", NSUser)
	if r.nonAnonymous() {
		addStatus(sx, 100)
	}
	if r.Config.Logging {
		addStatus(sx, 170)
	}
	if created {
		addStatus(sx, 201)
	}
	q.reply(self)
	if created {
		if err := p.save(ctx, r); err != nil {
			return err
		}
	}
	q.sendHistory(x)
	// The subject last: clients take it as the end of the join.
	subj := wire.New("message", "from", r.jid(p), "type", "groupchat", "id", newID())
	if r.SubjectFrom != "" {
		subj.SetAttr("from", r.jid(p)+"/"+r.SubjectFrom)
	}
	subj.Append(wire.New("subject").SetText(r.Subject))
	q.reply(subj)
	p.updatePublic(r)
	return nil
}

func (q *request) mayCreate() bool {
	switch q.p.create {
	case "anyone":
		return true
	case "admins":
		return q.p.host.IsAdmin(q.bare)
	}
	return q.node != ""
}

// roomLimit refuses a creation by a user who already owns
// muc.max_rooms_per_user rooms. XEP-0045 §10.1.1 answers a creation the
// service restricts with <not-allowed/> (cancel), the same answer as
// muc.create's; resource-constraint (which Prosody uses for some limits)
// would tell the client to wait and retry, and waiting frees nothing.
// The rooms are counted in the store, which every node shares, so rooms
// hosted on other nodes count too (claimRoom); the configured
// administrators are exempt.
func (q *request) roomLimit(ctx context.Context) *wire.StanzaError {
	p := q.p
	if p.maxRooms < 0 || p.host.IsAdmin(q.bare) {
		return nil
	}
	n, err := p.claimRoom(ctx, q.bare, q.room, p.maxRooms)
	switch {
	case errors.Is(err, errAtLimit):
		return wire.ErrNotAllowed.WithText(fmt.Sprintf("you own %d rooms already, the most one user may own here (muc.max_rooms_per_user)", n))
	case err != nil:
		p.log.Warn("muc: cannot count a user's rooms; the creation is refused", "user", q.bare, "err", err)
		return wire.ErrInternalServerError.WithText("your rooms cannot be counted now")
	}
	return nil
}

// update broadcasts an occupant's new presence (show, status).
func (q *request) update(ctx context.Context, o *Occupant) {
	r := q.r
	o.Sessions[q.from] = q.node
	o.Presence = presenceBody(q.el)
	if !r.broadcastsPresence(o.Role) {
		q.reply(q.p.occupantPresence(r, o, o, 110))
		return
	}
	for _, other := range r.sortedOccupants() {
		if other == o {
			q.out.add(o, q.p.occupantPresence(r, o, o, 110))
			continue
		}
		q.out.add(other, q.p.occupantPresence(r, o, other))
	}
}

// changeNick is §7.6: unavailable with 303 from the old nick, available
// from the new one.
func (q *request) changeNick(ctx context.Context, o *Occupant) {
	r, p := q.r, q.p
	if !r.Config.ChangeNick && r.affiliation(o.Bare) != affOwner && r.affiliation(o.Bare) != affAdmin {
		q.fail(wire.ErrNotAcceptable.WithText("nickname changes are not allowed here"))
		return
	}
	if other, ok := r.Occupants[q.nick]; ok && other != o {
		q.fail(wire.ErrConflict.WithText("that nickname is in use"))
		return
	}
	if n := r.AffNicks[q.nick]; n != "" && n != o.Bare {
		q.fail(wire.ErrConflict.WithText("that nickname is registered by another user"))
		return
	}
	if len(o.Sessions) > 1 {
		q.fail(wire.ErrNotAcceptable.WithText("the nickname is used by other sessions of yours"))
		return
	}
	old := o.Nick
	for _, other := range r.sortedOccupants() {
		el := p.leavePresence(r, o, r.affiliation(o.Bare), other, "", 303)
		el.Child("x", NSUser).Child("item", "").SetAttr("nick", q.nick)
		if other == o {
			addStatus(el.Child("x", NSUser), 110)
		}
		q.out.add(other, el)
	}
	delete(r.Occupants, old)
	o.Nick = q.nick
	o.Presence = presenceBody(q.el)
	r.Occupants[q.nick] = o
	for _, other := range r.sortedOccupants() {
		if other == o {
			q.out.add(o, p.occupantPresence(r, o, o, 110))
			continue
		}
		q.out.add(other, p.occupantPresence(r, o, other))
	}
}

// leave is §7.14: the session leaves; the occupant leaves with its last
// session.
func (q *request) leave(ctx context.Context, o *Occupant, status string) {
	r, p := q.r, q.p
	node := o.Sessions[q.from]
	self := p.leavePresence(r, o, r.affiliation(o.Bare), o, status, 110)
	self.Child("x", NSUser).Child("item", "").SetAttr("jid", q.from)
	q.out.addTo(q.from, node, self)
	if len(o.Sessions) > 1 {
		delete(o.Sessions, q.from)
		return
	}
	delete(r.Occupants, o.Nick)
	for _, other := range r.sortedOccupants() {
		q.out.add(other, p.leavePresence(r, o, r.affiliation(o.Bare), other, status))
	}
	delete(o.Sessions, q.from)
	p.emptied(ctx, r)
}

// shutdown is a room's goodbye when its node stops and no other node
// takes it over: every session of every occupant gets its own
// unavailable presence with 110 and 332 (XEP-0045: removed because the
// service is shutting down), and the occupants leave. Each session gets
// only its own presence, not the others': that would be occupants²
// stanzas, and a client that left a room keeps nothing of them.
func (p *Plugin) shutdown(ctx context.Context, r *Room) {
	b := p.newOutbox()
	for _, o := range r.sortedOccupants() {
		for full, node := range o.Sessions {
			self := p.leavePresence(r, o, r.affiliation(o.Bare), o, "", 110, 332)
			self.Child("x", NSUser).Child("item", "").SetAttr("jid", full)
			b.addTo(full, node, self)
		}
		delete(r.Occupants, o.Nick)
	}
	b.flush(ctx)
	p.emptied(ctx, r)
}

// emptied drops a temporary room whose last occupant left.
func (p *Plugin) emptied(ctx context.Context, r *Room) {
	if len(r.Occupants) == 0 && !r.Config.Persistent {
		p.drop(ctx, r)
	}
}

// nodesGone removes the sessions held by nodes that left the cluster.
func (p *Plugin) nodesGone(ctx context.Context, r *Room, nodes []string) {
	gone := map[string]bool{}
	for _, n := range nodes {
		gone[n] = true
	}
	b := p.newOutbox()
	for _, o := range r.sortedOccupants() {
		for full, node := range o.Sessions {
			if node != "" && gone[node] {
				delete(o.Sessions, full)
			}
		}
		if len(o.Sessions) == 0 {
			delete(r.Occupants, o.Nick)
			for _, other := range r.sortedOccupants() {
				b.add(other, p.leavePresence(r, o, r.affiliation(o.Bare), other, ""))
			}
		}
	}
	b.flush(ctx)
	p.emptied(ctx, r)
}

// broadcastsPresence: muc#roomconfig_presencebroadcast.
func (r *Room) broadcastsPresence(role string) bool {
	for _, x := range r.Config.PresenceRoles {
		if x == role {
			return true
		}
	}
	return len(r.Config.PresenceRoles) == 0
}

// presenceBody keeps what an occupant's presence says (show, status,
// priority, caps...) without the MUC join element.
func presenceBody(el *wire.Element) []byte {
	c := wire.New("presence")
	for _, ch := range el.Children {
		if ch.NS() == NS || ch.NS() == NSUser || ch.Name == "error" {
			continue
		}
		c.Append(ch)
	}
	return wire.AppendBinary(nil, c)
}

// occupantPresence is o's presence as occupant 'to' sees it.
func (p *Plugin) occupantPresence(r *Room, o, to *Occupant, codes ...int) *wire.Element {
	var el *wire.Element
	if len(o.Presence) > 0 {
		if e, _, err := wire.DecodeBinary(o.Presence); err == nil {
			el = e
		}
	}
	if el == nil {
		el = wire.New("presence")
	}
	el.SetAttr("from", r.jid(p)+"/"+o.Nick)
	x := wire.NewNS("x", NSUser)
	item := wire.New("item", "affiliation", r.affiliation(o.Bare), "role", o.Role)
	if r.nonAnonymous() || (to != nil && (to.Role == roleModerator || to == o)) {
		item.SetAttr("jid", firstSession(o))
	}
	x.Append(item)
	for _, c := range codes {
		addStatus(x, c)
	}
	el.Append(x)
	el.Append(wire.NewNS("occupant-id", NSOccupantID).SetAttr("id", p.occupantID(r.Name, o.Bare)))
	return el
}

// leavePresence is o's unavailable presence as 'to' sees it.
func (p *Plugin) leavePresence(r *Room, o *Occupant, aff string, to *Occupant, status string, codes ...int) *wire.Element {
	el := wire.New("presence", "type", "unavailable", "from", r.jid(p)+"/"+o.Nick)
	if status != "" {
		el.Append(wire.New("status").SetText(status))
	}
	x := wire.NewNS("x", NSUser)
	item := wire.New("item", "affiliation", aff, "role", roleNone)
	if o.Bare != "" && (r.nonAnonymous() || (to != nil && (to.Role == roleModerator || to == o))) {
		item.SetAttr("jid", firstSession(o))
	}
	x.Append(item)
	for _, c := range codes {
		addStatus(x, c)
	}
	el.Append(x)
	if o.Bare != "" {
		el.Append(wire.NewNS("occupant-id", NSOccupantID).SetAttr("id", p.occupantID(r.Name, o.Bare)))
	}
	return el
}

func firstSession(o *Occupant) string {
	best := ""
	for full := range o.Sessions {
		if best == "" || full < best {
			best = full
		}
	}
	if best == "" {
		return o.Bare
	}
	return best
}

func addStatus(x *wire.Element, code int) {
	x.Append(wire.New("status", "code", strconv.Itoa(code)))
}

func hasStatus(x *wire.Element, code int) bool {
	c := strconv.Itoa(code)
	for _, s := range x.ChildrenNamed("status", "") {
		if s.Attr("code") == c {
			return true
		}
	}
	return false
}

// errRegistrationRequired is XEP-0045's members-only refusal.
var errRegistrationRequired = &wire.StanzaError{Type: wire.ErrorTypeAuth, Condition: "registration-required"}
