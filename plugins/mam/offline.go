package mam

import (
	"context"
	"strings"
	"sync"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// catchups remembers, per local session that has not sent its initial
// presence yet, the archive IDs its MAM queries returned, so the offline
// hand-over that its presence triggers skips those messages (see the
// package documentation). All state is this node's: a session's queries,
// its presence and its offline hand-over all happen on its node.
type catchups struct {
	mu        sync.Mutex
	available map[string]bool               // sessions past initial presence
	sent      map[string]map[int64]struct{} // session → IDs sent before presence
}

// maxRemembered bounds the IDs kept per session; past it the rest are
// delivered again (a duplicate, never a loss).
const maxRemembered = 10000

func newCatchups() *catchups {
	return &catchups{available: map[string]bool{}, sent: map[string]map[int64]struct{}{}}
}

func (c *catchups) presenceHook(_ context.Context, payload any) error {
	if ev, ok := payload.(*plugins.SessionEvent); ok {
		c.mu.Lock()
		c.available[ev.JID] = true
		c.mu.Unlock()
	}
	return nil
}

func (c *catchups) closedHook(_ context.Context, payload any) error {
	if ev, ok := payload.(*plugins.SessionEvent); ok {
		c.mu.Lock()
		delete(c.available, ev.JID)
		delete(c.sent, ev.JID)
		c.mu.Unlock()
	}
	return nil
}

// returned records the IDs a query sent to session, if the session has
// not sent initial presence.
func (c *catchups) returned(session string, ids []int64) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.available[session] {
		return
	}
	set := c.sent[session]
	if set == nil {
		set = map[int64]struct{}{}
		c.sent[session] = set
	}
	for _, id := range ids {
		if len(set) >= maxRemembered {
			return
		}
		set[id] = struct{}{}
	}
}

// seen reports whether a message on its way to session is an offline
// hand-over of a message the session already got from the archive.
func (c *catchups) seen(session string, el *wire.Element, domain string) bool {
	c.mu.Lock()
	set := c.sent[session]
	c.mu.Unlock()
	if set == nil || !fromOfflineStorage(el, domain) {
		return false
	}
	owner := session
	if i := strings.IndexByte(owner, '/'); i >= 0 {
		owner = owner[:i]
	}
	for _, ch := range el.Children {
		if ch.Name != "stanza-id" || ch.NS() != NSSID || !strings.EqualFold(ch.Attr("by"), owner) {
			continue
		}
		id, err := storage.ParseArchiveID(ch.Attr("id"))
		if err != nil {
			return false
		}
		c.mu.Lock()
		_, ok := c.sent[session][id]
		c.mu.Unlock()
		return ok
	}
	return false
}

// fromOfflineStorage: the router stamps what it hands over from offline
// storage with a delay from the domain (XEP-0203, XEP-0160).
func fromOfflineStorage(el *wire.Element, domain string) bool {
	for _, ch := range el.Children {
		if ch.Name == "delay" && ch.NS() == wire.NSDelay && ch.Attr("from") == domain {
			return true
		}
	}
	return false
}
