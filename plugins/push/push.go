// Package push is XEP-0357 push notifications. A client registers an app
// server (a JID and a pubsub node, with an optional publish-options data
// form carrying the secret the app server wants) with
// <enable xmlns='urn:xmpp:push:0'/>, and removes one node or every node
// of an app server with <disable/>. Registrations are kept per account in
// the map store "push" (storage.Modules), so every node of the cluster
// sees the same ones; at most max_registrations per account (a new one
// past it gets resource-constraint).
//
// When a message worth a notification (a body, or an encrypted payload:
// OMEMO, OpenPGP, XEP-0420) is about to be stored offline for an account
// with no available session, the node storing it — the one that decided
// it could not be delivered live, where the router runs PointOffline —
// publishes one notification to every registered app server:
//
//	<iq type='set' from='push.DOMAIN' to='APP' id='…'><pubsub xmlns='http://jabber.org/protocol/pubsub'>
//	  <publish node='NODE'><item><notification xmlns='urn:xmpp:push:0'>
//	    <x xmlns='jabber:x:data' type='submit'> FORM_TYPE urn:xmpp:push:summary,
//	      message-count, last-message-sender[, last-message-body] </x>
//	  </notification></item></publish>
//	  <publish-options>…the client's form…</publish-options>
//	</pubsub></iq>
//
// message-count counts the notified messages since the account last sent
// initial presence (the key/value store "push.pending", shared by the
// cluster). last-message-body is included only when the server allows it
// (plugins.settings["xep0357.push"].include_body, default false) and the
// client asked for it with the field "include-body" set to true in its
// enable form's publish-options (a field this server takes out of the
// form before it is forwarded); otherwise bodies never leave the server.
//
// Notifications come from the plugin's own subdomain (setting domain,
// default push.DOMAIN, Host.ServeDomain), so the app server's answer
// comes back to this plugin on whichever node it arrives at. The IQ id
// names the account and registration, so any node can act on an error
// answer: item-not-found, not-authorized, forbidden and
// registration-required mean the registration is gone (XEP-0357 §9.1)
// and it is removed; other errors (a timeout, a server that is down)
// leave it. Like conference.DOMAIN and pubsub.DOMAIN, the subdomain needs
// DNS (an SRV or A record reaching the cluster) and, for certificate
// authentication, a name in the certificate (tls.acme.names) before app
// servers on other domains can verify notifications from it over s2s and
// answer there; components of the same server need neither.
//
// A message that the router queues on a session that is detached
// awaiting stream resumption (XEP-0198) or whose client said <inactive/>
// (XEP-0352) is not seen live either: if that session enabled push (the
// registration remembers the session that sent <enable/>), the node
// where it is queued publishes to that session's app servers (at
// PointDeliver), whatever the account's other sessions do: it is that
// device that needs waking. The router gives each session its own copy,
// so each registration hears of a message once. Quiet sessions are learnt
// from the c2s hooks (EventSessionDetached, EventClientInactive;
// EventSessionResumed, EventClientActive, EventSessionBound and
// EventSessionClosed end it). A message notified this way that the
// session never acknowledged, stored offline when the session ends
// unresumed, does not notify again.
//
// When the database does not answer, a notification is not dropped and
// does not hold up the message: it waits in memory and is sent once the
// registrations can be read, behind any that wait already (deferral.go;
// metrics aviary_push_deferred_*).
//
// Each node keeps the registrations it read, empty lists included, so a
// message stored offline for an account without any costs no query; an
// enable or disable answered by one node is broadcast to the others before
// it is answered (regcache.go).
package push

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/aviary-im/aviary/plugins/internal/readcache"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/disco"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0357.push"

// Namespaces.
const (
	NS        = "urn:xmpp:push:0"
	NSSummary = "urn:xmpp:push:summary"
	NSPubSub  = "http://jabber.org/protocol/pubsub"
	NSData    = "jabber:x:data"
)

// Store is the map store of registrations; Pending the key/value store of
// the per-account message count.
const (
	Store   = "push"
	Pending = "push.pending"
)

// DefaultMaxRegistrations bounds the app servers one account registers.
const DefaultMaxRegistrations = 10

// IncludeBodyField is the publish-options field a client sets to true to
// let the server include message bodies (when include_body allows it).
const IncludeBodyField = "include-body"

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin keeps registrations and sends notifications.
type Plugin struct {
	host        plugins.Host
	domain      string
	includeBody bool
	limits      storage.Limits
	release     func()
	rmHooks     []func()
	stats       counters

	mu    sync.Mutex
	quiet map[string]bool // full JIDs of this node's detached or inactive sessions
	// pushed holds the messages queued on a quiet session of this node
	// that a notification covered (by their content element: contentOf),
	// until the session is active again or gone: when it ends unresumed,
	// the router stores what its client never acknowledged offline, and
	// those must not notify a second time.
	pushed    map[*wire.Element]string
	pushedFor map[string][]*wire.Element

	// deferred holds notifications whose registrations could not be read
	// (the database did not answer), oldest first, for one goroutine to
	// retry (deferral.go). While it holds any, new notifications queue
	// behind them instead of waiting database.timeout each on the
	// message's path.
	// regs holds the registrations read, empty lists included
	// (regcache.go).
	regs *readcache.Cache[string, []Registration]

	deferMu  sync.Mutex
	deferred []deferredNote
	retrying bool
	quit     chan struct{}
	retryWG  sync.WaitGroup
}

// maxPushedPerSession bounds what pushed keeps for one session; past it a
// message may be notified again when it goes offline (harmless).
const maxPushedPerSession = 1000

var (
	_ plugins.IQHandler       = (*Plugin)(nil)
	_ plugins.AccountFeatures = (*Plugin)(nil)
	_ plugins.Interceptor     = (*Plugin)(nil)
	_ plugins.Configurable    = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin {
	return &Plugin{quiet: map[string]bool{}, pushed: map[*wire.Element]string{}, pushedFor: map[string][]*wire.Element{}, quit: make(chan struct{}),
		regs: readcache.New[string, []Registration](regCacheTTL, maxCachedRegs)}
}

func (p *Plugin) ID() string { return ID }

// Settings documents plugins.settings["xep0357.push"].
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{
		{Key: "domain", Type: "string", Default: "push.<domain>", Doc: "the address notifications are sent from (app servers answer there)"},
		{Key: "include_body", Type: "bool", Default: "false", Doc: "allow the last message's body in notifications, for clients that ask for it with the include-body publish option"},
		{Key: "max_registrations", Type: "int", Default: strconv.Itoa(DefaultMaxRegistrations), Doc: "app server nodes one account may register (0: no limit)"},
	}
}

func (p *Plugin) AccountFeatures() []string { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer | plugins.ToAccount}

func (p *Plugin) InterceptPoints() []plugins.Point {
	return []plugins.Point{plugins.PointOffline, plugins.PointDeliver}
}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	cfg := host.Config()
	p.domain = strings.ToLower(plugins.SettingString(cfg, ID, "domain", "push."+host.Domain()))
	p.includeBody = plugins.SettingBool(cfg, ID, "include_body", false)
	p.limits = limits(cfg)
	release, err := host.ServeDomain(plugins.Service{Domain: p.domain, Name: "Push notifications", Handle: p.handle})
	if err != nil {
		return err
	}
	p.release = release
	if r, ok := host.(interface{ Registry() prometheus.Registerer }); ok && r.Registry() != nil {
		p.rmHooks = append(p.rmHooks, p.registerMetrics(r.Registry()))
	}
	// A session that comes back starts a new count.
	p.rmHooks = append(p.rmHooks, host.Hooks().Add(plugins.EventPresenceAvailable, 0, func(ctx context.Context, payload any) error {
		ev, ok := payload.(*plugins.SessionEvent)
		if !ok {
			return nil
		}
		owner := wire.BareJID(ev.JID)
		if regs, err := p.registrations(ctx, owner); err == nil && len(regs) == 0 {
			return nil // no registration, no count (afterRemoval)
		}
		err := host.Store().KeyValue(Pending).Delete(ctx, owner, "count")
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			host.Logger().Warn("push: could not reset the message count", "jid", ev.JID, "err", err)
		}
		return nil
	}))
	p.rmHooks = append(p.rmHooks, host.Hooks().Add(eventRegistrations, 0, p.onRegistrationsChanged))
	p.rmHooks = append(p.rmHooks, host.Hooks().Add(plugins.EventUserDeleted, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.UserEvent); ok && ev.Username != "" {
			p.registrationsChanged(ctx, ev.Username+"@"+host.Domain())
		}
		return nil
	}))
	for ev, quiet := range map[plugins.Event]bool{
		plugins.EventSessionDetached: true, plugins.EventClientInactive: true,
		plugins.EventSessionResumed: false, plugins.EventClientActive: false,
		plugins.EventSessionBound: false, plugins.EventSessionClosed: false,
	} {
		p.rmHooks = append(p.rmHooks, host.Hooks().Add(ev, 0, func(ctx context.Context, payload any) error {
			if se, ok := payload.(*plugins.SessionEvent); ok && se.JID != "" {
				p.setQuiet(se.JID, quiet, ev == plugins.EventSessionClosed)
			}
			return nil
		}))
	}
	return nil
}

// closedGrace is how long the messages a notification covered are still
// known once their session closed: a message being queued on the session
// as it closed is routed by the router afterwards (offline storage, on
// the sender's goroutine, bounded by database.timeout + 5s) and must not
// notify a second time.
var closedGrace = 30 * time.Second

func (p *Plugin) setQuiet(full string, quiet, closed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if quiet {
		p.quiet[full] = true
		return
	}
	delete(p.quiet, full)
	els := p.pushedFor[full]
	delete(p.pushedFor, full) // a new session under this JID starts clean
	if closed && len(els) > 0 {
		time.AfterFunc(closedGrace, func() { p.forgetPushed(els) })
		return
	}
	for _, el := range els {
		delete(p.pushed, el)
	}
}

// forgetPushed drops messages a closed session's notifications covered.
func (p *Plugin) forgetPushed(els []*wire.Element) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, el := range els {
		delete(p.pushed, el)
	}
}

// remember notes that a notification covered msg, queued on full.
func (p *Plugin) remember(full string, msg *wire.Element) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pushedFor[full]) >= maxPushedPerSession {
		return
	}
	p.pushed[msg] = full
	p.pushedFor[full] = append(p.pushedFor[full], msg)
}

// alreadyPushed reports whether msg is a message a notification covered
// while it was queued on a quiet session.
func (p *Plugin) alreadyPushed(msg *wire.Element) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.pushed[msg]
	return ok
}

func (p *Plugin) isQuiet(full string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.quiet[full]
}

func limits(cfg *conf.Config) storage.Limits {
	return storage.Limits{Items: plugins.SettingInt(cfg, ID, "max_registrations", DefaultMaxRegistrations)}
}

func (p *Plugin) Stop(ctx context.Context) error {
	p.stopRetrying()
	for _, rm := range p.rmHooks {
		rm()
	}
	if p.release != nil {
		p.release()
	}
	return nil
}

// Domain returns the address notifications come from (after Start).
func (p *Plugin) Domain() string { return p.domain }

// Registration is one app server node an account enabled.
type Registration struct {
	JID  string `json:"jid"`
	Node string `json:"node"`
	// Options is the publish-options form (XML) forwarded with every
	// notification, without the include-body field; "" when none.
	Options     string `json:"options,omitempty"`
	IncludeBody bool   `json:"include_body,omitempty"`
	// Session is the full JID of the session that enabled it: its
	// device is the one woken while that session is detached or inactive.
	Session string `json:"session,omitempty"`
}

func key(jid, node string) string { return jid + " " + node }

func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	owner, ok := xmpputil.Self(iq)
	if !ok {
		return nil, wire.ErrForbidden
	}
	if iq.Stanza.Type() != "set" {
		return nil, wire.ErrBadRequest
	}
	q := iq.Payload()
	jid := wire.JIDOf(q.Attr("jid")).String()
	if jid == "" {
		return nil, wire.ErrBadRequest.WithText("the app server's jid is missing or malformed")
	}
	m := p.host.Store().Map(Store)
	switch q.Name {
	case "enable":
		node := q.Attr("node")
		if node == "" {
			return nil, wire.ErrBadRequest.WithText("enable needs a node")
		}
		reg := Registration{JID: jid, Node: node, Session: wire.JIDOf(iq.From).String()}
		if form := q.Child("x", NSData); form != nil {
			opts, include := publishOptions(form)
			reg.Options, reg.IncludeBody = opts.String(), include
		}
		v, err := json.Marshal(reg)
		if err != nil {
			return nil, err
		}
		if _, err := m.Set(ctx, owner, "", key(jid, node), v, p.limits); err != nil {
			if errors.Is(err, storage.ErrQuotaExceeded) {
				return nil, wire.ErrResourceConstraint.WithText("too many push registrations on this account")
			}
			return nil, err
		}
		p.registrationsChanged(ctx, owner)
		return nil, nil
	case "disable":
		if node := q.Attr("node"); node != "" {
			if err := m.Delete(ctx, owner, "", key(jid, node)); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return nil, err
			}
			p.afterRemoval(ctx, owner)
			return nil, nil
		}
		// The store's list, not this node's: a registration another node
		// made moments ago must go too.
		regs, err := p.readRegistrations(ctx, owner)
		if err != nil {
			return nil, err
		}
		for _, r := range regs {
			if r.JID != jid {
				continue
			}
			if err := m.Delete(ctx, owner, "", key(r.JID, r.Node)); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return nil, err
			}
		}
		p.afterRemoval(ctx, owner)
		return nil, nil
	}
	return nil, wire.ErrBadRequest
}

// afterRemoval follows the removal of registrations: every node forgets
// the owner's list, and an account left with none loses its message count
// too (the presence hook, which resets it, skips accounts without
// registrations, so a count left behind would go on where it stopped
// when the account registers again).
func (p *Plugin) afterRemoval(ctx context.Context, owner string) {
	p.registrationsChanged(ctx, owner)
	regs, err := p.readRegistrations(ctx, owner)
	if err != nil || len(regs) > 0 {
		return
	}
	err = p.host.Store().KeyValue(Pending).Delete(ctx, owner, "count")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		p.host.Logger().Warn("push: could not reset the message count", "owner", owner, "err", err)
	}
}

// publishOptions copies the client's form without the include-body field
// and reports whether that field allowed bodies.
func publishOptions(form *wire.Element) (*wire.Element, bool) {
	out := form.Copy()
	out.Tail = ""
	out.Children = out.Children[:0]
	include := false
	for _, f := range form.Children {
		if f.Name == "field" && f.Attr("var") == IncludeBodyField {
			v := f.ChildText("value", "")
			include = v == "true" || v == "1"
			continue
		}
		out.Children = append(out.Children, f)
	}
	return out, include
}

// registrations returns an account's registrations: as this node knows
// them (regcache.go), else read from the store.
func (p *Plugin) registrations(ctx context.Context, owner string) ([]Registration, error) {
	if regs, ok := p.regs.Get(owner); ok {
		return slices.Clone(regs), nil
	}
	gen := p.regs.Generation()
	regs, err := p.readRegistrations(ctx, owner)
	if err != nil {
		return nil, err
	}
	p.regs.Put(owner, slices.Clone(regs), gen)
	return regs, nil
}

// readRegistrations reads an account's registrations from the store.
func (p *Plugin) readRegistrations(ctx context.Context, owner string) ([]Registration, error) {
	items, err := p.host.Store().Map(Store).List(ctx, owner, "", storage.MapQuery{})
	if err != nil {
		return nil, err
	}
	out := make([]Registration, 0, len(items))
	for _, it := range items {
		var r Registration
		if err := json.Unmarshal(it.Value, &r); err != nil {
			p.host.Logger().Warn("push: skipping an unreadable registration", "owner", owner, "key", it.Key, "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// Intercept sees a message about to be stored offline: the account has
// no available session, and this node took that decision.
// At PointDeliver it sees a message queued on one of this node's
// sessions: it notifies when that session is quiet (see the package doc).
func (p *Plugin) Intercept(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
	if st.El.Name != "message" || !worthNotifying(st.El) {
		return plugins.Continue, nil
	}
	switch pt {
	case plugins.PointOffline:
		if !p.alreadyPushed(contentOf(st.El)) {
			p.notifyOrDefer(ctx, wire.BareJID(st.El.To()), st.El, "")
		}
	case plugins.PointDeliver:
		if st.Session == "" || !p.isQuiet(st.Session) {
			break
		}
		p.notifyOrDefer(ctx, wire.BareJID(st.Session), st.El, st.Session)
	}
	return plugins.Continue, nil
}

// worthNotifying reports whether a message is one a person is told about:
// it has a body or an encrypted payload.
func worthNotifying(el *wire.Element) bool { return contentOf(el) != nil }

// contentOf returns a message's body or encrypted payload (nil: none).
// It also names the message across the router's copies: the router hands
// PointDeliver a private copy of the top level whose children are the
// original's, and when that session refuses the copy (closing), offline
// storage gets the original; the content element is the same in both.
func contentOf(el *wire.Element) *wire.Element {
	for _, c := range el.Children {
		switch c.LocalName() {
		case "body", "encrypted", "openpgp", "envelope":
			return c
		}
	}
	return nil
}

// Notify publishes a notification about msg to every app server owner
// registered. Failures are logged: the message itself goes on.
func (p *Plugin) Notify(ctx context.Context, owner string, msg *wire.Element) {
	p.notifyOrDefer(ctx, owner, msg, "")
}

// notify publishes to the registrations the session enabled (all of the
// account's when session is "") and returns how many it published to. It
// fails only when the registrations could not be read.
func (p *Plugin) notify(ctx context.Context, owner string, msg *wire.Element, session string) (int, error) {
	regs, err := p.registrations(ctx, owner)
	if err != nil {
		return 0, err
	}
	if session != "" {
		mine := regs[:0]
		for _, r := range regs {
			if r.Session == session {
				mine = append(mine, r)
			}
		}
		regs = mine
	}
	if len(regs) == 0 {
		return 0, nil
	}
	count := 1
	err = storage.UpdateKV(ctx, p.host.Store().KeyValue(Pending), owner, "count", storage.Limits{},
		func(old []byte, exists bool) ([]byte, bool, error) {
			n, _ := strconv.Atoi(string(old))
			count = n + 1
			return []byte(strconv.Itoa(count)), false, nil
		})
	if err != nil {
		p.host.Logger().Warn("push: could not count the message", "owner", owner, "err", err)
	}
	for _, r := range regs {
		p.host.Route(ctx, p.notification(owner, r, msg, count))
		p.stats.sent.Add(1)
	}
	return len(regs), nil
}

// notification builds the publish IQ for one registration.
func (p *Plugin) notification(owner string, r Registration, msg *wire.Element, count int) *wire.Element {
	form := wire.New("x", "xmlns", NSData, "type", "submit")
	form.Append(field("FORM_TYPE", NSSummary), field("message-count", strconv.Itoa(count)),
		field("last-message-sender", msg.From()))
	if p.includeBody && r.IncludeBody {
		if b := msg.ChildText("body", ""); b != "" {
			form.Append(field("last-message-body", b))
		}
	}
	publish := wire.New("publish", "node", r.Node).Append(
		wire.New("item").Append(wire.NewNS("notification", NS).Append(form)))
	ps := wire.NewNS("pubsub", NSPubSub).Append(publish)
	if r.Options != "" {
		if opts, err := wire.Parse([]byte(r.Options), wire.Limits{MaxStanzaBytes: len(r.Options) + 1}); err == nil {
			ps.Append(wire.New("publish-options").Append(opts))
		}
	}
	return wire.New("iq", "type", "set", "from", p.domain, "to", r.JID, "id", iqID(owner, r)).Append(ps)
}

func field(name, value string) *wire.Element {
	f := wire.New("field", "var", name)
	if name == "FORM_TYPE" {
		f.SetAttr("type", "hidden")
	}
	return f.Append(wire.New("value").SetText(value))
}

// iqID names the registration a notification is for, so the node that
// gets the answer (any node) can act on it: "push.<b64(owner \n key)>.<random>".
func iqID(owner string, r Registration) string {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return "push." + base64.RawURLEncoding.EncodeToString([]byte(owner+"\n"+key(r.JID, r.Node))) + "." + hex.EncodeToString(rnd[:])
}

// parseID returns the owner and registration key an iqID names.
func parseID(id string) (owner, k string, ok bool) {
	rest, found := strings.CutPrefix(id, "push.")
	if !found {
		return "", "", false
	}
	enc, _, found := strings.Cut(rest, ".")
	if !found {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	owner, k, ok = strings.Cut(string(raw), "\n")
	return owner, k, ok
}

// goneConditions are the errors that say the app server no longer knows
// the registration (XEP-0357 §9.1 and what app servers answer in practice).
var goneConditions = map[string]bool{
	"item-not-found": true, "not-authorized": true, "forbidden": true, "registration-required": true,
}

// handle serves the plugin's domain: IQ answers from app servers.
func (p *Plugin) handle(ctx context.Context, el *wire.Element) error {
	if el.Name != "iq" {
		if el.Name == "message" && !el.IsError() {
			return wire.ErrServiceUnavailable
		}
		return nil
	}
	q := el.FirstChild()
	switch el.Type() {
	case "get":
		switch {
		case q != nil && q.Name == "query" && q.NS() == wire.NSDiscoInfo && q.Attr("node") == "":
			// Clients walking the domain's disco#items (Smack looking for
			// a pubsub service) get an answer, not an error.
			p.host.Route(ctx, wire.IQResult(el, disco.InfoElement("",
				[]plugins.Identity{{Category: "component", Type: "generic", Name: "Push notifications"}}, nil)))
			return nil
		case q != nil && q.Name == "query" && q.NS() == wire.NSDiscoItems:
			p.host.Route(ctx, wire.IQResult(el, wire.NewNS("query", wire.NSDiscoItems)))
			return nil
		}
		return wire.ErrServiceUnavailable
	case "set":
		return wire.ErrServiceUnavailable
	case "error":
	default:
		return nil
	}
	owner, k, ok := parseID(el.ID())
	if !ok {
		return nil
	}
	cond := errorCondition(el)
	p.stats.errors.Add(1)
	if !goneConditions[cond] {
		p.host.Logger().Debug("push: app server answered with an error", "owner", owner, "registration", k, "condition", cond)
		return nil
	}
	// The answer must come from the registered app server.
	jid, _, _ := strings.Cut(k, " ")
	if wire.JIDOf(el.From()).String() != jid {
		return nil
	}
	err := p.host.Store().Map(Store).Delete(ctx, owner, "", k)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if err == nil {
		p.afterRemoval(ctx, owner)
		p.stats.disabled.Add(1)
		p.host.Logger().Info("push: app server dropped a registration; disabled it", "owner", owner, "registration", k, "condition", cond)
	}
	return nil
}

// errorCondition returns the defined condition of an error stanza.
func errorCondition(el *wire.Element) string {
	e := el.Child("error", "")
	if e == nil {
		return ""
	}
	for _, c := range e.Children {
		if c.NS() == wire.NSStanzas {
			return c.Name
		}
	}
	return ""
}
