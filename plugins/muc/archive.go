package muc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
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

// A room's own retention: its owner sets how long the room's archive
// keeps a message with the configuration field fieldArchiveExpires (in
// seconds; 0, the default, keeps messages as long as the server keeps
// every archive, mam.expire_after). A room may keep its messages for
// less than mam.expire_after, never for longer: the operator's limit is
// what the server promises its users about every archive, and a room
// owner is one of those users. The value lives in the room's
// configuration in the store, so it moves with the room between hosts;
// the cluster's senior node applies it once an hour with the rest of the
// archive's expiry (mam.Expire asks ArchiveRetention).
//
// Neither XEP-0045 nor the form registry names such a field, and neither
// Prosody (muc_log_expires_after is server-wide) nor ejabberd offers one;
// the name follows the muc#roomconfig_ prefix those servers use for
// their own archive fields (muc#roomconfig_enablearchiving,
// muc#roomconfig_mam), so clients show it with the room's other
// settings.
const fieldArchiveExpires = "muc#roomconfig_archive_expires"

// archiveExpiresChoices are the form's options besides 0, in seconds:
// a day, a week, 30, 90 and 365 days.
var archiveExpiresChoices = []int64{86400, 7 * 86400, 30 * 86400, 90 * 86400, 365 * 86400}

var _ mam.Retention = (*Plugin)(nil)

// archiveExpiresLimit is the most seconds a room may keep its messages
// (mam.expire_after), 0 for no limit.
func (p *Plugin) archiveExpiresLimit() (int64, bool) {
	d := p.host.Config().MAM.ExpireAfter
	return int64(d / time.Second), d > 0
}

// archiveExpiresField is the configuration form's field: the choices the
// server's limit allows, and the room's value.
func (p *Plugin) archiveExpiresField(cur int64) *wire.Element {
	limit, limited := p.archiveExpiresLimit()
	if limited && cur > limit {
		cur = 0 // mam.expire_after was lowered since: the server's limit applies
	}
	server := "As long as the server keeps messages"
	if limited {
		server += " (" + durationLabel(limit) + ")"
	}
	f := field(fieldArchiveExpires, "Keep the room's archived messages for (seconds)", "list-single", strconv.FormatInt(cur, 10))
	f.Append(wire.New("option", "label", server).Append(wire.New("value").SetText("0")))
	choices := slices.Clone(archiveExpiresChoices)
	if cur > 0 && !slices.Contains(choices, cur) {
		choices = append(choices, cur)
		slices.Sort(choices)
	}
	for _, c := range choices {
		if !limited || c <= limit {
			f.Append(wire.New("option", "label", durationLabel(c)).Append(wire.New("value").SetText(strconv.FormatInt(c, 10))))
		}
	}
	return f
}

// parseArchiveExpires reads a submitted muc#roomconfig_archive_expires.
func (p *Plugin) parseArchiveExpires(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, wire.ErrBadRequest.WithText(fieldArchiveExpires + ": a number of seconds (0: as long as the server keeps messages)")
	}
	if limit, limited := p.archiveExpiresLimit(); limited && n > limit {
		return 0, wire.ErrNotAcceptable.WithText(fmt.Sprintf("%s: at most %d seconds (%s), how long this server keeps any archive", fieldArchiveExpires, limit, durationLabel(limit)))
	}
	return n, nil
}

// ArchiveRetention lists the rooms in the store that keep their archive
// for a time of their own (mam.Retention): one read per stored room, on
// the node that runs the expiry, once an hour.
func (p *Plugin) ArchiveRetention(ctx context.Context) ([]mam.OwnerRetention, error) {
	if p.store == nil {
		return nil, nil // the service is off (muc.enabled: false): no rooms here
	}
	names, err := p.storedRoomNames(ctx)
	if err != nil {
		return nil, err
	}
	var out []mam.OwnerRetention
	for _, name := range names {
		r, err := p.load(ctx, name)
		if err != nil {
			p.log.Warn("muc: a room's archive retention is not known", "room", name, "err", err)
			continue
		}
		if r == nil || r.Config.ArchiveExpires <= 0 || r.Config.ArchiveExpires > math.MaxInt64/int64(time.Second) {
			continue
		}
		out = append(out, mam.OwnerRetention{Owner: p.archiveOwner(name), Keep: time.Duration(r.Config.ArchiveExpires) * time.Second})
	}
	return out, nil
}

// durationLabel says a number of seconds the way the form shows it.
func durationLabel(s int64) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case s > 0 && s%86400 == 0:
		return unit(s/86400, "day")
	case s > 0 && s%3600 == 0:
		return unit(s/3600, "hour")
	case s > 0 && s%60 == 0:
		return unit(s/60, "minute")
	}
	return unit(s, "second")
}
