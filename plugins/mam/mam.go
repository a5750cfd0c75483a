package mam

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage/groupcommit"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0313.mam"

// Namespaces.
const (
	NS         = "urn:xmpp:mam:2"
	NSExtended = "urn:xmpp:mam:2#extended"
	NSSID      = "urn:xmpp:sid:0" // XEP-0359
	NSRSM      = "http://jabber.org/protocol/rsm"
	NSData     = "jabber:x:data"
)

// Store is the archive store every archive lives in (accounts and rooms;
// keep the name).
const Store = "mam"

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin is the message archive.
type Plugin struct {
	host    plugins.Host
	arch    *Archive
	prefs   *prefsCache
	catchup *catchups
	known   *accounts
	unhook  []func()
	unreg   func()
	bg      sync.WaitGroup // retractions in flight
}

var (
	_ plugins.IQHandler       = (*Plugin)(nil)
	_ plugins.AccountFeatures = (*Plugin)(nil)
	_ plugins.Interceptor     = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Lookup returns the running message archive of a node, or nil when it is
// disabled.
func Lookup(m *plugins.Manager) *Plugin {
	p, _ := m.Plugin(ID).(*Plugin)
	return p
}

func (p *Plugin) ID() string { return ID }

// Start opens the archive and its group-commit writer.
func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	cfg := host.Config()
	w := groupcommit.New(host.Store().Archive(Store), groupcommit.Options{
		Timeout: cfg.Database.Timeout,
		Logger:  host.Logger(),
	})
	p.arch = &Archive{host: host, store: host.Store().Archive(Store), w: w, maxPage: cfg.MAM.MaxPage}
	p.prefs = newPrefsCache(host, cfg.MAM.Default, time.Minute, 5*time.Second)
	p.catchup = newCatchups()
	p.known = newAccounts(host, time.Minute)
	p.unhook = append(p.unhook,
		host.Hooks().Add(plugins.EventUserDeleted, 0, p.known.deletedHook),
		host.Hooks().Add(plugins.EventUserDeleted, 0, p.clearArchive),
		host.Hooks().Add(plugins.EventUserCreated, 0, p.clearArchive),
		host.Hooks().Add(plugins.EventPresenceAvailable, 0, p.catchup.presenceHook),
		host.Hooks().Add(plugins.EventSessionClosed, 0, p.catchup.closedHook),
		host.Hooks().Add(eventDeleted, 0, p.onDeleted),
		host.Hooks().Add(eventPrefs, 0, p.prefs.onChanged),
	)
	if r, ok := host.(interface{ Registry() prometheus.Registerer }); ok && r.Registry() != nil {
		p.unreg = registerMetrics(r.Registry(), w, p.arch)
	}
	return nil
}

// Stop writes what is queued (bounded) and stops the writer.
func (p *Plugin) Stop(ctx context.Context) error {
	for _, f := range p.unhook {
		f()
	}
	p.unhook = nil
	if p.unreg != nil {
		p.unreg()
	}
	p.bg.Wait()
	if p.arch != nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return p.arch.w.Close(cctx)
	}
	return nil
}

// clearArchive deletes an account's archive when the account is deleted
// (the store's DeleteUser already did; this catches what this node's
// writer still had queued) and when an account is created (a message
// another node archived for the old account of that name in the moment
// it was deleted, while that node still believed it existed, must not
// greet the new owner).
func (p *Plugin) clearArchive(ctx context.Context, payload any) error {
	ev, ok := payload.(*plugins.UserEvent)
	if !ok {
		return nil
	}
	bare := ev.Username + "@" + p.host.Domain()
	if _, err := p.arch.DeleteOwner(ctx, bare); err != nil {
		p.host.Logger().Warn("mam: clearing an account's archive failed", "account", bare, "err", err)
	}
	return nil
}

// Archive returns the archive the accounts use (and Rooms the same one).
func (p *Plugin) Archive() *Archive { return p.arch }

// Rooms returns the archive a group-chat service keeps its rooms in; see
// the package documentation.
func (p *Plugin) Rooms() *Archive { return p.arch }

// AccountFeatures are announced on every account's bare JID.
func (p *Plugin) AccountFeatures() []string { return []string{NS, NSExtended, NSSID} }

// IQNamespaces: queries and preferences on the account's own archive.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToAccount}

// HandleIQ answers queries, the form, metadata and preferences, for the
// sender's own account only.
func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	owner, ok := xmpputil.Self(iq)
	if !ok {
		return nil, wire.ErrForbidden.WithText("only the account's own archive can be read")
	}
	q := iq.Payload()
	switch {
	case q.Name == "prefs" && iq.Stanza.Type() == "get":
		return p.prefs.get(ctx, owner)
	case q.Name == "prefs":
		return p.prefs.set(ctx, owner, q)
	case q.Name == "metadata" && iq.Stanza.Type() == "get":
		return p.arch.Metadata(ctx, owner)
	case q.Name == "query" && iq.Stanza.Type() == "get":
		return queryForm(), nil
	case q.Name == "query":
		res, ids, err := p.arch.queryAs(ctx, owner, owner, iq.Stanza)
		if err == nil {
			p.catchup.returned(iq.From, ids)
		}
		return res, err
	}
	return nil, wire.ErrBadRequest.WithText("unknown MAM request")
}

// InterceptPoints: the sender's copy, the recipient's copy, stanza ids
// from other servers, and the offline hand-over.
func (p *Plugin) InterceptPoints() []plugins.Point { return points }

var points = []plugins.Point{plugins.PointInbound, plugins.PointUserMessage, plugins.PointRemoteInbound, plugins.PointDeliver}

// Intercept archives and stamps messages; it never refuses one.
func (p *Plugin) Intercept(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
	el := st.El
	if el.Name != "message" {
		return plugins.Continue, nil
	}
	switch pt {
	case plugins.PointInbound:
		p.outgoing(ctx, st.Session, el)
	case plugins.PointRemoteInbound:
		// Another server may not speak for our archives (XEP-0359 §4).
		dropOurStanzaIDs(el, p.host.Domain(), "")
	case plugins.PointUserMessage:
		p.incoming(ctx, el)
	case plugins.PointDeliver:
		if p.catchup.seen(st.Session, el, p.host.Domain()) {
			return plugins.Drop, nil
		}
	}
	return plugins.Continue, nil
}

// outgoing archives a message a local client sends, in the sender's
// archive, and stamps the sender's stanza-id on it (so the sent carbons
// carry it). A client may not bring stanza ids of our domain.
func (p *Plugin) outgoing(ctx context.Context, session string, el *wire.Element) {
	dropOurStanzaIDs(el, p.host.Domain(), "")
	owner := wire.JIDOf(session).Bare()
	if owner == "" {
		owner = wire.JIDOf(el.From()).Bare()
	}
	with := wire.JIDOf(el.To()).Bare()
	if owner == "" || with == "" || with == owner || !archivable(el) {
		// A message to one's own account is archived once, as it arrives.
		return
	}
	if el.Child("retract", NSRetract) != nil {
		p.retract(owner, with, owner, el)
	}
	if !p.prefs.allows(ctx, owner, with) {
		return
	}
	p.arch.addStamped(ctx, owner, with, owner, el)
}

// incoming archives a message for a local account in its archive and
// stamps the account's stanza-id on it.
func (p *Plugin) incoming(ctx context.Context, el *wire.Element) {
	owner := wire.JIDOf(el.To()).Bare()
	with := wire.JIDOf(el.From()).Bare()
	if owner == "" {
		return
	}
	// Whatever claims to be this account's ID was not made here (a
	// client's own forgeries were removed at PointInbound).
	dropOurStanzaIDs(el, "", owner)
	if with == "" || !archivable(el) {
		return
	}
	// A message to an account that does not exist is bounced by the
	// router; it must not wait in an archive for whoever registers the
	// name later.
	if !p.known.exists(ctx, owner) {
		return
	}
	if el.Child("retract", NSRetract) != nil {
		p.retract(owner, with, with, el)
	}
	if !p.prefs.allows(ctx, owner, with) {
		return
	}
	p.arch.addStamped(ctx, owner, with, owner, el)
}
