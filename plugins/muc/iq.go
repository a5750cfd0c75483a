package muc

import (
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"

	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/wire"
)

func (q *request) iq(ctx context.Context) error {
	el := q.el
	if el.Type() != "get" && el.Type() != "set" {
		if q.nick != "" && q.r != nil {
			q.forwardAnswer()
		}
		return nil // results and errors to the room itself: nothing waits for them
	}
	pl := el.FirstChild()
	if pl == nil {
		return wire.ErrBadRequest
	}
	if q.nick != "" {
		return q.occupantIQ(ctx, pl)
	}
	r := q.r
	switch {
	case el.Type() == "get" && pl.Name == "query" && pl.NS() == wire.NSDiscoInfo:
		if r == nil || (r.Locked && r.affiliation(q.bare) != affOwner) {
			return wire.ErrItemNotFound
		}
		if pl.Attr("node") == "x-roomuser-item" {
			q.reply(wire.IQResult(el, q.reservedNick()))
			return nil
		}
		q.reply(wire.IQResult(el, q.discoInfo()))
		return nil
	case r != nil && pl.Name == "query" && pl.NS() == NSRegister:
		return q.register(ctx, pl)
	case el.Type() == "get" && pl.Name == "query" && pl.NS() == wire.NSDiscoItems:
		if r == nil {
			return wire.ErrItemNotFound
		}
		res := wire.NewNS("query", wire.NSDiscoItems)
		// §6.5: occupants are listed where they are public anyway (a
		// public room's nicks), or to an occupant.
		if r.Config.Public || r.nonAnonymous() || r.bySession(q.from) != nil {
			for _, o := range r.sortedOccupants() {
				res.Append(wire.New("item", "jid", r.jid(q.p)+"/"+o.Nick))
			}
		}
		q.reply(wire.IQResult(el, res))
		return nil
	case el.Type() == "get" && pl.Name == "ping" && pl.NS() == wire.NSPing:
		if r == nil {
			return wire.ErrItemNotFound
		}
		q.reply(wire.IQResult(el, nil))
		return nil
	case r == nil && pl.NS() == NSOwner:
		return wire.ErrItemNotFound
	case r == nil:
		return wire.ErrItemNotFound
	case pl.NS() == mam.NS:
		return q.archiveIQ(ctx, pl)
	case pl.Name == "moderate" && pl.NS() == NSModerate && el.Type() == "set":
		return q.moderate(ctx, pl)
	case pl.Name == "query" && pl.NS() == NSAdmin:
		return q.admin(ctx, pl)
	case pl.Name == "query" && pl.NS() == NSOwner:
		return q.owner(ctx, pl)
	}
	return wire.ErrServiceUnavailable
}

// occupantIQ: IQs to an occupant's room JID. The service answers
// XEP-0410 self-pings; other IQs are not passed on.
func (q *request) occupantIQ(ctx context.Context, pl *wire.Element) error {
	r := q.r
	if pl.Name == "ping" && pl.NS() == wire.NSPing && q.el.Type() == "get" {
		o := (*Occupant)(nil)
		if r != nil {
			o = r.bySession(q.from)
		}
		if o == nil {
			return wire.ErrNotAcceptable.WithText("you are not in the room")
		}
		if r.Occupants[q.nick] == nil {
			return wire.ErrItemNotFound
		}
		q.reply(wire.IQResult(q.el, nil))
		return nil
	}
	if r == nil || r.bySession(q.from) == nil {
		if pl.NS() == wire.NSDiscoInfo || pl.NS() == wire.NSDiscoItems {
			return wire.ErrBadRequest.WithText("you are not in the room") // §6.6
		}
		return wire.ErrNotAcceptable.WithText("you are not in the room")
	}
	t := r.Occupants[q.nick]
	if t == nil {
		return wire.ErrItemNotFound
	}
	q.forwardIQ(r.bySession(q.from), t, pl)
	return nil
}

// IQs between occupants (§7.5's IQ forwarding): an IQ to an occupant's
// room JID goes to that occupant (a vCard request to its account), from
// the sender's room JID; the answer comes back the same way. The
// forwarded IQ's id carries the sender's full JID, so the room keeps no
// state for it: "mucfwd.<base64url of the sender>.<its id>".
const fwdPrefix = "mucfwd."

func (q *request) forwardIQ(from, to *Occupant, pl *wire.Element) {
	c := q.el.Copy()
	c.SetAttr("from", q.r.jid(q.p)+"/"+from.Nick)
	c.SetAttr("id", fwdPrefix+base64.RawURLEncoding.EncodeToString([]byte(q.from))+"."+q.el.ID())
	if pl.Name == "vCard" && pl.NS() == "vcard-temp" {
		c.SetAttr("to", to.Bare) // the account's server answers for it
	} else {
		c.SetAttr("to", firstSession(to))
	}
	q.out.route(c)
}

// forwardAnswer passes an occupant's answer to a forwarded IQ back to
// the occupant that asked, if it is still in the room under that nick.
func (q *request) forwardAnswer() {
	r := q.r
	rest, ok := strings.CutPrefix(q.el.ID(), fwdPrefix)
	if !ok {
		return
	}
	enc, id, ok := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || err != nil {
		return
	}
	asker := string(raw)
	o := r.bySession(asker)
	answerer := r.bySession(q.from)
	if answerer == nil {
		for _, x := range r.byBare(q.bare) { // a vCard answered by the account
			answerer = x
		}
	}
	if o == nil || o.Nick != q.nick || answerer == nil {
		return
	}
	c := q.el.Copy()
	c.SetAttr("id", id)
	c.SetAttr("from", r.jid(q.p)+"/"+answerer.Nick)
	c.SetAttr("to", asker)
	q.out.route(c)
}

// discoInfo is the room's disco#info with its muc#roominfo form.
func (q *request) discoInfo() *wire.Element {
	r := q.r
	name := r.Config.Name
	if name == "" {
		name = r.Name
	}
	res := wire.NewNS("query", wire.NSDiscoInfo).
		Append(wire.New("identity", "category", "conference", "type", "text", "name", name))
	feats := []string{wire.NSDiscoInfo, wire.NSDiscoItems, NS, NSOccupantID, wire.NSPing, NSRegister}
	if q.p.archive() != nil {
		feats = append(feats, mam.NS, mam.NSExtended, mam.NSSID, NSModerate)
	}
	pick := func(b bool, yes, no string) string {
		if b {
			return yes
		}
		return no
	}
	feats = append(feats,
		pick(r.Config.Public, "muc_public", "muc_hidden"),
		pick(r.Config.Persistent, "muc_persistent", "muc_temporary"),
		pick(r.Config.MembersOnly, "muc_membersonly", "muc_open"),
		pick(r.Config.Moderated, "muc_moderated", "muc_unmoderated"),
		pick(r.nonAnonymous(), "muc_nonanonymous", "muc_semianonymous"),
		pick(r.Config.Password != "", "muc_passwordprotected", "muc_unsecured"),
	)
	for _, f := range feats {
		res.Append(wire.New("feature", "var", f))
	}
	form := wire.NewNS("x", NSData).SetAttr("type", "result")
	form.Append(hiddenField("FORM_TYPE", NSRoomInfo))
	form.Append(field("muc#roominfo_description", "Description", "text-single", r.Config.Description))
	form.Append(field("muc#roominfo_subject", "Subject", "text-single", r.Subject))
	form.Append(field("muc#roominfo_occupants", "Number of occupants", "text-single", strconv.Itoa(len(r.Occupants))))
	form.Append(field("muc#roomconfig_roomname", "Name", "text-single", name))
	form.Append(field("muc#roominfo_subjectmod", "Occupants may change the subject", "boolean", boolStr(r.Config.ChangeSubject)))
	if r.Config.Lang != "" {
		form.Append(field("muc#roominfo_lang", "Language", "text-single", r.Config.Lang))
	}
	res.Append(form)
	return res
}

// admin is the muc#admin IQs (§8, §9): role and affiliation lists and
// changes.
func (q *request) admin(ctx context.Context, pl *wire.Element) error {
	r, p := q.r, q.p
	actor := r.bySession(q.from)
	aff := r.affiliation(q.bare)
	if p.host.IsAdmin(q.bare) && q.node != "" {
		aff = affOwner
	}
	items := pl.ChildrenNamed("item", "")
	if len(items) == 0 {
		return wire.ErrBadRequest
	}
	if q.el.Type() == "get" {
		res := wire.NewNS("query", NSAdmin)
		it := items[0]
		switch {
		case it.Attr("affiliation") != "":
			want := it.Attr("affiliation")
			switch want {
			case affOwner, affAdmin, affMember, affOutcast:
			default:
				return wire.ErrBadRequest
			}
			if aff != affOwner && aff != affAdmin && !(want == affMember && actor != nil && slices.Contains(r.Config.GetMemberList, actor.Role)) {
				return wire.ErrForbidden
			}
			for _, j := range slicesSortedKeys(r.Affiliations) {
				if r.Affiliations[j] == want {
					item := wire.New("item", "affiliation", want, "jid", j)
					if n := nickOf(r, j); n != "" {
						item.SetAttr("nick", n)
					}
					res.Append(item)
				}
			}
		case it.Attr("role") != "":
			want := it.Attr("role")
			if actor == nil || actor.Role != roleModerator {
				return wire.ErrForbidden
			}
			for _, o := range r.sortedOccupants() {
				if o.Role == want {
					res.Append(wire.New("item", "role", want, "nick", o.Nick, "jid", firstSession(o), "affiliation", r.affiliation(o.Bare)))
				}
			}
		default:
			return wire.ErrBadRequest
		}
		q.reply(wire.IQResult(q.el, res))
		return nil
	}
	// set: check every item before changing anything.
	type change struct {
		item          *wire.Element
		target        *Occupant
		bare, role, a string
	}
	var changes []change
	for _, it := range items {
		c := change{item: it, role: it.Attr("role"), a: it.Attr("affiliation")}
		switch {
		case c.role != "" && c.a == "":
			c.target = r.Occupants[it.Attr("nick")]
			if c.target == nil {
				return wire.ErrItemNotFound.WithText("no occupant has that nickname")
			}
			if err := q.mayChangeRole(actor, aff, c.target, c.role); err != nil {
				return err
			}
		case c.a != "":
			j := it.Attr("jid")
			if j == "" && it.Attr("nick") != "" {
				if o := r.Occupants[it.Attr("nick")]; o != nil {
					j = o.Bare
				}
			}
			c.bare = wire.JIDOf(j).Bare()
			if c.bare == "" {
				return wire.ErrBadRequest.WithText("an affiliation change names a JID")
			}
			if err := q.mayChangeAffiliation(aff, c.bare, c.a); err != nil {
				return err
			}
		default:
			return wire.ErrBadRequest
		}
		changes = append(changes, c)
	}
	// The last owner stays.
	owners := map[string]bool{}
	for _, o := range r.owners() {
		owners[o] = true
	}
	for _, c := range changes {
		if c.a != "" {
			if c.a == affOwner {
				owners[c.bare] = true
			} else {
				delete(owners, c.bare)
			}
		}
	}
	if len(owners) == 0 {
		return wire.ErrConflict.WithText("a room keeps at least one owner")
	}
	reason := ""
	actorNick := ""
	if actor != nil {
		actorNick = actor.Nick
	}
	for _, c := range changes {
		reason = c.item.ChildText("reason", "")
		if c.target != nil {
			q.setRole(c.target, c.role, actorNick, reason)
		} else {
			q.setAffiliation(c.bare, c.a, actorNick, reason)
		}
	}
	if err := p.save(ctx, r); err != nil {
		return err
	}
	q.reply(wire.IQResult(q.el, nil))
	p.emptied(ctx, r)
	return nil
}

var rank = map[string]int{affOutcast: 0, affNone: 1, affMember: 2, affAdmin: 3, affOwner: 4}

func (q *request) mayChangeRole(actor *Occupant, aff string, target *Occupant, role string) error {
	r := q.r
	switch role {
	case roleNone, roleVisitor, roleParticipant, roleModerator:
	default:
		return wire.ErrBadRequest
	}
	if actor == nil || actor.Role != roleModerator {
		return wire.ErrForbidden.WithText("only moderators change roles")
	}
	ta := r.affiliation(target.Bare)
	// §5.1.1, §5.1.3, §8.2: an admin's or owner's voice and moderation
	// are not taken away by anyone, nor is anyone kicked by a moderator
	// of a lower affiliation.
	if (role == roleNone || role == roleVisitor || role == roleParticipant && target.Role == roleModerator) && rank[ta] >= rank[affAdmin] {
		return wire.ErrNotAllowed.WithText("an admin or owner cannot be kicked or silenced")
	}
	if role == roleNone && rank[ta] > rank[aff] {
		return wire.ErrNotAllowed
	}
	if role == roleModerator || target.Role == roleModerator && role != roleNone {
		if aff != affOwner && aff != affAdmin {
			return wire.ErrForbidden.WithText("only admins grant or revoke moderation")
		}
	}
	return nil
}

func (q *request) mayChangeAffiliation(aff, target, to string) error {
	r := q.r
	switch to {
	case affOwner, affAdmin, affMember, affNone, affOutcast:
	default:
		return wire.ErrBadRequest
	}
	cur := r.affiliation(target)
	switch aff {
	case affOwner:
		return nil
	case affAdmin:
		if rank[cur] >= rank[affAdmin] || rank[to] >= rank[affAdmin] {
			return wire.ErrNotAllowed.WithText("only owners change admins and owners")
		}
		return nil
	}
	return wire.ErrForbidden.WithText("only admins and owners change affiliations")
}

// setRole changes an occupant's role; none kicks (307).
func (q *request) setRole(o *Occupant, role, actor, reason string) {
	r, p := q.r, q.p
	if role == roleNone {
		q.remove(o, r.affiliation(o.Bare), actor, reason, 307)
		return
	}
	o.Role = role
	for _, other := range r.sortedOccupants() {
		el := p.occupantPresence(r, o, other)
		if other == o {
			addStatus(el.Child("x", NSUser), 110)
		}
		q.out.add(other, el)
	}
}

// setAffiliation changes a user's affiliation and the roles of its
// occupants: outcast bans (301), losing membership of a members-only room
// removes (321).
func (q *request) setAffiliation(bare, aff, actor, reason string) {
	r, p := q.r, q.p
	if aff == affNone {
		delete(r.Affiliations, bare)
	} else {
		r.Affiliations[bare] = aff
	}
	for _, o := range r.byBare(bare) {
		switch {
		case aff == affOutcast:
			q.remove(o, affOutcast, actor, reason, 301)
		case aff == affNone && r.Config.MembersOnly:
			q.remove(o, affNone, actor, reason, 321)
		default:
			o.Role = r.defaultRole(aff)
			for _, other := range r.sortedOccupants() {
				el := p.occupantPresence(r, o, other)
				if other == o {
					addStatus(el.Child("x", NSUser), 110)
				}
				q.out.add(other, el)
			}
		}
	}
}

// remove takes an occupant out of the room with a status code, telling
// it (110) and everyone else.
func (q *request) remove(o *Occupant, aff, actor, reason string, code int) {
	r, p := q.r, q.p
	mk := func(to *Occupant) *wire.Element {
		el := p.leavePresence(r, o, aff, to, "", code)
		item := el.Child("x", NSUser).Child("item", "")
		if actor != "" {
			item.Append(wire.New("actor", "nick", actor))
		}
		if reason != "" {
			item.Append(wire.New("reason").SetText(reason))
		}
		return el
	}
	self := mk(o)
	addStatus(self.Child("x", NSUser), 110)
	q.out.add(o, self)
	delete(r.Occupants, o.Nick)
	for _, other := range r.sortedOccupants() {
		q.out.add(other, mk(other))
	}
}

// owner is the muc#owner IQs (§10): the configuration form, its
// submission or cancellation, and destruction.
func (q *request) owner(ctx context.Context, pl *wire.Element) error {
	r, p := q.r, q.p
	aff := r.affiliation(q.bare)
	if p.host.IsAdmin(q.bare) && q.node != "" {
		aff = affOwner
	}
	if aff != affOwner {
		return wire.ErrForbidden.WithText("only owners configure the room")
	}
	if q.el.Type() == "get" {
		q.reply(wire.IQResult(q.el, wire.NewNS("query", NSOwner).Append(q.configForm())))
		return nil
	}
	if d := pl.Child("destroy", ""); d != nil {
		q.destroy(ctx, d)
		q.reply(wire.IQResult(q.el, nil))
		return nil
	}
	x := pl.Child("x", NSData)
	if x == nil {
		return wire.ErrBadRequest
	}
	switch x.Attr("type") {
	case "cancel":
		if r.Locked {
			// Cancelling the configuration of a new room destroys it.
			q.destroy(ctx, nil)
		}
		q.reply(wire.IQResult(q.el, nil))
		return nil
	case "submit":
	default:
		return wire.ErrBadRequest
	}
	before := r.Config
	cfg, owners, admins, err := q.applyForm(x)
	if err != nil {
		return err
	}
	r.Config = cfg
	for _, j := range owners {
		r.Affiliations[j] = affOwner
	}
	for _, j := range admins {
		if r.Affiliations[j] != affOwner {
			r.Affiliations[j] = affAdmin
		}
	}
	wasLocked := r.Locked
	r.Locked = false
	if err := p.save(ctx, r); err != nil {
		r.Config, r.Locked = before, wasLocked
		return err
	}
	p.updatePublic(r)
	q.reply(wire.IQResult(q.el, nil))
	if cfg.MembersOnly && !before.MembersOnly {
		// §9.3: occupants who are not members leave with 322.
		for _, o := range r.sortedOccupants() {
			if r.affiliation(o.Bare) == affNone {
				q.remove(o, affNone, "", "", 322)
			}
		}
	}
	if !wasLocked {
		// §10.2.1: occupants learn what changed.
		var codes []int
		codes = append(codes, 104)
		if before.WhoIs != cfg.WhoIs {
			codes = append(codes, map[bool]int{true: 172, false: 173}[cfg.WhoIs == "anyone"])
		}
		if before.Logging != cfg.Logging {
			codes = append(codes, map[bool]int{true: 170, false: 171}[cfg.Logging])
		}
		note := wire.New("message", "from", r.jid(p), "type", "groupchat", "id", newID())
		nx := wire.NewNS("x", NSUser)
		for _, c := range codes {
			addStatus(nx, c)
		}
		note.Append(nx)
		for _, o := range r.sortedOccupants() {
			q.out.add(o, note)
		}
	}
	return nil
}

// destroy is §10.9: every occupant leaves with the destroy element (an
// alternate venue, a reason), the room is gone from the store.
func (q *request) destroy(ctx context.Context, d *wire.Element) {
	r, p := q.r, q.p
	for _, o := range r.sortedOccupants() {
		el := wire.New("presence", "type", "unavailable", "from", r.jid(p)+"/"+o.Nick)
		x := wire.NewNS("x", NSUser).Append(wire.New("item", "affiliation", affNone, "role", roleNone))
		de := wire.New("destroy")
		if d != nil {
			if alt := d.Attr("jid"); alt != "" {
				de.SetAttr("jid", alt)
			}
			if rs := d.ChildText("reason", ""); rs != "" {
				de.Append(wire.New("reason").SetText(rs))
			}
			if pw := d.ChildText("password", ""); pw != "" {
				de.Append(wire.New("password").SetText(pw))
			}
		}
		x.Append(de)
		if o.Sessions[q.from] != "" || o.Bare == q.bare {
			addStatus(x, 110)
		}
		el.Append(x)
		q.out.add(o, el)
	}
	r.Occupants = map[string]*Occupant{}
	p.drop(ctx, r)
	if a := p.archive(); a != nil {
		if _, err := a.DeleteOwner(ctx, p.archiveOwner(r.Name)); err != nil {
			p.log.Warn("muc: a destroyed room's archive stays", "room", r.Name, "err", err)
		}
	}
}

func nickOf(r *Room, bare string) string {
	for n, b := range r.AffNicks {
		if b == bare {
			return n
		}
	}
	return ""
}

func slicesSortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func parseBool(s string) bool {
	s = strings.TrimSpace(s)
	return s == "1" || s == "true"
}
