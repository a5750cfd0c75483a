package muc

import (
	"context"

	"github.com/aviary-im/aviary/wire"
)

// Registering with a room (§7.10): a user reserves a nickname, which
// makes it a member; no one else enters under that nickname (join and
// nickname changes check AffNicks). §7.12's discovery of one's reserved
// nickname is disco#info with the node x-roomuser-item.

// NSRegister is jabber:iq:register; NSRegisterForm the form's type.
const (
	NSRegister     = "jabber:iq:register"
	NSRegisterForm = "http://jabber.org/protocol/muc#register"
)

func (q *request) register(ctx context.Context, pl *wire.Element) error {
	r := q.r
	aff := r.affiliation(q.bare)
	if aff == affOutcast {
		return wire.ErrForbidden.WithText("you are banned from this room")
	}
	if q.el.Type() == "get" {
		res := wire.NewNS("query", NSRegister)
		if nick := nickOf(r, q.bare); nick != "" {
			res.Append(wire.New("registered"), wire.New("username").SetText(nick))
			q.reply(wire.IQResult(q.el, res))
			return nil
		}
		x := wire.NewNS("x", NSData).SetAttr("type", "form")
		x.Append(wire.New("title").SetText("Register with " + r.jid(q.p)))
		x.Append(hiddenField("FORM_TYPE", NSRegisterForm))
		f := field("muc#register_roomnick", "Nickname", "text-single")
		f.Append(wire.New("required"))
		x.Append(f)
		q.reply(wire.IQResult(q.el, res.Append(x)))
		return nil
	}
	if pl.Child("remove", "") != nil {
		for n, b := range r.AffNicks {
			if b == q.bare {
				delete(r.AffNicks, n)
			}
		}
		if aff == affMember {
			delete(r.Affiliations, q.bare)
		}
		if err := q.p.save(ctx, r); err != nil {
			return err
		}
		q.reply(wire.IQResult(q.el, nil))
		return nil
	}
	x := pl.Child("x", NSData)
	if x == nil || x.Attr("type") == "cancel" {
		return wire.ErrBadRequest.WithText("registration takes the muc#register form")
	}
	nick := formValue(x, "muc#register_roomnick")
	if nick == "" {
		return wire.ErrNotAcceptable.WithText("a nickname is required")
	}
	if b := r.AffNicks[nick]; b != "" && b != q.bare {
		return wire.ErrConflict.WithText("that nickname is registered by another user")
	}
	if o := r.Occupants[nick]; o != nil && o.Bare != q.bare {
		return wire.ErrConflict.WithText("that nickname is in use")
	}
	if r.AffNicks == nil {
		r.AffNicks = map[string]string{}
	}
	for n, b := range r.AffNicks {
		if b == q.bare {
			delete(r.AffNicks, n) // one reserved nickname per user
		}
	}
	r.AffNicks[nick] = q.bare
	if aff == affNone {
		// A membership grant like any other (§9.3): occupants under this
		// bare JID get their new affiliation, and everyone is told.
		q.setAffiliation(q.bare, affMember, "", "")
	}
	if err := q.p.save(ctx, r); err != nil {
		return err
	}
	q.reply(wire.IQResult(q.el, nil))
	return nil
}

// reservedNick answers disco#info with the node x-roomuser-item (§7.12).
func (q *request) reservedNick() *wire.Element {
	res := wire.NewNS("query", wire.NSDiscoInfo).SetAttr("node", "x-roomuser-item")
	if nick := nickOf(q.r, q.bare); nick != "" {
		res.Append(wire.New("identity", "category", "conference", "type", "text", "name", nick))
	}
	return res
}
