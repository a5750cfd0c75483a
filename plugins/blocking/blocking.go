// Package blocking is XEP-0191 blocking command: the block list IQs and
// their enforcement.
//
// IQs (sent by the user with no 'to', or to the user's own bare JID):
// get <blocklist/>, set <block/> with items, set <unblock/> with items or
// without any (unblock all). Every change is pushed to the user's
// interested resources (those that fetched the list), cluster-wide
// (Host.Resources, Host.Route). Interest is known only on the node that
// answered the fetch, which is the node the resource is connected to; so a
// node pushes to its own resources that showed interest and to every
// resource on other nodes (a push to an uninterested client is harmless).
// Blocking a contact who may see the user's presence sends the contact
// unavailable presence from each available resource.
//
// Enforcement is an interceptor:
//   - PointInbound (the user sends to a blocked JID): messages and IQ
//     get/set are answered with not-acceptable carrying
//     <blocked xmlns='urn:xmpp:blocking:errors'/>; presence and everything
//     else is dropped.
//   - PointUserMessage, PointDeliver and PointOffline (a blocked JID
//     sends to the user; PointUserMessage stops a message before the
//     message archive keeps it):
//     messages and IQ get/set are answered with service-unavailable (once,
//     though the router delivers to each resource), everything else
//     (presence, results, errors) is dropped. The one exception is our own
//     blocked-error replies, which must reach the user.
//   - PointDeliver also drops a local user's presence on its way to a
//     contact that user blocked: broadcasts carry no 'to' when they pass
//     PointInbound. Presence to remote contacts and the
//     router's own answers to presence probes pass no interceptor point,
//     so they are not filtered here.
//
// JIDs match as XEP-0016 §2.1 says (XEP-0191 refers to it): a full-JID
// item matches that JID only, a bare item any resource of it, a domain item
// everything at that domain, and a domain/resource item that resource at
// the domain, with or without a localpart (as ejabberd does).
//
// Block lists are kept in memory on every node, kept current across the
// cluster by change events, and read from the database only when a node
// does not know a list yet (lists.go). When a list cannot be known (the
// database does not answer the one read it needs), the stanza it would
// decide fails closed, never open: a message or IQ request is bounced to
// its sender with resource-constraint (type wait: "try again later"),
// anything else is dropped. Holding such stanzas until the database
// answers was the alternative; bouncing keeps no state per stanza,
// tells the sender at once, and clients already retry wait-type errors.
// Two exceptions keep that from losing messages: a stanza the user sends,
// and a message or request for the user, wait for the list (up to
// ownListWait; only that stanza's path waits), and an error passes an
// unknown list (it may be the very bounce that tells the user a stanza
// failed; a storm that lost 83 acknowledged messages found both).
package blocking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0191.blocking"

// Namespaces.
const (
	NS       = "urn:xmpp:blocking"
	NSErrors = "urn:xmpp:blocking:errors"
)

// DefaultRefresh is how old a list in use may get before it is re-read
// in the background (the safety net for a lost change event).
const DefaultRefresh = time.Minute

// bounceWindow and maxBounced bound the memory of answered blocked
// stanzas (see firstBounce).
const (
	bounceWindow = 10 * time.Second
	maxBounced   = 1024
)

// errListUnknown answers a stanza whose fate depends on a block list that
// could not be read.
var errListUnknown = wire.ErrResourceConstraint.WithText("block list unavailable; try again later")

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin manages and enforces block lists.
type Plugin struct {
	host    plugins.Host
	refresh time.Duration
	now     func() time.Time
	ownWait time.Duration // ownListWait; shorter in tests
	remove  func()
	ctx     context.Context // ends at Stop: background reads
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.RWMutex
	lists   map[string]*entry // owner bare JID → known list
	loading map[string]*load  // owner → store read in flight
	online  map[string]int    // owner → sessions bound on this node

	bmu     sync.Mutex
	bounced map[string]time.Time // recently answered blocked stanzas

	imu        sync.Mutex
	interested map[string]map[string]struct{} // owner → full JIDs on this node that fetched the list
}

var (
	_ plugins.IQHandler       = (*Plugin)(nil)
	_ plugins.DiscoFeatures   = (*Plugin)(nil)
	_ plugins.AccountFeatures = (*Plugin)(nil)
	_ plugins.Interceptor     = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin {
	return &Plugin{
		refresh: DefaultRefresh, now: time.Now, ownWait: ownListWait,
		lists: map[string]*entry{}, loading: map[string]*load{}, online: map[string]int{},
		bounced: map[string]time.Time{}, interested: map[string]map[string]struct{}{},
	}
}

// SetClock replaces the clock (tests).
func (p *Plugin) SetClock(now func() time.Time) { p.now = now }

// SetOwnListWait replaces ownListWait (tests).
func (p *Plugin) SetOwnListWait(d time.Duration) { p.ownWait = d }

func (p *Plugin) ID() string                { return ID }
func (p *Plugin) DiscoFeatures() []string   { return []string{NS} }
func (p *Plugin) AccountFeatures() []string { return []string{NS} }

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer | plugins.ToAccount}

func (p *Plugin) InterceptPoints() []plugins.Point { return points }

// points is shared: the manager asks for it on every stanza.
var points = []plugins.Point{plugins.PointInbound, plugins.PointUserMessage, plugins.PointDeliver, plugins.PointOffline}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	if s := plugins.SettingString(host.Config(), ID, "refresh_interval", ""); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			// Refusing to start would leave the node with no blocking at all.
			host.Logger().Warn("ignoring bad setting", "plugin", ID, "key", "refresh_interval", "value", s, "err", errBadRefresh, "using", DefaultRefresh)
		} else {
			p.refresh = d
		}
	}
	p.mu.Lock()
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.Unlock()
	rmChanged := host.Hooks().Add(eventChanged, 0, p.onChanged)
	rmDeleted := host.Hooks().Add(plugins.EventUserDeleted, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.UserEvent); ok {
			p.changed(ctx, change{Op: opForget, Owner: ev.Username + "@" + host.Domain()})
		}
		return nil
	})
	rmBound := host.Hooks().Add(plugins.EventSessionBound, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.SessionEvent); ok {
			p.sessionBound(wire.BareJID(ev.JID))
		}
		return nil
	})
	rmClosed := host.Hooks().Add(plugins.EventSessionClosed, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.SessionEvent); ok {
			owner := wire.BareJID(ev.JID)
			p.sessionClosed(owner)
			p.imu.Lock()
			delete(p.interested[owner], ev.JID)
			if len(p.interested[owner]) == 0 {
				delete(p.interested, owner)
			}
			p.imu.Unlock()
		}
		return nil
	})
	p.remove = func() { rmChanged(); rmDeleted(); rmBound(); rmClosed() }
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error {
	if p.remove != nil {
		p.remove()
	}
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Plugin) markInterested(owner, full string) {
	p.imu.Lock()
	defer p.imu.Unlock()
	set := p.interested[owner]
	if set == nil {
		set = map[string]struct{}{}
		p.interested[owner] = set
	}
	set[full] = struct{}{}
}

// forgetGone drops the interest of the owner's resources that are no
// longer online. Session-closed events do this too; this keeps the set
// bounded even where they are not fired.
func (p *Plugin) forgetGone(owner string, online []plugins.Resource) {
	p.imu.Lock()
	defer p.imu.Unlock()
	for full := range p.interested[owner] {
		gone := true
		for _, r := range online {
			if r.JID == full {
				gone = false
				break
			}
		}
		if gone {
			delete(p.interested[owner], full)
		}
	}
	if len(p.interested[owner]) == 0 {
		delete(p.interested, owner)
	}
}

// wantsPush reports whether a resource gets block list pushes.
func (p *Plugin) wantsPush(r plugins.Resource) bool {
	if r.Node != p.host.Config().Cluster.NodeName {
		return true // interest is recorded on the resource's own node
	}
	p.imu.Lock()
	defer p.imu.Unlock()
	_, ok := p.interested[wire.BareJID(r.JID)][r.JID]
	return ok
}

// HandleIQ answers the block list IQs.
func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	owner, ok := xmpputil.Self(iq)
	if !ok {
		return nil, wire.ErrForbidden
	}
	q := iq.Payload()
	switch {
	case iq.Stanza.Type() == "get" && q.Name == "blocklist":
		p.markInterested(owner, iq.From)
		e, err := p.lookup(ctx, owner)
		if err != nil {
			return nil, errListUnknown
		}
		res := wire.NewNS("blocklist", NS)
		for _, j := range e.list {
			res.Append(wire.New("item", "jid", j))
		}
		return res, nil
	case iq.Stanza.Type() == "set" && (q.Name == "block" || q.Name == "unblock"):
		jids, err := items(q)
		if err != nil {
			return nil, err
		}
		if q.Name == "block" {
			if len(jids) == 0 {
				return nil, wire.ErrBadRequest
			}
			if err := p.host.Store().Block(ctx, owner, jids); err != nil {
				return nil, err
			}
		} else if err := p.host.Store().Unblock(ctx, owner, jids); err != nil {
			return nil, err
		}
		p.changed(ctx, change{Op: q.Name, Owner: owner, JIDs: jids})
		if q.Name == "block" {
			p.hidePresence(ctx, owner, jids)
		}
		p.push(ctx, owner, q.Name, jids)
		return nil, nil
	}
	return nil, wire.ErrBadRequest
}

// items returns the normalized JIDs of a block or unblock element.
func items(q *wire.Element) ([]string, error) {
	var out []string
	for _, it := range q.ChildrenNamed("item", "") {
		j := wire.JIDOf(it.Attr("jid")).String()
		if j == "" {
			return nil, wire.ErrJIDMalformed
		}
		out = append(out, j)
	}
	return out, nil
}

// push sends the change to the owner's interested resources.
func (p *Plugin) push(ctx context.Context, owner, op string, jids []string) {
	res, err := p.host.Resources(ctx, owner)
	if err != nil {
		p.host.Logger().Warn("blocking push: resources", "owner", owner, "err", err)
		return
	}
	p.forgetGone(owner, res)
	for _, r := range res {
		if !p.wantsPush(r) {
			continue
		}
		change := wire.NewNS(op, NS)
		for _, j := range jids {
			change.Append(wire.New("item", "jid", j))
		}
		p.host.Route(ctx, wire.New("iq", "type", "set", "id", "push-"+randomID(), "from", owner, "to", r.JID).Append(change))
	}
}

// hidePresence sends unavailable presence from each available resource of
// the owner to newly blocked contacts that may see the owner's presence.
func (p *Plugin) hidePresence(ctx context.Context, owner string, jids []string) {
	res, err := p.host.Resources(ctx, owner)
	if err != nil || len(res) == 0 {
		return
	}
	for _, j := range jids {
		c, err := wire.ParseJID(j)
		if err != nil || c.Local() == "" {
			continue
		}
		item, err := p.host.Store().GetRosterItem(ctx, owner, c.Bare())
		if err != nil || (item.Subscription != storage.SubFrom && item.Subscription != storage.SubBoth) {
			continue
		}
		for _, r := range res {
			if r.Available {
				p.host.Route(ctx, wire.New("presence", "type", "unavailable", "from", r.JID, "to", j))
			}
		}
	}
}

// ownListWait bounds how long a stanza waits for a block list while the
// database does not answer (blockedWaiting).
const ownListWait = 30 * time.Second

// ownListRetry is the pause between reads of a list that failed.
const ownListRetry = 500 * time.Millisecond

// blockedWaiting is Blocked for a stanza the user sends, or a message
// or request for the user: when the list cannot be read it is read again
// until ownListWait has passed. What waits is that stanza's path: the
// sender's stream for the user's own stanzas (its reader is what calls
// this, so the client's further stanzas and acknowledgements wait behind
// it, as they would behind a slow network), the recipient's queue for a
// stanza from another node. In a reconnection storm the database answers
// late for seconds, and a message refused then is a message the sender
// has to send again.
func (p *Plugin) blockedWaiting(ctx context.Context, owner, other string) (bool, error) {
	// Real time, not p.now: a test's stopped clock must not hold it.
	deadline := time.Now().Add(p.ownWait)
	for {
		blocked, err := p.Blocked(ctx, owner, other)
		if err == nil || errors.Is(err, errStopped) || ctx.Err() != nil || !time.Now().Before(deadline) {
			return blocked, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(min(ownListRetry, time.Until(deadline))):
		}
	}
}

// Blocked reports whether owner's block list matches the JID other. The
// error means the list is not known (the database did not answer).
func (p *Plugin) Blocked(ctx context.Context, owner, other string) (bool, error) {
	e, err := p.lookup(ctx, owner)
	if err != nil {
		return false, err
	}
	return e.matches(other), nil
}

func (e *entry) matches(other string) bool {
	if len(e.set) == 0 || other == "" {
		return false
	}
	if e.matchNormalized(other) {
		return true
	}
	if plainASCII(other) {
		return false // already in normal form: nothing more can match
	}
	j, err := wire.ParseJID(other)
	if err != nil {
		return false
	}
	return e.matchNormalized(j.String())
}

// matchNormalized checks the four XEP-0016 forms of a normalized JID; each
// is a substring of it, so nothing is allocated.
func (e *entry) matchNormalized(s string) bool {
	has := func(k string) bool { _, ok := e.set[k]; return ok }
	bare, resource := s, ""
	if i := strings.IndexByte(s, '/'); i >= 0 {
		bare, resource = s[:i], s[i+1:]
	}
	at := strings.IndexByte(bare, '@')
	if resource != "" {
		if has(s) || (at >= 0 && has(s[at+1:])) {
			return true
		}
	}
	return has(bare) || (at >= 0 && has(bare[at+1:]))
}

// plainASCII reports whether a JID is ASCII with no upper-case letter
// before the resource: PRECIS leaves such a JID unchanged.
func plainASCII(s string) bool {
	inResource := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return false
		}
		if c == '/' {
			inResource = true
		}
		if !inResource && c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// Intercept enforces block lists.
func (p *Plugin) Intercept(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
	el := st.El
	switch pt {
	case plugins.PointInbound:
		return p.outbound(ctx, st)
	case plugins.PointUserMessage, plugins.PointDeliver, plugins.PointOffline:
		owner := wire.BareJID(st.Session)
		if owner == "" {
			owner = wire.JIDOf(el.To()).Bare()
		}
		return p.inbound(ctx, owner, st.Session, el)
	}
	return plugins.Continue, nil
}

// outbound handles a stanza the user sends.
func (p *Plugin) outbound(ctx context.Context, st *plugins.Stanza) (plugins.Verdict, error) {
	el := st.El
	to := el.To()
	owner := wire.BareJID(st.Session)
	if owner == "" {
		owner = wire.BareJID(el.From())
	}
	if to == "" || owner == "" || to == p.host.Domain() || wire.BareJID(to) == owner {
		return plugins.Continue, nil
	}
	blocked, err := p.blockedWaiting(ctx, owner, to)
	if err != nil {
		// Unknown: refused, never let through. The router bounces it to
		// the sender with this error (a copy the router sends on the
		// user's behalf is dropped).
		return plugins.Drop, errListUnknown
	}
	if !blocked {
		return plugins.Continue, nil
	}
	if answerable(el) {
		reply := wire.ErrorReply(el, wire.ErrNotAcceptable)
		errEl := reply.Children[len(reply.Children)-1]
		errEl.Append(wire.NewNS("blocked", NSErrors))
		p.host.Route(ctx, reply)
		return plugins.Handled, nil
	}
	return plugins.Drop, nil
}

// inbound handles a stanza for the user (owner) at session (the
// recipient's full JID; "" for offline storage).
func (p *Plugin) inbound(ctx context.Context, owner, session string, el *wire.Element) (plugins.Verdict, error) {
	from := el.From()
	if owner == "" || from == "" || from == p.host.Domain() || wire.BareJID(from) == owner {
		return plugins.Continue, nil
	}
	if isBlockedError(el) {
		return plugins.Continue, nil // our own answer to the user's attempt
	}
	lookup := p.Blocked
	if answerable(el) {
		// A message or request waits for the recipient's list as a
		// user's own stanza does (only what is queued for this recipient
		// waits behind it: the link inbox keeps a queue per recipient);
		// refused, the sender would have to send it again. Presence is
		// state and is sent again: it does not wait.
		lookup = p.blockedWaiting
	}
	blocked, err := lookup(ctx, owner, from)
	if err != nil {
		if el.IsError() {
			// An error is how the user learns that a stanza of theirs
			// failed, most often the bounce of this very refusal (the
			// user's own list unknown when they sent it): dropped, the
			// failure is silent and an acknowledged message is lost.
			// Errors pass an unknown list; only they do.
			return plugins.Continue, nil
		}
		return p.refuse(ctx, el, errListUnknown), nil // unknown: fail closed
	}
	if !blocked {
		if el.Name == "presence" && session != "" && p.isLocal(from) {
			// A local user's presence broadcast (no 'to' at PointInbound)
			// must not reach a contact the user blocked.
			if b, err := p.Blocked(ctx, wire.BareJID(from), session); err != nil || b {
				return plugins.Drop, nil
			}
		}
		return plugins.Continue, nil
	}
	return p.refuse(ctx, el, wire.ErrServiceUnavailable), nil
}

// refuse answers a stanza for the user that must not reach it: messages
// and IQ requests get se back (once, though the router delivers to each
// resource), everything else is dropped.
func (p *Plugin) refuse(ctx context.Context, el *wire.Element, se *wire.StanzaError) plugins.Verdict {
	if !answerable(el) {
		return plugins.Drop
	}
	if p.firstBounce(el) {
		p.host.Route(ctx, wire.ErrorReply(el, se))
	}
	return plugins.Handled
}

// isBlockedError reports whether el is the error this plugin sends a user
// whose stanza went to a JID the user blocked.
func isBlockedError(el *wire.Element) bool {
	if !el.IsError() {
		return false
	}
	e := el.Child("error", "")
	return e != nil && e.Child("blocked", NSErrors) != nil
}

func (p *Plugin) isLocal(j string) bool {
	_, domain, _ := splitJID(j)
	return domain == p.host.Domain()
}

// firstBounce reports whether a blocked stanza is seen for the first time:
// the router delivers a message to a bare JID once per resource, and the
// sender should get one error, not one per resource.
func (p *Plugin) firstBounce(el *wire.Element) bool {
	if el.ID() == "" {
		return true
	}
	key := el.Name + "\x00" + el.From() + "\x00" + el.To() + "\x00" + el.ID()
	now := p.now()
	p.bmu.Lock()
	defer p.bmu.Unlock()
	if at, ok := p.bounced[key]; ok && now.Sub(at) < bounceWindow {
		return false
	}
	if len(p.bounced) >= maxBounced {
		for k, at := range p.bounced {
			if now.Sub(at) >= bounceWindow {
				delete(p.bounced, k)
			}
		}
	}
	p.bounced[key] = now
	return true
}

// answerable reports whether a blocked stanza gets an error back rather
// than silence: messages and IQ requests.
func answerable(el *wire.Element) bool {
	switch el.Name {
	case "message":
		return !el.IsError()
	case "iq":
		return el.Type() == "get" || el.Type() == "set"
	}
	return false
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// splitJID splits a JID string without normalizing it.
func splitJID(s string) (local, domain, resource string) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s, resource = s[:i], s[i+1:]
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		local, s = s[:i], s[i+1:]
	}
	return local, s, resource
}

// Settings documents the plugin's one setting.
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{{Key: "refresh_interval", Type: "duration", Default: DefaultRefresh.String(),
		Doc: "how old a block list in use may get before it is re-read from the database in the background; changes made on any node apply at once through cluster events, this only repairs a lost event, and while the database does not answer the list as last known stays in force"}}
}
