package mam

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/readcache"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// PrefsStore is the key/value store of the preferences (keep the name):
// one JSON value per account under the key "prefs".
const PrefsStore = "mamprefs"

// prefs are an account's archiving preferences (XEP-0441).
type prefs struct {
	Default string   `json:"default"` // always, roster, never
	Always  []string `json:"always,omitempty"`
	Never   []string `json:"never,omitempty"`
}

// prefsCache keeps the preferences every archived message is checked
// against (two accounts a message: reading them each time was a query per
// copy). A change made on any node reaches every node before it is
// answered (eventPrefs, Host.Broadcast); an entry older than ttl is read
// again, the safety net for a node the change could not reach. Roster
// membership, for "roster" defaults, is remembered for rosterTTL: roster
// changes are not announced to it.
//
// The message path (allows) does not wait for a read of preferences this
// node knew before: past ttl it goes on with them while one read in the
// background refreshes them (current). In a reconnection storm that read
// queued behind thousands of logins for the database, and held up every
// message to the account meanwhile.
type prefsCache struct {
	host plugins.Host
	def  string

	entries *readcache.Cache[string, prefs]
	roster  *readcache.Cache[[2]string, bool] // (owner, contact) → in the roster

	refreshes readcache.Refresher[string] // owners whose preferences are being read again
}

// eventPrefs is the cluster event naming an account whose preferences
// changed (its bare JID as data).
const eventPrefs plugins.Event = ID + ".prefs"

// maxCached bounds each cache; past it the cache starts afresh (cheap,
// and only a node with that many active accounts within ttl gets there).
const maxCached = 100000

func newPrefsCache(host plugins.Host, def string, ttl, rosterTTL time.Duration) *prefsCache {
	return &prefsCache{host: host, def: def,
		entries: readcache.New[string, prefs](ttl, maxCached),
		roster:  readcache.New[[2]string, bool](rosterTTL, maxCached)}
}

// forget drops owner's entry (another node changed the preferences).
func (c *prefsCache) forget(owner string) { c.entries.Forget(owner) }

// onChanged is another node's change of an account's preferences.
func (c *prefsCache) onChanged(ctx context.Context, payload any) error {
	if ev, ok := payload.(*plugins.ClusterEvent); ok && len(ev.Data) > 0 {
		c.forget(string(ev.Data))
	}
	return nil
}

// load returns owner's preferences, read from the store unless fresh.
func (c *prefsCache) load(ctx context.Context, owner string) (prefs, error) {
	if p, ok := c.entries.Get(owner); ok {
		return p, nil // the lists are never changed in place
	}
	return c.read(ctx, owner)
}

// current is load for the message path: known preferences past their ttl
// are used while refresh reads them again.
func (c *prefsCache) current(ctx context.Context, owner string) (prefs, error) {
	if p, fresh, ok := c.entries.Peek(owner); ok {
		if !fresh {
			c.refresh(owner)
		}
		return p, nil
	}
	return c.read(ctx, owner)
}

// refresh reads owner's preferences in the background, once at a time.
func (c *prefsCache) refresh(owner string) {
	c.refreshes.Go(owner, c.host.Config().Database.Timeout, func(ctx context.Context) {
		if _, err := c.read(ctx, owner); err != nil {
			c.host.Logger().Debug("mam: refreshing preferences failed; the known ones stay", "owner", owner, "err", err)
		}
	})
}

// read reads owner's preferences from the store and keeps them.
func (c *prefsCache) read(ctx context.Context, owner string) (prefs, error) {
	gen := c.entries.Generation()
	p := prefs{Default: c.def}
	v, err := c.host.Store().KeyValue(PrefsStore).Get(ctx, owner, "prefs")
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return p, err
	default:
		if err := json.Unmarshal(v.Value, &p); err != nil {
			return prefs{Default: c.def}, err
		}
	}
	c.entries.Put(owner, p, gen)
	return p, nil
}

// allows reports whether owner archives a message with contact. When the
// preferences cannot be read it archives (losing history is worse than
// keeping a message the user asked not to keep for the length of an
// outage), and says so in the log.
func (c *prefsCache) allows(ctx context.Context, owner, contact string) bool {
	p, err := c.current(ctx, owner)
	if err != nil {
		c.host.Logger().Warn("mam: preferences unavailable; archiving by default", "owner", owner, "err", err)
		return true
	}
	for _, j := range p.Never {
		if j == contact {
			return false
		}
	}
	for _, j := range p.Always {
		if j == contact {
			return true
		}
	}
	switch p.Default {
	case "never":
		return false
	case "roster":
		return c.inRoster(ctx, owner, contact)
	}
	return true
}

func (c *prefsCache) inRoster(ctx context.Context, owner, contact string) bool {
	k := [2]string{owner, contact}
	if in, ok := c.roster.Get(k); ok {
		return in
	}
	gen := c.roster.Generation()
	it, err := c.host.Store().GetRosterItem(ctx, owner, contact)
	in := err == nil && it.InRoster
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		c.host.Logger().Warn("mam: roster unavailable; archiving by default", "owner", owner, "err", err)
		return true
	}
	c.roster.Put(k, in, gen)
	return in
}

// get answers <prefs/> get.
func (c *prefsCache) get(ctx context.Context, owner string) (*wire.Element, error) {
	p, err := c.load(ctx, owner)
	if err != nil {
		return nil, err
	}
	return prefsElement(p), nil
}

// set answers <prefs/> set: it replaces the preferences and returns them.
func (c *prefsCache) set(ctx context.Context, owner string, el *wire.Element) (*wire.Element, error) {
	p := prefs{Default: el.Attr("default")}
	switch p.Default {
	case "always", "never", "roster":
	default:
		return nil, wire.ErrBadRequest.WithText("default must be always, never or roster")
	}
	read := func(name string) ([]string, error) {
		var out []string
		if list := el.Child(name, ""); list != nil {
			for _, j := range list.ChildrenNamed("jid", "") {
				b := wire.JIDOf(j.Text).Bare()
				if b == "" {
					return nil, wire.ErrBadRequest.WithText("not a JID: " + j.Text)
				}
				out = append(out, b)
			}
		}
		return out, nil
	}
	var err error
	if p.Always, err = read("always"); err != nil {
		return nil, err
	}
	if p.Never, err = read("never"); err != nil {
		return nil, err
	}
	v, _ := json.Marshal(p)
	if _, err := c.host.Store().KeyValue(PrefsStore).Set(ctx, owner, "prefs", v, storage.Limits{Bytes: 256 << 10}); err != nil {
		return nil, xmpputil.QuotaError(err, "archiving preferences", "JIDs")
	}
	c.forget(owner)
	c.entries.Put(owner, p, c.entries.Generation())
	if err := c.host.Broadcast(ctx, eventPrefs, []byte(owner)); err != nil {
		c.host.Logger().Warn("mam: a preferences change not confirmed by every node; they read it again within a minute",
			"owner", owner, "err", err)
	}
	return prefsElement(p), nil
}

func prefsElement(p prefs) *wire.Element {
	el := wire.NewNS("prefs", NS).SetAttr("default", p.Default)
	for _, l := range []struct {
		name string
		jids []string
	}{{"always", p.Always}, {"never", p.Never}} {
		list := wire.New(l.name)
		for _, j := range l.jids {
			list.Append(wire.New("jid").SetText(j))
		}
		el.Append(list)
	}
	return el
}
