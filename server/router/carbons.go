package router

import (
	"context"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/wire"
)

// NSHints is XEP-0334 (message processing hints).
const NSHints = "urn:xmpp:hints"

// carbonsEligible reports whether a message is copied to carbons-enabled
// resources (XEP-0280 §6): type chat, or type normal with a <body/>; not
// marked <private/> or <no-copy/>; and not itself a carbon copy.
// Headline, groupchat and error messages are not copied.
func carbonsEligible(el *wire.Element) bool {
	switch el.Type() {
	case "chat":
	case "", "normal":
		if el.Child("body", "") == nil {
			return false
		}
	default:
		return false
	}
	for _, c := range el.Children {
		switch c.Name {
		case "private":
			if c.NS() == wire.NSCarbons {
				return false
			}
		case "no-copy":
			if c.NS() == NSHints {
				return false
			}
		case "received", "sent":
			if c.NS() == wire.NSCarbons {
				return false
			}
		}
	}
	return true
}

// isCarbonCopy reports whether a message is a carbon (<sent/> or
// <received/> wrapper).
func isCarbonCopy(el *wire.Element) bool {
	for _, c := range el.Children {
		if (c.Name == "received" || c.Name == "sent") && c.NS() == wire.NSCarbons {
			return true
		}
	}
	return false
}

// sentCarbons copies a message a local resource sent to the sender's other
// carbons-enabled resources, on any node (XEP-0280 §7).
func (r *Router) sentCarbons(ctx context.Context, from string, el *wire.Element) {
	bare := wire.BareJID(from)
	var buf [8]cluster.Route
	routes, err := r.routesInto(ctx, bare, buf[:0])
	if err != nil {
		return
	}
	var fwd *wire.Element
	for i := range routes {
		rt := &routes[i]
		if rt.Flags&cluster.FlagCarbons == 0 || rt.JID == from {
			continue
		}
		if fwd == nil {
			fwd = forwarded(el)
		}
		r.deliver(ctx, rt, carbon("sent", bare, rt.JID, fwd))
	}
}

// receivedCarbons copies a message delivered to a local user to the user's
// carbons-enabled resources that did not get it (XEP-0280 §6). routes are
// the user's routes with targets' FlagCarbons cleared; nil means look them
// up and skip exclude.
func (r *Router) receivedCarbons(ctx context.Context, bare string, el *wire.Element, routes []cluster.Route, exclude string) {
	if routes == nil {
		var buf [8]cluster.Route
		var err error
		routes, err = r.routesInto(ctx, bare, buf[:0])
		if err != nil {
			return
		}
	}
	var fwd *wire.Element
	for i := range routes {
		rt := &routes[i]
		if rt.Flags&cluster.FlagCarbons == 0 || rt.JID == exclude {
			continue
		}
		if fwd == nil {
			fwd = forwarded(el)
		}
		r.deliver(ctx, rt, carbon("received", bare, rt.JID, fwd))
	}
}

// forwarded wraps a message in XEP-0297 <forwarded/>. The inner message is
// a shallow copy carrying its own jabber:client namespace.
func forwarded(el *wire.Element) *wire.Element {
	inner := &wire.Element{Name: "message", Text: el.Text, Children: el.Children}
	inner.Attrs = make([]wire.Attr, 0, len(el.Attrs)+1)
	inner.Attrs = append(inner.Attrs, wire.Attr{Name: "xmlns", Value: wire.NSClient})
	for _, a := range el.Attrs {
		if a.Name != "xmlns" {
			inner.Attrs = append(inner.Attrs, a)
		}
	}
	return wire.NewNS("forwarded", wire.NSForward).Append(inner)
}

func carbon(kind, from, to string, fwd *wire.Element) *wire.Element {
	// The envelope has the type of the message it carries (none for normal).
	return wire.New("message", "from", from, "to", to).SetAttr("type", fwd.Children[0].Type()).
		Append(wire.NewNS(kind, wire.NSCarbons).Append(fwd))
}
