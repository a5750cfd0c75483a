package muc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/aviary-im/aviary/wire"
)

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (q *request) message(ctx context.Context) error {
	r, el := q.r, q.el
	if el.Type() == "error" {
		return nil
	}
	if r == nil {
		return wire.ErrItemNotFound.WithText("no such room")
	}
	o := q.occupant(ctx)
	if o != nil && el.Child("body", "") != nil && !o.allow(time.Now(), q.p.rate, q.p.burst) {
		return errTooFast
	}
	if q.nick != "" {
		return q.private(ctx, o)
	}
	if x := el.Child("x", NSUser); x != nil && (x.Child("invite", "") != nil || x.Child("decline", "") != nil) {
		return q.invite(ctx, o, x)
	}
	if form := el.Child("x", NSData); form != nil && formType(form) == NSRequest && el.Type() != "groupchat" {
		return q.voiceRequest(ctx, o, form)
	}
	if el.Type() != "groupchat" {
		if o == nil {
			return wire.ErrNotAcceptable.WithText("you are not in the room")
		}
		return wire.ErrBadRequest.WithText("messages to the room are of type groupchat")
	}
	if o == nil {
		return wire.ErrNotAcceptable.WithText("you are not in the room")
	}
	if o.Role == roleVisitor || o.Role == roleNone {
		return wire.ErrForbidden.WithText("you have no voice in this room")
	}
	subject := el.Child("subject", "")
	if subject != nil && el.Child("body", "") == nil {
		if !r.Config.ChangeSubject && o.Role != roleModerator {
			return wire.ErrForbidden.WithText("only moderators change the subject here")
		}
		r.Subject, r.SubjectFrom, r.SubjectAt = subject.AllText(), o.Nick, time.Now().UTC()
		if err := q.p.save(ctx, r); err != nil {
			return err
		}
	}
	out := groupMessage(el, r.jid(q.p)+"/"+o.Nick)
	out.Append(wire.NewNS("occupant-id", NSOccupantID).SetAttr("id", q.p.occupantID(r.Name, o.Bare)))
	if subject == nil || el.Child("body", "") != nil {
		q.p.archiveMessage(ctx, r, o.Bare, out)
		q.remember(out)
	}
	for _, other := range r.Occupants {
		q.out.add(other, out)
	}
	return nil
}

// groupMessage is the copy of an occupant's message the room sends: its
// payload, from the occupant's room JID, with the sender's id (clients
// match their reflected message by it).
func groupMessage(el *wire.Element, from string) *wire.Element {
	out := wire.New("message", "from", from, "type", "groupchat")
	if id := el.ID(); id != "" {
		out.SetAttr("id", id)
	}
	if l := el.Attr("xml:lang"); l != "" {
		out.SetAttr("xml:lang", l)
	}
	for _, c := range el.Children {
		if c.NS() == NSOccupantID || c.Name == "delay" && c.NS() == wire.NSDelay {
			continue
		}
		out.Append(c)
	}
	return out
}

// remember keeps a message for the history new occupants get.
func (q *request) remember(el *wire.Element) {
	r := q.r
	n := min(r.Config.HistoryLength, q.p.history)
	if n <= 0 {
		return
	}
	b := wire.AppendBinary(nil, el)
	r.History = append(r.History, HistoryItem{At: time.Now().UTC(), El: b, Len: len(el.String())})
	r.History = trimHistory(r.History, n)
}

// sendHistory sends the history the join asked for (§7.2.13-15):
// maxstanzas, maxchars, seconds and since, all of them applied.
func (q *request) sendHistory(x *wire.Element) {
	items := q.r.History
	if len(items) == 0 {
		return
	}
	maxStanzas, maxChars := len(items), -1
	var since time.Time
	if x != nil {
		if h := x.Child("history", ""); h != nil {
			if v, err := strconv.Atoi(h.Attr("maxstanzas")); err == nil && v >= 0 {
				maxStanzas = min(maxStanzas, v)
			}
			if v, err := strconv.Atoi(h.Attr("maxchars")); err == nil && v >= 0 {
				maxChars = v
			}
			if v, err := strconv.Atoi(h.Attr("seconds")); err == nil && v >= 0 {
				since = time.Now().Add(-time.Duration(v) * time.Second)
			}
			if v, err := time.Parse(time.RFC3339Nano, h.Attr("since")); err == nil && v.After(since) {
				since = v
			}
		}
	}
	start, chars := len(items), 0
	for i := len(items) - 1; i >= 0 && len(items)-i <= maxStanzas; i-- {
		if !since.IsZero() && items[i].At.Before(since) {
			break
		}
		if maxChars >= 0 && chars+items[i].Len > maxChars {
			break
		}
		chars += items[i].Len
		start = i
	}
	for _, it := range items[start:] {
		el, _, err := wire.DecodeBinary(it.El)
		if err != nil {
			continue
		}
		el.Append(wire.NewNS("delay", wire.NSDelay).SetAttr("from", q.r.jid(q.p)).
			SetAttr("stamp", it.At.Format("2006-01-02T15:04:05.000Z")))
		q.reply(el)
	}
}

// private is §7.5: a message to an occupant's room JID.
func (q *request) private(ctx context.Context, o *Occupant) error {
	r, el := q.r, q.el
	if o == nil {
		return wire.ErrNotAcceptable.WithText("you are not in the room")
	}
	if el.Type() == "groupchat" {
		return wire.ErrBadRequest.WithText("a private message is not of type groupchat")
	}
	switch r.Config.AllowPM {
	case "none":
		return wire.ErrForbidden.WithText("private messages are off in this room")
	case "moderators":
		if o.Role != roleModerator {
			return wire.ErrForbidden.WithText("only moderators send private messages here")
		}
	case "participants":
		if o.Role == roleVisitor {
			return wire.ErrForbidden.WithText("visitors do not send private messages here")
		}
	}
	to := r.Occupants[q.nick]
	if to == nil {
		return wire.ErrItemNotFound.WithText("no occupant has that nickname")
	}
	out := el.Copy()
	out.SetAttr("from", r.jid(q.p)+"/"+o.Nick)
	out.RemoveAttr("to")
	out.RemoveChildren("x", NSUser)
	out.Append(wire.NewNS("x", NSUser))
	out.RemoveChildren("occupant-id", NSOccupantID)
	out.Append(wire.NewNS("occupant-id", NSOccupantID).SetAttr("id", q.p.occupantID(r.Name, o.Bare)))
	q.out.add(to, out)
	return nil
}

// invite is §7.8.2 (mediated invitations) and §7.8.2's declines.
func (q *request) invite(ctx context.Context, o *Occupant, x *wire.Element) error {
	r, p := q.r, q.p
	if d := x.Child("decline", ""); d != nil {
		to := wire.JIDOf(d.Attr("to")).String()
		if to == "" {
			return wire.ErrJIDMalformed
		}
		out := wire.New("message", "from", r.jid(p), "to", to)
		dx := wire.NewNS("x", NSUser)
		dd := wire.New("decline", "from", q.bare)
		if rs := d.ChildText("reason", ""); rs != "" {
			dd.Append(wire.New("reason").SetText(rs))
		}
		q.out.route(out.Append(dx.Append(dd)))
		return nil
	}
	if o == nil {
		return wire.ErrNotAcceptable.WithText("you are not in the room")
	}
	aff := r.affiliation(o.Bare)
	privileged := aff == affOwner || aff == affAdmin
	if r.Config.MembersOnly && !r.Config.AllowInvites && !privileged {
		return wire.ErrForbidden.WithText("only admins invite to this room")
	}
	for _, inv := range x.ChildrenNamed("invite", "") {
		to := wire.JIDOf(inv.Attr("to")).String()
		if to == "" {
			return wire.ErrJIDMalformed
		}
		if r.Config.MembersOnly && r.affiliation(bareOf(to)) == affNone {
			r.Affiliations[bareOf(to)] = affMember
			if err := p.save(ctx, r); err != nil {
				return err
			}
		}
		out := wire.New("message", "from", r.jid(p), "to", to, "id", newID())
		ix := wire.NewNS("x", NSUser)
		ii := wire.New("invite", "from", q.from)
		if rs := inv.ChildText("reason", ""); rs != "" {
			ii.Append(wire.New("reason").SetText(rs))
		}
		ix.Append(ii)
		if r.Config.Password != "" {
			ix.Append(wire.New("password").SetText(r.Config.Password))
		}
		out.Append(ix)
		q.out.route(out)
	}
	return nil
}

// NSRequest is the form type of voice requests (§7.13, §8.6).
const NSRequest = "http://jabber.org/protocol/muc#request"

func formType(x *wire.Element) string {
	for _, f := range x.ChildrenNamed("field", "") {
		if f.Attr("var") == "FORM_TYPE" {
			return f.ChildText("value", "")
		}
	}
	return ""
}

func formValue(x *wire.Element, name string) string {
	for _, f := range x.ChildrenNamed("field", "") {
		if f.Attr("var") == name {
			return f.ChildText("value", "")
		}
	}
	return ""
}

// voiceRequest is §7.13 (a visitor asks for voice: the moderators get
// the form) and §8.6 (a moderator answers it: allowed makes the visitor
// a participant).
func (q *request) voiceRequest(ctx context.Context, o *Occupant, form *wire.Element) error {
	r, p := q.r, q.p
	if o == nil {
		return wire.ErrNotAcceptable.WithText("you are not in the room")
	}
	if o.Role == roleModerator && form.Attr("type") == "submit" && formValue(form, "muc#roomnick") != "" {
		if !parseBool(formValue(form, "muc#request_allow")) {
			return nil
		}
		target := r.Occupants[formValue(form, "muc#roomnick")]
		if target == nil {
			return wire.ErrItemNotFound.WithText("no occupant has that nickname")
		}
		if target.Role == roleVisitor {
			q.setRole(target, roleParticipant, o.Nick, "")
		}
		return nil
	}
	if o.Role != roleVisitor {
		return nil // it has voice already
	}
	if !r.Config.VoiceRequests {
		return wire.ErrForbidden.WithText("voice requests are off in this room")
	}
	ask := wire.New("message", "from", r.jid(p), "id", newID())
	x := wire.NewNS("x", NSData).SetAttr("type", "form")
	x.Append(wire.New("title").SetText("Voice request"))
	x.Append(hiddenField("FORM_TYPE", NSRequest))
	x.Append(field("muc#role", "Requested role", "list-single", roleParticipant))
	x.Append(field("muc#jid", "User ID", "jid-single", firstSession(o)))
	x.Append(field("muc#roomnick", "Room nickname", "text-single", o.Nick))
	x.Append(field("muc#request_allow", "Grant voice to this person?", "boolean", "0"))
	ask.Append(x)
	for _, m := range r.sortedOccupants() {
		if m.Role == roleModerator {
			q.out.add(m, ask)
		}
	}
	return nil
}

// errTooFast answers an occupant past muc.message_rate.
var errTooFast = wire.ErrResourceConstraint.WithText("you are sending messages too fast")

// occupant returns the sender's occupant. A sender of this domain the
// room does not know, whose own node says it is in the room, is taken
// back in: the room's copy missed it (two copies merged after clustering
// came back on, a stanza from its node arriving before the merge).
func (q *request) occupant(ctx context.Context) *Occupant {
	r := q.r
	if o := r.bySession(q.from); o != nil || q.node == "" || q.node == q.p.self {
		return o
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := q.p.c.Call(cctx, q.node, kindWho, []byte(r.Name))
	if err != nil {
		return nil
	}
	var w whoAnswer
	if json.Unmarshal(b, &w) != nil {
		return nil
	}
	nick, ok := w.Occupants[q.from]
	if !ok {
		return nil
	}
	o := r.Occupants[nick]
	switch {
	case o == nil:
		o = &Occupant{Nick: nick, Bare: q.bare, Role: r.defaultRole(r.affiliation(q.bare)), Sessions: map[string]string{}}
		r.Occupants[nick] = o
	case o.Bare != q.bare:
		return nil // someone else took the nick meanwhile
	}
	o.Sessions[q.from] = q.node
	for _, other := range r.sortedOccupants() {
		if other != o && r.broadcastsPresence(o.Role) {
			q.out.add(other, q.p.occupantPresence(r, o, other))
		}
	}
	return o
}
