package blocking

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/aviary-im/aviary/plugins"
)

// Block lists in memory.
//
// Every stanza to or from a local session is checked against a block
// list, so the lists live in memory and the database is read only to
// learn a list the node does not know yet: at login (preloaded in the
// background when a resource binds) or at first use. After that a list
// changes only through a change event:
//
//   - a block or unblock IQ answered by this node applies its change here
//     after the store has it, then broadcasts it (Host.Broadcast) and waits
//     until every node has applied it before the IQ is answered, so a
//     client that sees the result knows the whole cluster enforces it;
//   - another node's change arrives as eventChanged and is applied here;
//   - a deleted account's list is forgotten the same way.
//
// A read that was in flight when a change arrived could return the list
// from before it: the change is therefore also recorded on the read and
// applied to its result (changes are idempotent set operations, so one
// the read already saw does no harm).
//
// As a safety net for a lost event (a node that could not be reached
// when the change was broadcast, or the cluster switch turned off), a
// list in use is re-read in the background once it is older than
// refresh_interval. That read never delays a stanza, and when the
// database does not answer the list stays as it is: it is still the list
// as last known, kept current by events. So messages between online
// users never wait for the database.
//
// A list that is not known (the database did not answer when it had to
// be read) fails closed: see unknownList.
//
// Lists of users with a session on this node stay; others (senders whose
// presence passed through, recipients stored offline) are dropped all at
// once when more than maxUnpinned of them have piled up.

// eventChanged is the cluster event carrying a change (JSON change).
const eventChanged plugins.Event = ID + ".changed"

// maxUnpinned bounds the lists kept for users with no session here (a
// few hundred bytes each, most of them empty lists). It was 10,000: in the
// 54,000-user storm the survivors stored messages for 18,000 offline users,
// cleared the lists every few thousand messages, read them again and
// timed out (22,286 messages refused as "block list unavailable").
const maxUnpinned = 100000

// Change operations.
const (
	opBlock   = "block"
	opUnblock = "unblock" // with no JIDs: unblock all
	opForget  = "forget"  // the account was deleted
)

// change is one edit of a block list, as applied and broadcast.
type change struct {
	Op    string   `json:"op"`
	Owner string   `json:"owner"`
	JIDs  []string `json:"jids,omitempty"`
}

// entry is a known block list. It is never modified once published
// (readers use it without a lock): a change makes a new entry.
type entry struct {
	set  map[string]struct{}
	list []string // sorted
	// checked is when the list was last read from the store or a read
	// was tried; the next background refresh is due refresh_interval
	// after it.
	checked time.Time
}

func newEntry(list []string, checked time.Time) *entry {
	e := &entry{list: list, checked: checked}
	if len(list) > 0 {
		e.set = make(map[string]struct{}, len(list))
		for _, j := range list {
			e.set[j] = struct{}{}
		}
	}
	return e
}

// with returns the entry after c.
func (e *entry) with(c change) *entry {
	set := make(map[string]struct{}, len(e.set)+len(c.JIDs))
	switch c.Op {
	case opBlock:
		for j := range e.set {
			set[j] = struct{}{}
		}
		for _, j := range c.JIDs {
			set[j] = struct{}{}
		}
	case opUnblock:
		if len(c.JIDs) > 0 {
			for j := range e.set {
				set[j] = struct{}{}
			}
			for _, j := range c.JIDs {
				delete(set, j)
			}
		}
	case opForget:
	default:
		return e
	}
	list := make([]string, 0, len(set))
	for j := range set {
		list = append(list, j)
	}
	slices.Sort(list)
	return newEntry(list, e.checked)
}

// load is a store read in flight for one owner; callers that need the
// list wait on done.
type load struct {
	done    chan struct{}
	e       *entry
	err     error
	changes []change // arrived while reading: applied to the result
}

// lookup returns owner's block list, from memory when known (starting a
// background refresh when it is due), else read from the store (one read
// per owner however many stanzas wait for it).
func (p *Plugin) lookup(ctx context.Context, owner string) (*entry, error) {
	p.mu.RLock()
	e := p.lists[owner]
	p.mu.RUnlock()
	if e != nil {
		if p.now().Sub(e.checked) >= p.refresh {
			p.startLoad(owner)
		}
		return e, nil
	}
	l := p.startLoad(owner)
	if l == nil { // known meanwhile
		p.mu.RLock()
		e = p.lists[owner]
		p.mu.RUnlock()
		if e != nil {
			return e, nil
		}
		l = p.startLoad(owner)
	}
	if l == nil {
		return nil, errStopped
	}
	select {
	case <-l.done:
		return l.e, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startLoad starts reading owner's list unless a read is in flight, and
// returns that read. It returns nil when the list is known and not due
// for a refresh, or the plugin is stopping.
func (p *Plugin) startLoad(owner string) *load {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.loading[owner]; l != nil {
		return l
	}
	if e := p.lists[owner]; e != nil && p.now().Sub(e.checked) < p.refresh {
		return nil
	}
	if p.ctx == nil || p.ctx.Err() != nil {
		return nil
	}
	l := &load{done: make(chan struct{})}
	p.loading[owner] = l
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.runLoad(owner, l)
	}()
	return l
}

// runLoad reads owner's list and installs it with the changes that
// arrived meanwhile. A failed refresh keeps the list as known.
func (p *Plugin) runLoad(owner string, l *load) {
	// The store bounds the call by database.timeout; the plugin's own
	// context only ends it early when the plugin stops.
	list, err := p.host.Store().BlockList(p.ctx, owner)
	now := p.now()
	p.mu.Lock()
	delete(p.loading, owner)
	cur := p.lists[owner]
	if err != nil {
		l.err = err
		if cur != nil {
			kept := *cur
			kept.checked = now // try again after another interval
			p.lists[owner] = &kept
			l.e, l.err = &kept, nil
		}
	} else {
		e := newEntry(list, now)
		for _, c := range l.changes {
			e = e.with(c)
		}
		p.installLocked(owner, e)
		l.e = e
	}
	p.mu.Unlock()
	close(l.done)
	if err != nil {
		if cur != nil {
			// The database is away; the list as known stays in force.
			p.host.Logger().Debug("block list refresh failed", "owner", owner, "err", err)
		} else {
			p.host.Logger().Warn("block list unavailable; what it decides waits for it, then is refused", "owner", owner, "err", err)
		}
	}
}

// installLocked publishes a list read from the store, dropping the lists
// of users with no session here when too many have piled up. p.mu must
// be held.
func (p *Plugin) installLocked(owner string, e *entry) {
	if _, known := p.lists[owner]; !known && len(p.lists)-len(p.online) >= maxUnpinned {
		for o := range p.lists {
			if p.online[o] == 0 {
				delete(p.lists, o)
			}
		}
	}
	p.lists[owner] = e
}

// apply makes a change known on this node: to the list in memory and to
// a read in flight. A forgotten account's list is dropped.
func (p *Plugin) apply(c change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.loading[c.Owner]; l != nil {
		l.changes = append(l.changes, c)
	}
	e := p.lists[c.Owner]
	switch {
	case e == nil:
		// Not known here: the next read finds the change in the store.
	case c.Op == opForget:
		delete(p.lists, c.Owner)
	default:
		p.lists[c.Owner] = e.with(c)
	}
}

// changed applies a change made through this node and tells the others,
// waiting until each has applied it.
func (p *Plugin) changed(ctx context.Context, c change) {
	p.apply(c)
	data, err := json.Marshal(c)
	if err != nil {
		return
	}
	if err := p.host.Broadcast(ctx, eventChanged, data); err != nil {
		// Those nodes enforce the old list until they re-read it.
		p.host.Logger().Warn("block list change not confirmed by every node; they re-read it within refresh_interval",
			"owner", c.Owner, "refresh_interval", p.refresh, "err", err)
	}
}

// onChanged applies another node's change.
func (p *Plugin) onChanged(ctx context.Context, payload any) error {
	ev, ok := payload.(*plugins.ClusterEvent)
	if !ok {
		return nil
	}
	var c change
	if err := json.Unmarshal(ev.Data, &c); err != nil || c.Owner == "" {
		return errBadChange
	}
	p.apply(c)
	return nil
}

// sessionBound pins the owner's list and reads it now, in the
// background, so the session's first stanzas need no database.
func (p *Plugin) sessionBound(owner string) {
	p.mu.Lock()
	p.online[owner]++
	p.mu.Unlock()
	p.startLoad(owner)
}

// sessionClosed unpins the owner's list once no session is left here.
func (p *Plugin) sessionClosed(owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.online[owner]; n > 1 {
		p.online[owner] = n - 1
		return
	}
	delete(p.online, owner)
	delete(p.lists, owner)
}
