// Package private is XEP-0049 private XML storage: a user stores XML
// fragments on the server, keyed by element name and namespace, and reads
// them back. Only the user's own account can be read or written (no 'to',
// or 'to' the user's own bare JID); anything else gets forbidden.
//
// A set may carry several fragments and stores each. A get returns each
// requested fragment, or the requested element itself (empty) when nothing
// is stored under it. Fragments in the jabber:client, jabber:server or
// jabber:iq:private namespaces (or with no namespace of their own), and a
// query with no fragment, get not-acceptable.
//
// Storage: the key/value store "private" (storage.Modules), one entry per
// fragment under the account's bare JID, keyed "name namespace". Each
// account may keep at most max_items fragments of max_bytes in all
// (plugins.settings["xep0049.private"]; defaults 100 and 1 MiB, 0 for no
// limit); a set past either gets not-acceptable with a text naming the
// limit. The fragment that did not fit is not stored (those before it in
// the same set are: each fragment is its own write).
//
// Each stored fragment is announced on the hook bus
// (plugins.EventXMLStored) before the set is answered: PEP keeps XEP-0048
// bookmarks (storage:bookmarks) in step with XEP-0402 (XEP-0402 §5), and
// writes them back here through Save.
package private

import (
	"context"
	"errors"
	"strconv"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0049.private"

// NS is the private storage namespace.
const NS = "jabber:iq:private"

// Store is the key/value store the fragments live in (schema migration 2
// moved them there; keep the name).
const Store = "private"

// Default quotas per account.
const (
	DefaultMaxItems = 100
	DefaultMaxBytes = 1 << 20
)

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin stores private XML.
type Plugin struct {
	host   plugins.Host
	limits storage.Limits
}

var (
	_ plugins.IQHandler     = (*Plugin)(nil)
	_ plugins.DiscoFeatures = (*Plugin)(nil)
	_ plugins.Configurable  = (*Plugin)(nil)
)

// Settings documents plugins.settings["xep0049.private"].
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{
		{Key: "max_items", Type: "int", Default: strconv.Itoa(DefaultMaxItems), Doc: "fragments one account may store (0: no limit)"},
		{Key: "max_bytes", Type: "int", Default: strconv.Itoa(DefaultMaxBytes), Doc: "bytes of fragments one account may store, all together (0: no limit)"},
	}
}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

func (p *Plugin) ID() string                     { return ID }
func (p *Plugin) Stop(ctx context.Context) error { return nil }
func (p *Plugin) DiscoFeatures() []string        { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer | plugins.ToAccount}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	p.limits = Limits(host.Config())
	return nil
}

// Limits returns the per-account quota of the store from the plugin's
// settings.
func Limits(cfg *conf.Config) storage.Limits {
	return xmpputil.Limits(cfg, ID, "max_items", DefaultMaxItems, "max_bytes", DefaultMaxBytes)
}

// Key returns the storage key of a fragment: "name namespace".
func Key(el *wire.Element) string { return el.LocalName() + " " + el.NS() }

// Save stores one fragment for owner within lim, as a set does (without
// announcing it: conversions write here).
func Save(ctx context.Context, st storage.Store, owner string, frag *wire.Element, lim storage.Limits) error {
	frag = frag.Copy()
	frag.Tail = ""
	_, err := st.KeyValue(Store).Set(ctx, owner, Key(frag), frag.Bytes(), lim)
	return xmpputil.QuotaError(err, "private XML storage", "fragments")
}

// Load returns a stored fragment by name and namespace; nil when none.
func Load(ctx context.Context, st storage.Store, owner, name, ns string) (*wire.Element, error) {
	e, err := st.KeyValue(Store).Get(ctx, owner, name+" "+ns)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return wire.Parse(e.Value, wire.Limits{MaxStanzaBytes: len(e.Value) + 1})
}

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	owner, ok := xmpputil.Self(iq)
	if !ok {
		return nil, wire.ErrForbidden
	}
	q := iq.Payload()
	if q.Name != "query" || len(q.Children) == 0 {
		return nil, wire.ErrNotAcceptable
	}
	for _, c := range q.Children {
		switch c.NS() {
		case "", wire.NSClient, wire.NSServer, NS:
			return nil, wire.ErrNotAcceptable
		}
	}
	st := p.host.Store().KeyValue(Store)
	switch iq.Stanza.Type() {
	case "set":
		for _, c := range q.Children {
			if err := Save(ctx, p.host.Store(), owner, c, p.limits); err != nil {
				return nil, err
			}
			ev := &plugins.XMLStoredEvent{Owner: owner, Plugin: ID, El: c}
			if err := p.host.Hooks().Run(ctx, plugins.EventXMLStored, ev); err != nil {
				p.host.Logger().Warn("private: a hook on a stored fragment failed", "owner", owner, "key", Key(c), "err", err)
			}
		}
		return nil, nil
	case "get":
		res := wire.NewNS("query", NS)
		for _, c := range q.Children {
			e, err := st.Get(ctx, owner, Key(c))
			if errors.Is(err, storage.ErrNotFound) {
				empty := wire.New(c.Name)
				empty.Attrs = append(empty.Attrs, c.Attrs...)
				res.Append(empty)
				continue
			}
			if err != nil {
				return nil, err
			}
			frag, err := wire.Parse(e.Value, wire.Limits{MaxStanzaBytes: len(e.Value) + 1})
			if err != nil {
				return nil, err
			}
			res.Append(frag)
		}
		return res, nil
	}
	return nil, wire.ErrBadRequest
}
