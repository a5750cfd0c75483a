package mam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/adhoc"
	"github.com/aviary-im/aviary/wire"
)

// A user deletes their own archive with an ad-hoc command (XEP-0050) on
// the server's JID, served by xep0050.adhoc: XEP-0313 defines no way to
// delete, and an ad-hoc command is what a client with a command menu
// (Gajim, Psi, Converse.js...) runs without knowing this server. The first execute returns a
// confirmation form; the submitted form with confirm=1 deletes, and
// anything else deletes nothing. Only the account's own archive goes:
// its contacts' copies are theirs, and room archives are the rooms'.
//
// The archive store is shared, but each node queues what it archives
// (group commit) for a moment before it is written: the node that runs
// the command deletes what its own archive holds from before the command
// (writing its queue first), then tells every other node
// (eventDeleted), which writes its queue and deletes the same, before
// the user hears back. Messages archived after the command stay.

// NodeDeleteArchive is the ad-hoc command that deletes the sender's own
// archive.
const NodeDeleteArchive = NS + "#delete-archive"

// eventDeleted is the cluster event of a deletion (JSON deletion).
const eventDeleted plugins.Event = ID + ".deleted"

// deletion is one user's archive deletion, sent to the other nodes.
type deletion struct {
	Owner  string    `json:"owner"`
	Before time.Time `json:"before"`
}

var _ adhoc.Provider = (*Plugin)(nil)

// AdHocCommands offers the deletion to the domain's users.
func (p *Plugin) AdHocCommands() []adhoc.Command {
	return []adhoc.Command{{
		Node: NodeDeleteArchive, Name: "Delete my message archive",
		Form: deleteForm, Run: p.runDelete,
	}}
}

func deleteForm() *wire.Element {
	x := wire.NewNS("x", NSData).SetAttr("type", "form")
	x.Append(wire.New("title").SetText("Delete my message archive"))
	x.Append(wire.New("instructions").SetText("This deletes every message this server archived for your account, " +
		"on all your devices, and cannot be undone. Your contacts keep their own copies, and group chats keep theirs."))
	f := wire.New("field", "type", "boolean", "var", "confirm", "label", "Yes, delete every message in my archive")
	f.Append(wire.New("required"), wire.New("value").SetText("0"))
	return x.Append(f)
}

// runDelete deletes the archive of the account that sent the command,
// once the user confirmed.
func (p *Plugin) runDelete(ctx context.Context, from string, v map[string][]string) (*wire.Element, error) {
	owner := wire.JIDOf(from).Bare()
	if owner == "" {
		return nil, wire.ErrForbidden
	}
	if c := v["confirm"]; len(c) == 0 || (strings.TrimSpace(c[0]) != "1" && strings.TrimSpace(c[0]) != "true") {
		return note("info", "Nothing was deleted: the deletion was not confirmed."), nil
	}
	n, err := p.deleteArchive(ctx, owner, time.Now())
	var partial *partialError
	switch {
	case errors.As(err, &partial):
		p.host.Logger().Warn("mam: an archive deletion was not confirmed by every node", "owner", owner, "err", err)
		return note("warn", fmt.Sprintf("Your message archive is deleted (%d messages), but not every server of the cluster confirmed: "+
			"a message it was archiving at this very moment may remain.", n)), nil
	case err != nil:
		p.host.Logger().Error("mam: deleting an archive failed", "owner", owner, "err", err)
		return nil, wire.ErrInternalServerError.WithText("the archive could not be deleted; try again")
	}
	p.host.Logger().Info("mam: a user deleted their archive", "owner", owner, "removed", n)
	return note("info", fmt.Sprintf("Your message archive is deleted (%d messages).", n)), nil
}

// partialError: this node deleted, other nodes did not all confirm.
type partialError struct{ err error }

func (e *partialError) Error() string {
	return "mam: deletion not confirmed by every node: " + e.err.Error()
}
func (e *partialError) Unwrap() error { return e.err }

// deleteArchive removes what owner's archive holds from before t, on
// every node: here (this node's queue written first), then on the others
// (eventDeleted), and returns how many messages this node removed.
func (p *Plugin) deleteArchive(ctx context.Context, owner string, t time.Time) (int, error) {
	n, err := p.deleteHere(ctx, owner, t)
	if err != nil {
		return n, err
	}
	data, err := json.Marshal(deletion{Owner: owner, Before: t})
	if err != nil {
		return n, err
	}
	if err := p.host.Broadcast(ctx, eventDeleted, data); err != nil {
		return n, &partialError{err}
	}
	return n, nil
}

// deleteHere writes this node's queue and deletes owner's messages from
// before t.
func (p *Plugin) deleteHere(ctx context.Context, owner string, t time.Time) (int, error) {
	if err := p.arch.Flush(ctx); err != nil {
		return 0, err
	}
	return p.arch.DeleteBefore(ctx, owner, t)
}

// onDeleted deletes on this node what another node's user deleted.
func (p *Plugin) onDeleted(ctx context.Context, payload any) error {
	ev, ok := payload.(*plugins.ClusterEvent)
	if !ok {
		return nil
	}
	var d deletion
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.Owner == "" {
		// "" would be every archive (DeleteBefore's all owners).
		return errors.New("mam: bad archive deletion event")
	}
	_, err := p.deleteHere(ctx, d.Owner, d.Before)
	return err
}

// note is an XEP-0050 <note/>.
func note(typ, text string) *wire.Element {
	return wire.New("note", "type", typ).SetText(text)
}
