package plugins

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/aviary-im/aviary/wire"
)

// Event names a hook point. Names are dotted constants.
type Event string

// Events the core fires. Payload types are documented on each.
const (
	// EventSessionBound: a resource was bound. Payload *SessionEvent.
	EventSessionBound Event = "c2s.session.bound"
	// EventSessionClosed: a session ended. Payload *SessionEvent.
	EventSessionClosed Event = "c2s.session.closed"
	// EventSessionDetached: a resumable session (XEP-0198) lost its
	// transport and waits for the client to resume it; it stays bound and
	// queues what it is sent. Then EventSessionResumed or
	// EventSessionClosed follows. Payload *SessionEvent (Reason: why the
	// transport ended).
	EventSessionDetached Event = "c2s.session.detached"
	// EventSessionResumed: a detached session was resumed (it is active
	// again, XEP-0352 §4). Payload *SessionEvent.
	EventSessionResumed Event = "c2s.session.resumed"
	// EventClientInactive and EventClientActive: a session's client said
	// <inactive/> or <active/> (XEP-0352). Payload *SessionEvent.
	EventClientInactive Event = "c2s.csi.inactive"
	EventClientActive   Event = "c2s.csi.active"
	// EventPresenceAvailable: a session sent initial presence. Payload *SessionEvent.
	EventPresenceAvailable Event = "c2s.presence.available"
	// EventRosterChanged: a roster item changed. Payload *RosterEvent.
	EventRosterChanged Event = "roster.item.changed"
	// EventUserCreated and EventUserDeleted: account changes. Payload *UserEvent.
	EventUserCreated Event = "user.created"
	EventUserDeleted Event = "user.deleted"
	// EventXMLStored: a user stored an XML document the server keeps
	// for them, through a client's request (not a conversion made by the
	// server): a XEP-0049 private XML fragment, a XEP-0054 vCard. It runs
	// before the request is answered, so a plugin that keeps another
	// copy in step (PEP's XEP-0402 bookmarks, XEP-0398 avatars) is done
	// when the client hears back. Payload *XMLStoredEvent.
	EventXMLStored Event = "xml.stored"
)

// XMLStoredEvent is the payload of EventXMLStored.
type XMLStoredEvent struct {
	Owner string // the account's bare JID
	// Plugin is the ID of the plugin that stored it
	// ("xep0049.private", "xep0054.vcard").
	Plugin string
	// El is what was stored (the private fragment, the <vCard/>).
	// Read-only: the storing plugin and other hooks share it.
	El *wire.Element
}

// SessionEvent is the payload of session events.
type SessionEvent struct {
	JID    string // full JID
	Reason string // for closed: why
}

// RosterEvent is the payload of EventRosterChanged.
type RosterEvent struct {
	Owner, Contact, Subscription string
	Removed                      bool
}

// UserEvent is the payload of user events.
type UserEvent struct{ Username string }

// ClusterEvent is the payload of an event another node sent with
// Host.Broadcast. Plugins name such events after their ID
// ("xep0191.blocking.changed"), so they never collide with the core's.
type ClusterEvent struct {
	Node string // the node that broadcast it
	Data []byte
}

// ErrStop, returned by a hook, stops the remaining hooks of that run.
var ErrStop = errors.New("plugins: stop hook chain")

// HookFunc handles an event.
type HookFunc func(ctx context.Context, payload any) error

type hook struct {
	id   uint64
	prio int
	fn   HookFunc
}

// Hooks is an event bus with priorities (higher runs first). Handlers run
// without the lock held, so a handler may add or remove hooks.
type Hooks struct {
	mu     sync.RWMutex
	next   uint64
	byName map[Event][]hook
}

// NewHooks returns an empty bus.
func NewHooks() *Hooks { return &Hooks{byName: map[Event][]hook{}} }

// Add registers fn for ev and returns the function that removes it.
func (h *Hooks) Add(ev Event, prio int, fn HookFunc) (remove func()) {
	h.mu.Lock()
	h.next++
	id := h.next
	list := append(append([]hook(nil), h.byName[ev]...), hook{id: id, prio: prio, fn: fn})
	sort.SliceStable(list, func(i, j int) bool { return list[i].prio > list[j].prio })
	h.byName[ev] = list
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		old := h.byName[ev]
		kept := make([]hook, 0, len(old))
		for _, x := range old {
			if x.id != id {
				kept = append(kept, x)
			}
		}
		h.byName[ev] = kept
	}
}

// Run calls every handler of ev in priority order. It stops at ErrStop
// (returning nil) or at the first other error (returning it).
func (h *Hooks) Run(ctx context.Context, ev Event, payload any) error {
	h.mu.RLock()
	list := h.byName[ev] // copy-on-write: safe to range without the lock
	h.mu.RUnlock()
	for _, x := range list {
		if err := x.fn(ctx, payload); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}
