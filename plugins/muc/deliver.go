package muc

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"github.com/aviary-im/aviary/wire"
)

// outbox collects a room's stanzas and sends them once per node: the
// sessions on this node directly, those of each other node in one
// message to that node's instance (kindFanout), other domains' users
// through the router (s2s).
type outbox struct {
	p      *Plugin
	local  []*wire.Element                       // to this node's sessions, 'to' set
	direct []*wire.Element                       // through the router, 'to' set
	nodes  map[string]map[*wire.Element][]string // node → template → recipients
	order  map[string][]*wire.Element
}

func (p *Plugin) newOutbox() *outbox {
	return &outbox{p: p, nodes: map[string]map[*wire.Element][]string{}, order: map[string][]*wire.Element{}}
}

// add sends el (a template: 'to' is set per recipient) to every session
// of o. The order across recipients does not matter (each recipient's own
// stanzas keep theirs), so the maps are walked as they are: a message to
// a room of 1,000 occupants costs no sorting.
func (b *outbox) add(o *Occupant, el *wire.Element) {
	for full, node := range o.Sessions {
		b.addTo(full, node, el)
	}
}

// addTo sends el to one full JID held by node ("" for the router).
func (b *outbox) addTo(full, node string, el *wire.Element) {
	switch node {
	case b.p.self:
		c := el.Copy()
		c.SetAttr("to", full)
		b.local = append(b.local, c)
	case "":
		c := el.Copy()
		c.SetAttr("to", full)
		b.direct = append(b.direct, c)
	default:
		m := b.nodes[node]
		if m == nil {
			m = map[*wire.Element][]string{}
			b.nodes[node] = m
		}
		if _, ok := m[el]; !ok {
			b.order[node] = append(b.order[node], el)
		}
		m[el] = append(m[el], full)
	}
}

// route sends a stanza that already has its 'to' (a reply to a sender).
func (b *outbox) route(el *wire.Element) { b.direct = append(b.direct, el) }

// flush sends everything, in the order added per node.
func (b *outbox) flush(ctx context.Context) {
	members := map[string]bool{}
	for _, m := range b.p.c.Members() {
		members[m.Name] = true
	}
	for _, node := range slices.Sorted(maps.Keys(b.nodes)) {
		var f fanout
		for _, el := range b.order[node] {
			f.Els = append(f.Els, wire.AppendBinary(nil, el))
			f.To = append(f.To, b.nodes[node][el])
		}
		payload, err := json.Marshal(f)
		if err == nil && members[node] {
			err = b.p.c.Send(ctx, node, kindFanout, payload)
		}
		if err != nil || !members[node] {
			// The node is gone or unreachable: the router finds the
			// sessions wherever they are (or bounces).
			for i, el := range b.order[node] {
				for _, to := range f.To[i] {
					c := el.Copy()
					c.SetAttr("to", to)
					b.p.host.Route(ctx, c)
				}
			}
		}
	}
	for _, el := range b.local {
		b.p.deliverLocal(ctx, el)
	}
	for _, el := range b.direct {
		b.p.host.Route(ctx, el)
	}
	b.local, b.direct, b.nodes, b.order = nil, nil, map[string]map[*wire.Element][]string{}, map[string][]*wire.Element{}
}

// broadcast sends each occupant what fn makes for it (nil: nothing).
func (p *Plugin) broadcast(ctx context.Context, r *Room, fn func(to *Occupant) *wire.Element) {
	b := p.newOutbox()
	for _, o := range r.sortedOccupants() {
		if el := fn(o); el != nil {
			b.add(o, el)
		}
	}
	b.flush(ctx)
}
