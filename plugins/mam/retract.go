package mam

import (
	"context"
	"errors"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// NSOriginID is XEP-0359's origin-id, the sender's own id for a message.
const NSOriginID = NSSID

// retractScan bounds how far back a retraction looks for its message in
// the conversation: the archive has no index on origin ids, and clients
// retract recent messages.
const retractScan = 200

// retract handles an XEP-0424 retraction seen in owner's archive (with:
// the other party; sender: who sent the retraction). The retracted
// message, if archived, is replaced with a tombstone; only the original
// sender may retract. It runs in the background (it reads the archive)
// and never delays the retraction itself, which is archived like any
// message.
func (p *Plugin) retract(owner, with, sender string, el *wire.Element) {
	target := el.Child("retract", NSRetract).Attr("id")
	if target == "" {
		return
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*p.host.Config().Database.Timeout)
		defer cancel()
		if err := p.tombstone(ctx, owner, with, sender, target); err != nil {
			p.host.Logger().Warn("mam: retraction not applied to the archive", "owner", owner, "id", target, "err", err)
		}
	}()
}

var errNoRetractTarget = errors.New("mam: retracted message not found among the recent ones")

func (p *Plugin) tombstone(ctx context.Context, owner, with, sender, target string) error {
	if err := p.arch.Flush(ctx); err != nil {
		return err
	}
	page, err := p.arch.store.Query(ctx, owner, storage.ArchiveQuery{With: with, Last: true, Limit: retractScan})
	if err != nil {
		return err
	}
	for i := len(page.Entries) - 1; i >= 0; i-- {
		e := page.Entries[i]
		msg, err := parseStored(e.Value)
		if err != nil || !sentBy(msg, sender) || !matchesID(msg, e.ID, target) {
			continue
		}
		tomb := wire.New("message", "from", msg.From(), "to", msg.To(), "type", msg.Type())
		if id := msg.ID(); id != "" {
			tomb.SetAttr("id", id)
		}
		if o := msg.Child("origin-id", NSOriginID); o != nil {
			tomb.Append(o)
		}
		tomb.Append(wire.NewNS("retracted", NSRetract).SetAttr("stamp", time.Now().UTC().Format(time.RFC3339)))
		return p.arch.Tombstone(ctx, owner, e.ID, tomb)
	}
	return errNoRetractTarget
}

func sentBy(msg *wire.Element, sender string) bool {
	from := msg.From()
	if i := indexSlash(from); i >= 0 {
		from = from[:i]
	}
	return from == sender
}

func indexSlash(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// matchesID: XEP-0424 names the message by its origin-id (1:1 chats), or
// by the archive's stanza-id; clients without origin ids use the id
// attribute.
func matchesID(msg *wire.Element, archiveID int64, target string) bool {
	if o := msg.Child("origin-id", NSOriginID); o != nil && o.Attr("id") == target {
		return true
	}
	if storage.FormatArchiveID(archiveID) == target {
		return true
	}
	return msg.ID() == target
}
