package pep

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// record is one node: its access model and last item (payload nil when
// the node has no item).
type record struct {
	access    string
	itemID    string
	publisher string
	payload   *wire.Element
}

// item returns the record's <item/> for results and notifications.
func (r *record) item() *wire.Element {
	it := wire.New("item", "id", r.itemID)
	if r.publisher != "" {
		it.SetAttr("publisher", r.publisher)
	}
	if r.payload != nil {
		it.Append(r.payload.Copy())
	}
	return it
}

// storageKey is the node's key in the owner's private XML store; '#'
// cannot start an XML name, so no XEP-0049 fragment key looks like it.
func storageKey(node string) string { return "#pep " + node }

// recordLimits bounds what load parses back; writes are bounded by the
// stanza size limit, which an operator may raise past the reader default.
var recordLimits = wire.Limits{MaxStanzaBytes: 16 << 20}

// load reads a node; errNoNode when it does not exist.
func (p *Plugin) load(ctx context.Context, owner, node string) (*record, error) {
	data, err := p.host.Store().GetPrivate(ctx, owner, storageKey(node))
	if errors.Is(err, storage.ErrNotFound) || (err == nil && len(data) == 0) {
		return nil, errNoNode
	}
	if err != nil {
		return nil, err
	}
	el, err := wire.Parse(data, recordLimits)
	if err != nil || el.Name != "node" || el.NS() != nsStorage {
		p.host.Logger().Warn("pep: unreadable node record, treating it as absent", "owner", owner, "node", node, "err", err)
		return nil, errNoNode
	}
	rec := &record{access: el.Attr("access")}
	if rec.access == "" {
		rec.access = AccessPresence
	}
	if it := el.Child("item", ""); it != nil && len(it.Children) == 1 {
		rec.itemID = it.Attr("id")
		rec.publisher = it.Attr("publisher")
		rec.payload = it.Children[0]
	}
	return rec, nil
}

// save writes a node record.
func (p *Plugin) save(ctx context.Context, owner, node string, rec *record) error {
	el := wire.NewNS("node", nsStorage)
	el.SetAttr("access", rec.access)
	if rec.payload != nil {
		el.Append(rec.item())
	}
	return p.host.Store().SetPrivate(ctx, owner, storageKey(node), el.Bytes())
}
