package pep

import (
	"context"
	"errors"

	"github.com/aviary-im/aviary/plugins/internal/pubsub"
	"github.com/aviary-im/aviary/plugins/private"
	"github.com/aviary-im/aviary/wire"
)

// Bookmarks in three places, kept in step (XEP-0402 §5 "compat",
// XEP-0411):
//
//   - XEP-0402: the PEP node urn:xmpp:bookmarks:1, one item per room
//     (the item ID is the room's JID) with a <conference/> payload;
//   - XEP-0048 in private XML (XEP-0049): one <storage
//     xmlns='storage:bookmarks'/> fragment with every room (and URL);
//   - XEP-0048 on the PEP node storage:bookmarks: the same <storage/> as
//     the item "current".
//
// A client's change to one rewrites the other two. A room's XEP-0402
// <extensions/> become extra children of its XEP-0048 <conference/> and
// back; XEP-0048 <url/> bookmarks have no XEP-0402 form and are kept in
// the XEP-0048 copies. The nodes the server creates have the
// configuration XEP-0402 and XEP-0223 clients ask for in their
// publish-options (whitelist, persistent, every item kept, no last item
// on presence), so their publishes meet them.

// Namespaces and nodes.
const (
	NSBookmarks       = "urn:xmpp:bookmarks:1"
	NSBookmarksLegacy = "storage:bookmarks"
)

// legacyItemID is the item XEP-0048 over PEP keeps its <storage/> in.
const legacyItemID = "current"

var (
	bookmarksConfig = config(func(c *pubsub.Config) {
		c.AccessModel = AccessWhitelist
		c.MaxItems = 0
		c.SendLastPublishedItem = pubsub.SendLastNever
	})
	legacyBookmarksConfig = config(func(c *pubsub.Config) {
		c.AccessModel = AccessWhitelist
	})
)

// conferenceToNative converts a XEP-0048 <conference jid=…/> to the
// XEP-0402 payload; the room's JID ("" when it has none or a bad one).
func conferenceToNative(c *wire.Element) (jid string, payload *wire.Element) {
	jid = wire.JIDOf(c.Attr("jid")).String()
	if jid == "" {
		return "", nil
	}
	out := wire.NewNS("conference", NSBookmarks)
	out.SetAttr("name", c.Attr("name"))
	if a := c.Attr("autojoin"); a == "true" || a == "1" {
		out.SetAttr("autojoin", "true")
	}
	var ext []*wire.Element
	for _, ch := range c.Children {
		switch ch.Name {
		case "nick", "password":
			if t := ch.AllText(); t != "" {
				out.Append(wire.New(ch.Name).SetText(t))
			}
		default:
			e := ch.Copy()
			e.Tail = ""
			ext = append(ext, e)
		}
	}
	if len(ext) > 0 {
		out.Append(wire.New("extensions").Append(ext...))
	}
	return jid, out
}

// conferenceToLegacy converts a XEP-0402 item to a XEP-0048 <conference/>.
func conferenceToLegacy(it *pubsub.Item) *wire.Element {
	out := wire.New("conference", "jid", it.ID)
	pl := it.Payload
	if pl == nil {
		return out
	}
	out.SetAttr("name", pl.Attr("name"))
	if a := pl.Attr("autojoin"); a == "true" || a == "1" {
		out.SetAttr("autojoin", "true")
	}
	for _, name := range []string{"nick", "password"} {
		if t := pl.ChildText(name, ""); t != "" {
			out.Append(wire.New(name).SetText(t))
		}
	}
	if ext := pl.Child("extensions", ""); ext != nil {
		for _, e := range ext.Children {
			c := e.Copy()
			c.Tail = ""
			out.Append(c)
		}
	}
	return out
}

// legacyStorage builds the XEP-0048 <storage/> of the XEP-0402 items,
// with the URL bookmarks of the current XEP-0048 copy.
func legacyStorage(items []*pubsub.Item, urls []*wire.Element) *wire.Element {
	st := wire.NewNS("storage", NSBookmarksLegacy)
	for _, it := range items {
		st.Append(conferenceToLegacy(it))
	}
	for _, u := range urls {
		c := u.Copy()
		c.Tail = ""
		st.Append(c)
	}
	return st
}

// urlsOf returns the <url/> bookmarks of a XEP-0048 <storage/>.
func urlsOf(st *wire.Element) []*wire.Element {
	if st == nil {
		return nil
	}
	return st.ChildrenNamed("url", "")
}

// nativeItems returns the XEP-0402 items (none when the node is absent).
func (p *Plugin) nativeItems(ctx context.Context, owner string) ([]*pubsub.Item, error) {
	items, err := p.engine.Items(ctx, owner, NSBookmarks)
	if errors.Is(err, pubsub.ErrNoNode) {
		return nil, nil
	}
	return items, err
}

// bookmarksFromNative rewrites both XEP-0048 copies after a client
// changed the XEP-0402 node.
func (p *Plugin) bookmarksFromNative(ctx context.Context, owner string) error {
	items, err := p.nativeItems(ctx, owner)
	if err != nil {
		return err
	}
	cur, err := private.Load(ctx, p.host.Store(), owner, "storage", NSBookmarksLegacy)
	if err != nil {
		return err
	}
	st := legacyStorage(items, urlsOf(cur))
	if err := p.writeLegacyPrivate(ctx, owner, cur, st); err != nil {
		return err
	}
	return p.writeLegacyPEP(ctx, owner, st)
}

// bookmarksFromPrivate rewrites the XEP-0402 node and the XEP-0048 PEP
// copy after a client stored XEP-0048 bookmarks in private XML.
func (p *Plugin) bookmarksFromPrivate(ctx context.Context, owner string, st *wire.Element) error {
	if err := p.writeNative(ctx, owner, st); err != nil {
		return err
	}
	return p.writeLegacyPEP(ctx, owner, st)
}

// bookmarksFromLegacyPEP rewrites the XEP-0402 node and the private XML
// copy after a client changed the storage:bookmarks node.
func (p *Plugin) bookmarksFromLegacyPEP(ctx context.Context, owner string, ch pubsub.Change) error {
	st := payloadOf(ch)
	if st == nil {
		if ch.Kind == pubsub.Published {
			return nil
		}
		st = wire.NewNS("storage", NSBookmarksLegacy) // retracted, purged, deleted: none left
	}
	if st.Name != "storage" || st.NS() != NSBookmarksLegacy {
		return nil
	}
	if err := p.writeNative(ctx, owner, st); err != nil {
		return err
	}
	cur, err := private.Load(ctx, p.host.Store(), owner, "storage", NSBookmarksLegacy)
	if err != nil {
		return err
	}
	return p.writeLegacyPrivate(ctx, owner, cur, st)
}

// writeNative makes the XEP-0402 node hold the rooms of a XEP-0048
// <storage/>: new and changed rooms are published, rooms no longer
// there retracted (with notifications, as XEP-0402 clients expect).
func (p *Plugin) writeNative(ctx context.Context, owner string, st *wire.Element) error {
	items, err := p.nativeItems(ctx, owner)
	if err != nil {
		return err
	}
	have := make(map[string]*pubsub.Item, len(items))
	for _, it := range items {
		have[it.ID] = it
	}
	want := map[string]bool{}
	for _, c := range st.ChildrenNamed("conference", "") {
		jid, payload := conferenceToNative(c)
		if jid == "" || want[jid] {
			continue
		}
		want[jid] = true
		if old := have[jid]; old != nil && sameXML(old.Payload, payload) {
			continue
		}
		if _, err := p.engine.Publish(ctx, owner, NSBookmarks, owner, jid, payload, bookmarksConfig); err != nil {
			return err
		}
	}
	for _, it := range items {
		if !want[it.ID] {
			if err := p.engine.Retract(ctx, owner, NSBookmarks, it.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeLegacyPrivate stores the XEP-0048 <storage/> in private XML
// unless it is already there.
func (p *Plugin) writeLegacyPrivate(ctx context.Context, owner string, cur, st *wire.Element) error {
	if sameXML(cur, st) {
		return nil
	}
	return private.Save(ctx, p.host.Store(), owner, st, private.Limits(p.host.Config()))
}

// writeLegacyPEP publishes the XEP-0048 <storage/> on storage:bookmarks
// unless its current item already holds it.
func (p *Plugin) writeLegacyPEP(ctx context.Context, owner string, st *wire.Element) error {
	return p.publishIfChanged(ctx, owner, NSBookmarksLegacy, legacyItemID, st, legacyBookmarksConfig)
}

// importBookmarks fills the PEP bookmark nodes from private XML the
// first time a client of the account looks at one of them: XEP-0048
// bookmarks stored before the conversion existed (or before the account
// used PEP bookmarks) show in XEP-0402 clients too.
func (p *Plugin) importBookmarks(ctx context.Context, owner, node string) error {
	if _, err := p.engine.NodeConfig(ctx, owner, node); !errors.Is(err, pubsub.ErrNoNode) {
		return err
	}
	st, err := private.Load(ctx, p.host.Store(), owner, "storage", NSBookmarksLegacy)
	if err != nil || st == nil || len(st.Children) == 0 {
		return err
	}
	return p.bookmarksFromPrivate(ctx, owner, st)
}
