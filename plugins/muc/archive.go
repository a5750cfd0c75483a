package muc

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Room archives (XEP-0313 on the room's JID) through the message
// archive's room API, when xep0313.mam runs: each groupchat message is
// archived under the owner "<service>/<room>" and carries its archive ID
// as the room's XEP-0359 stanza-id; occupants (and, for open rooms,
// anyone) query it with an IQ to the room; a new host after a crash
// takes the room's history from it.

// pluginFinder is what the server's host (and plugintest's) offer to find
// another running plugin.
type pluginFinder interface {
	Plugin(id string) plugins.Plugin
}

// archive returns the running message archive's room API, or nil.
func (p *Plugin) archive() *mam.Archive {
	f, ok := p.host.(pluginFinder)
	if !ok {
		return nil
	}
	m, ok := f.Plugin(mam.ID).(*mam.Plugin)
	if !ok || m == nil {
		return nil
	}
	return m.Rooms()
}

// archiveOwner is the room's owner key in the module stores.
func (p *Plugin) archiveOwner(room string) string { return p.domain + "/" + room }

// archiveMessage archives a room message and stamps its stanza-id.
func (p *Plugin) archiveMessage(ctx context.Context, r *Room, sender string, out *wire.Element) {
	a := p.archive()
	if a == nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if id := a.Add(actx, p.archiveOwner(r.Name), sender, out, nil); id != 0 {
		mam.StampID(out, r.jid(p), id)
	}
}

// mayReadArchive: occupants and affiliated users; anyone for an open
// room without a password.
func (q *request) mayReadArchive() bool {
	r := q.r
	if r.bySession(q.from) != nil {
		return true
	}
	switch r.affiliation(q.bare) {
	case affOwner, affAdmin, affMember:
		return true
	case affOutcast:
		return false
	}
	return !r.Config.MembersOnly && r.Config.Password == ""
}

// archiveIQ answers a MAM IQ to the room.
func (q *request) archiveIQ(ctx context.Context, pl *wire.Element) error {
	a := q.p.archive()
	if a == nil {
		return wire.ErrServiceUnavailable
	}
	if !q.mayReadArchive() {
		return wire.ErrForbidden.WithText("only occupants and members read this room's archive")
	}
	owner := q.p.archiveOwner(q.r.Name)
	var res *wire.Element
	var err error
	switch {
	case pl.Name == "metadata" && q.el.Type() == "get":
		res, err = a.Metadata(ctx, owner)
	case pl.Name == "query" && q.el.Type() == "set":
		res, err = a.Query(ctx, owner, q.r.jid(q.p), q.el)
	default:
		return wire.ErrFeatureNotImplemented
	}
	if err != nil {
		return err
	}
	// Through the router, as the results before it went.
	q.out.route(wire.IQResult(q.el, res))
	return nil
}

// historyFromArchive fills the history of a room rebuilt after its host
// died: its last messages in the archive.
func (p *Plugin) historyFromArchive(ctx context.Context, r *Room) {
	if p.archive() == nil || p.history == 0 {
		return
	}
	page, err := p.host.Store().Archive("mam").Query(ctx, p.archiveOwner(r.Name), storage.ArchiveQuery{Limit: p.history, Last: true})
	if err != nil {
		p.log.Warn("muc: history not read from the archive", "room", r.Name, "err", err)
		return
	}
	for _, e := range page.Entries {
		el, err := wire.Parse(e.Value, wire.Limits{})
		if err != nil || el.Child("body", "") == nil {
			continue
		}
		el.RemoveAttr("xmlns")
		r.History = append(r.History, HistoryItem{At: e.When, El: wire.AppendBinary(nil, el), Len: len(el.String())})
	}
}

// XEP-0425 moderation of room messages (version 0.3, with XEP-0424's
// retraction).
const (
	NSModerate = "urn:xmpp:message-moderate:1"
	NSRetract  = "urn:xmpp:message-retract:1"
)

// moderate retracts an archived message for everyone: a moderator asks
// with the message's stanza-id; the archive keeps a tombstone, the
// history forgets the message, and every occupant gets the retraction.
func (q *request) moderate(ctx context.Context, pl *wire.Element) error {
	r, p := q.r, q.p
	a := p.archive()
	if a == nil {
		return wire.ErrFeatureNotImplemented.WithText("this room keeps no archive")
	}
	actor := r.bySession(q.from)
	if actor == nil || actor.Role != roleModerator {
		return wire.ErrForbidden.WithText("only moderators retract others' messages")
	}
	sid := pl.Attr("id")
	id, err := storage.ParseArchiveID(sid)
	if err != nil || pl.Child("retract", NSRetract) == nil {
		return wire.ErrBadRequest.WithText("moderate names a message by its stanza-id and asks to retract it")
	}
	owner := p.archiveOwner(r.Name)
	if err := a.Flush(ctx); err != nil {
		return err
	}
	msg, _, err := a.Get(ctx, owner, id)
	if errors.Is(err, storage.ErrNotFound) {
		return wire.ErrItemNotFound.WithText("no such message in this room's archive")
	}
	if err != nil {
		return err
	}
	reason := pl.ChildText("reason", "")
	moderated := func() *wire.Element {
		m := wire.NewNS("moderated", NSModerate).SetAttr("by", r.jid(p)+"/"+actor.Nick)
		m.Append(wire.NewNS("occupant-id", NSOccupantID).SetAttr("id", p.occupantID(r.Name, actor.Bare)))
		return m
	}
	tomb := wire.New("message", "from", msg.From(), "type", "groupchat")
	if mid := msg.ID(); mid != "" {
		tomb.SetAttr("id", mid)
	}
	tomb.Append(wire.NewNS("retracted", NSRetract).SetAttr("stamp", time.Now().UTC().Format(time.RFC3339)).Append(moderated()))
	if err := a.Tombstone(ctx, owner, id, tomb); err != nil {
		return err
	}
	r.History = slices.DeleteFunc(r.History, func(h HistoryItem) bool {
		el, _, err := wire.DecodeBinary(h.El)
		if err != nil {
			return false
		}
		for _, s := range el.ChildrenNamed("stanza-id", mam.NSSID) {
			if s.Attr("id") == sid {
				return true
			}
		}
		return false
	})
	out := wire.New("message", "from", r.jid(p), "type", "groupchat", "id", newID())
	rt := wire.NewNS("retract", NSRetract).SetAttr("id", sid).Append(moderated())
	if reason != "" {
		rt.Append(wire.New("reason").SetText(reason))
	}
	out.Append(rt)
	p.archiveMessage(ctx, r, actor.Bare, out)
	for _, o := range r.Occupants {
		q.out.add(o, out)
	}
	q.reply(wire.IQResult(q.el, nil))
	return nil
}
