package pep

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
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

// Store is the map store the nodes live in (schema migration 2 moved
// them there from the private XML store's "#pep NODE" keys; keep the
// name). Each node is one item of the account's collection "", keyed by
// the node's name.
const Store = "pep"

// recordLimits bounds what load parses back; writes are bounded by the
// stanza size limit, which an operator may raise past the reader default.
var recordLimits = wire.Limits{MaxStanzaBytes: 16 << 20}

// load reads a node; errNoNode when it does not exist.
func (p *Plugin) load(ctx context.Context, owner, node string) (*record, error) {
	it, err := p.host.Store().Map(Store).Get(ctx, owner, "", node)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNoNode
	}
	if err != nil {
		return nil, err
	}
	el, err := wire.Parse(it.Value, recordLimits)
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

// save writes a node record within the account's quota; past it the
// client gets not-acceptable saying which limit.
func (p *Plugin) save(ctx context.Context, owner, node string, rec *record) error {
	el := wire.NewNS("node", nsStorage)
	el.SetAttr("access", rec.access)
	if rec.payload != nil {
		el.Append(rec.item())
	}
	_, err := p.host.Store().Map(Store).Set(ctx, owner, "", node, el.Bytes(), p.limits)
	return xmpputil.QuotaError(err, "PEP storage", "nodes")
}

// drop deletes a node record.
func (p *Plugin) drop(ctx context.Context, owner, node string) error {
	err := p.host.Store().Map(Store).Delete(ctx, owner, "", node)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}
