package pubsub

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/wire"
)

// What the server does through the engine on its own behalf (PEP's
// conversions between bookmarks, avatars and vCards): the same storage,
// rules and notifications as a client's request, without Options.Changed
// (a conversion must not convert back).

// Publish publishes payload as item id (a random ID when "") on a node
// of service, creating the node with create when it does not exist. An
// existing node keeps the configuration its owner gave it. publisher is
// the bare JID recorded on the item.
func (e *Engine) Publish(ctx context.Context, service, node, publisher, id string, payload *wire.Element, create Config) (*Item, error) {
	n, err := e.node(ctx, service, node)
	if errors.Is(err, ErrNoNode) {
		if err := e.createNode(ctx, service, node, publisher, &create); err != nil {
			return nil, err
		}
		n = &nodeRef{service: service, node: node, cfg: &create}
	} else if err != nil {
		return nil, err
	}
	if id == "" {
		id = RandomID()
	}
	it := &Item{ID: id, Publisher: publisher}
	if payload != nil {
		it.Payload = payload.Copy()
		it.Payload.Tail = ""
	}
	if err := e.publish(ctx, n, it); err != nil {
		return nil, err
	}
	return it, nil
}

// Retract removes an item, notifying as the node's notify_retract says;
// a missing node or item is not an error.
func (e *Engine) Retract(ctx context.Context, service, node, id string) error {
	n, err := e.node(ctx, service, node)
	if errors.Is(err, ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	return e.retract(ctx, n, id, n.cfg.NotifyRetract)
}

// Items returns a node's items, oldest first; ErrNoNode when it does
// not exist.
func (e *Engine) Items(ctx context.Context, service, node string) ([]*Item, error) {
	if ok, err := e.st.nodeExists(ctx, service, node); err != nil {
		return nil, err
	} else if !ok {
		return nil, ErrNoNode
	}
	return e.st.listItems(ctx, service, node, 0)
}

// Item returns one item; nil when the node or the item does not exist.
func (e *Engine) Item(ctx context.Context, service, node, id string) (*Item, error) {
	return e.st.getItem(ctx, service, node, id)
}

// NodeConfig returns a node's configuration; ErrNoNode.
func (e *Engine) NodeConfig(ctx context.Context, service, node string) (Config, error) {
	n, err := e.node(ctx, service, node)
	if err != nil {
		return Config{}, err
	}
	return *n.cfg, nil
}

// MayRetrieve reports whether requester (a bare JID) may see a node:
// false when it does not exist or the access model keeps them out.
func (e *Engine) MayRetrieve(ctx context.Context, service, node, requester string) bool {
	n, err := e.node(ctx, service, node)
	if err != nil {
		return false
	}
	return e.checkAccess(ctx, n, requester) == nil
}

// DiscoItem is one disco#items entry: a node (Node set) or an item of a
// node (Name is its ID).
type DiscoItem struct {
	JID, Node, Name string
}

// DiscoItems answers disco#items on the service (node ""): the nodes
// requester may see; or on a node: its item IDs (XEP-0060 §5.2, §5.5).
// ok is false for a node that does not exist or that requester may not
// see.
func (e *Engine) DiscoItems(ctx context.Context, service, node, requester string) (items []DiscoItem, ok bool) {
	if node == "" {
		names, err := e.st.listNodes(ctx, service)
		if err != nil {
			e.log.Warn("pubsub: listing nodes", "service", service, "err", err)
			return nil, true
		}
		for _, nd := range names {
			if e.MayRetrieve(ctx, service, nd, requester) {
				items = append(items, DiscoItem{JID: service, Node: nd})
			}
		}
		return items, true
	}
	if !e.MayRetrieve(ctx, service, node, requester) {
		return nil, false
	}
	list, err := e.st.listItems(ctx, service, node, 0)
	if err != nil {
		e.log.Warn("pubsub: listing items", "service", service, "node", node, "err", err)
		return nil, true
	}
	for _, it := range list {
		items = append(items, DiscoItem{JID: service, Name: it.ID})
	}
	return items, true
}
