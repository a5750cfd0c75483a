// Package last is XEP-0012 last activity.
//
// To the server (the domain, or no 'to') it answers the node's uptime in
// seconds. To a local user's bare JID it answers on the user's behalf, and
// only to the user or to contacts the user lets see presence (roster
// subscription from or both); anyone else gets forbidden, whether or not
// the account exists. An online user (any available resource) is idle 0
// seconds; otherwise the answer is the seconds since the last logout with
// the status of the last unavailable presence, and item-not-found when the
// user has never logged out.
//
// Recording logouts is the router's job (it calls Save with the status of
// the last unavailable presence when a user's last resource goes away);
// this plugin only answers.
//
// Storage: the key/value store "last" (storage.Modules), one entry per
// account under its bare JID, key "": {"at": microseconds since the Unix
// epoch, "status": "..."}. Save and Load are the only code that knows it.
package last

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0012.last"

// NS is the last activity namespace.
const NS = "jabber:iq:last"

// Store is the key/value store last activity lives in (schema migration 2
// moved it there and wrote the record format; keep both).
const Store = "last"

// record is the stored form.
type record struct {
	At     int64  `json:"at"` // microseconds since the Unix epoch
	Status string `json:"status"`
}

// Save records that the account went offline at a time, with the status
// of its last unavailable presence.
func Save(ctx context.Context, st storage.Modules, owner string, at time.Time, status string) error {
	b, err := json.Marshal(record{At: at.UnixMicro(), Status: status})
	if err != nil {
		return err
	}
	_, err = st.KeyValue(Store).Set(ctx, owner, "", b, storage.Limits{})
	return err
}

// Load returns when the account last went offline and its status then;
// storage.ErrNotFound when it never did.
func Load(ctx context.Context, st storage.Modules, owner string) (time.Time, string, error) {
	e, err := st.KeyValue(Store).Get(ctx, owner, "")
	if err != nil {
		return time.Time{}, "", err
	}
	var r record
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return time.Time{}, "", fmt.Errorf("last: record of %s: %w", owner, err)
	}
	return time.UnixMicro(r.At).UTC(), r.Status, nil
}

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin answers last activity queries and records logouts.
type Plugin struct {
	host    plugins.Host
	started time.Time
	now     func() time.Time
}

var (
	_ plugins.IQHandler       = (*Plugin)(nil)
	_ plugins.DiscoFeatures   = (*Plugin)(nil)
	_ plugins.AccountFeatures = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{now: time.Now} }

// SetClock replaces the clock (tests).
func (p *Plugin) SetClock(now func() time.Time) { p.now = now }

func (p *Plugin) ID() string                { return ID }
func (p *Plugin) DiscoFeatures() []string   { return []string{NS} }
func (p *Plugin) AccountFeatures() []string { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer | plugins.ToAccount}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	p.started = p.now()
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error { return nil }

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	if iq.Stanza.Type() != "get" {
		return nil, wire.ErrBadRequest
	}
	to := iq.Stanza.To()
	if to == "" || wire.JIDOf(to).String() == p.host.Domain() {
		return answer(p.now().Sub(p.started), ""), nil
	}
	owner := wire.JIDOf(to).Bare()
	requester := xmpputil.Requester(iq)
	if owner == "" || requester == "" {
		return nil, wire.ErrForbidden
	}
	if requester != owner {
		item, err := p.host.Store().GetRosterItem(ctx, owner, requester)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		if err != nil || (item.Subscription != storage.SubFrom && item.Subscription != storage.SubBoth) {
			return nil, wire.ErrForbidden
		}
	}
	res, err := p.host.Resources(ctx, owner)
	if err != nil {
		return nil, err
	}
	for _, r := range res {
		if r.Available {
			return answer(0, ""), nil
		}
	}
	at, status, err := Load(ctx, p.host.Store(), owner)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, wire.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	return answer(p.now().Sub(at), status), nil
}

func answer(d time.Duration, status string) *wire.Element {
	secs := int64(d / time.Second)
	if secs < 0 {
		secs = 0
	}
	return wire.NewNS("query", NS).SetAttr("seconds", strconv.FormatInt(secs, 10)).SetText(status)
}
