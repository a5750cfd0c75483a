package router

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the router's part of the node's configuration.
type Config struct {
	Domain string
	// C2S holds the limits of sessions, rosters and offline storage.
	C2S conf.C2SConfig
	// Cluster holds crash safety's settings and the cluster operations'
	// timeout.
	Cluster conf.ClusterConfig
	// DatabaseTimeout is database.timeout, the bound of one store call.
	DatabaseTimeout time.Duration
}

// ConfigFrom takes the router's part of a node's configuration.
func ConfigFrom(c *conf.Config) Config {
	return Config{Domain: c.Domain, C2S: c.C2S, Cluster: c.Cluster, DatabaseTimeout: c.Database.Timeout}
}

// Options are what a Router is built from.
type Options struct {
	// Config is the router's configuration; without a Domain it takes
	// conf.Default's.
	Config  Config
	Store   storage.Store
	Cluster cluster.Cluster
	Logger  *slog.Logger
	// Hooks, when set, receives EventPresenceAvailable and
	// EventRosterChanged. Optional.
	Hooks *plugins.Hooks
	// Now returns the current time; tests fix it. Default time.Now.
	Now func() time.Time
	// Registry, when set, receives the router's metrics
	// (MetricRouteSeconds, MetricOutcomes). Optional.
	Registry prometheus.Registerer
}

// Router is the node's stanza router: the session registry, the RFC 6121
// delivery rules, the roster and presence logic, and the glue to the
// cluster routing table.
//
// Locking: mu guards the session registry and every field of every
// session record. It is never held while calling out (storage, cluster,
// plugins, Session methods), so no lock order exists beyond it.
type Router struct {
	// offlineRecheck is how long after a resource became available its
	// offline queue is looked at again (presence.go); tests that must
	// tell the recheck from the first look set it.
	offlineRecheck time.Duration
	// handlers gates the link handlers while the node stops (HandBack).
	handlers handlerGate

	cfg     Config
	domain  string
	node    string
	store   storage.Store
	cluster cluster.Cluster
	log     *slog.Logger
	hooks   *plugins.Hooks
	now     func() time.Time
	plugins *plugins.Manager
	fed     Federation
	m       *metrics
	custody *custody       // crash safety (custody.go)
	retry   *offlineRetry  // messages waiting for offline storage (offlineretry.go)
	handed  *offlineHanded // offline rows handed over, not deleted yet (offlinehand.go)
	iqs     *pendingIQs    // IQ requests out to other nodes' sessions (pendingiq.go)
	inbox   *linkInbox     // other nodes' stanzas for local sessions (inbox.go)
	// backlogRetryFirst and backlogRetryMax pace the reads of an online
	// user's offline queue after one failed (backlog.go retryBacklog).
	backlogRetryFirst, backlogRetryMax time.Duration
	// remoteWait is remoteAckWait; tests shorten it.
	remoteWait time.Duration

	mu       sync.RWMutex
	sessions map[string]*session   // full JID → local session record
	byBare   map[string][]*session // bare JID → local session records
}

// New returns a router. Plugins and Federation are set afterwards because
// they need the router themselves (the plugin Host routes through it).
// New registers the router's handlers on the cluster ("stanza", "kick",
// node-down and clustered-change callbacks), so call it before
// Cluster.Start.
func New(o Options) *Router {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Config.Domain == "" {
		o.Config = ConfigFrom(conf.Default())
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Router{
		offlineRecheck: offlineRecheck,
		cfg:            o.Config,
		domain:         o.Config.Domain,
		store:          o.Store,
		cluster:        o.Cluster,
		log:            o.Logger,
		hooks:          o.Hooks,
		now:            o.Now,
		m:              newMetrics(o.Registry),
		sessions:       map[string]*session{},
		byBare:         map[string][]*session{},
		handed:         newOfflineHanded(),
		inbox:          newLinkInbox(),
		remoteWait:     remoteAckWait,
	}
	r.iqs = newPendingIQs(r, o.Registry)
	if _, ok := o.Cluster.(syncCluster); ok {
		r.inbox.inline = true
	}
	if r.cluster != nil {
		r.node = r.cluster.NodeName()
		r.registerCluster()
	}
	r.custody = newCustody(r)
	r.custody.registerMetrics(o.Registry)
	r.retry = newOfflineRetry(r, o.Registry)
	r.backlogRetryFirst, r.backlogRetryMax = time.Second, 30*time.Second
	return r
}

// SetPlugins installs the plugin manager. Call before serving. A nil
// manager means no plugins.
func (r *Router) SetPlugins(m *plugins.Manager) { r.plugins = m }

// SetFederation installs s2s. Without it remote domains get
// remote-server-not-found.
func (r *Router) SetFederation(f Federation) { r.fed = f }

// Domain returns the served domain.
func (r *Router) Domain() string { return r.domain }

// FromClient routes a stanza a local session sent; the stream layer has
// already stamped its 'from'. It runs the PointInbound interceptors, then
// the client-side processing RFC 6121 asks for (presence broadcast,
// outbound subscriptions, roster, sent carbons) and routes the rest.
func (r *Router) FromClient(ctx context.Context, s Session, el *wire.Element) {
	defer observeSince(r.m.routeTimer(el.Name), time.Now())
	from := el.From()
	if from == "" {
		from = s.JID().String()
		el.SetAttr("from", from)
	}
	if el.Name == "message" {
		if ah, ok := s.(AckHolder); ok {
			// Copies that must reach a second node (custody.go), a
			// message waiting for offline storage (offlineretry.go) and
			// a plugin's durable write (plugins.HoldAck: the archive's
			// copies, the sender's at PointInbound) hold the session's
			// acknowledgement of this message. The routing's own
			// reference is released once, whatever the interceptors say.
			hs := &holdSrc{s: ah}
			r.fromClient(plugins.WithAckHolder(ctx, hs), from, el)
			hs.h.release()
			return
		}
	}
	r.fromClient(ctx, from, el)
}

func (r *Router) fromClient(ctx context.Context, from string, el *wire.Element) {
	if !r.intercept(ctx, plugins.PointInbound, el, from, true) {
		return
	}
	switch el.Name {
	case "presence":
		r.clientPresence(ctx, from, el)
	case "message":
		r.clientMessage(ctx, from, el)
	case "iq":
		r.clientIQ(ctx, from, el)
	default:
		r.m.dropped.Inc()
		r.log.Debug("router: dropping non-stanza from client", "from", from, "name", el.Name)
	}
}

// FromRemote routes a stanza that arrived over s2s (its 'from' checked by
// s2s). It runs the PointRemoteInbound interceptors first. A stanza for
// another domain is dropped: this server is no relay.
func (r *Router) FromRemote(ctx context.Context, el *wire.Element) {
	defer observeSince(r.m.routeTimer(el.Name), time.Now())
	if to := el.To(); to != "" {
		if a, err := wire.ParseJID(to); err == nil && a.Domain() != r.domain && !r.isService(a.Domain()) {
			r.m.dropped.Inc()
			r.log.Debug("router: dropping s2s stanza for another domain", "to", to, "from", el.From())
			return
		}
	}
	if !r.intercept(ctx, plugins.PointRemoteInbound, el, "", true) {
		return
	}
	r.route(ctx, el)
}

// Route delivers a stanza by its 'to', with its 'from' as given. Plugins
// and the router itself send through it.
func (r *Router) Route(ctx context.Context, el *wire.Element) {
	defer observeSince(r.m.routeTimer(el.Name), time.Now())
	r.route(ctx, el)
}

func (r *Router) route(ctx context.Context, el *wire.Element) {
	to := el.To()
	if to == "" {
		r.toServer(ctx, el)
		return
	}
	a, err := wire.ParseJID(to)
	if err != nil {
		r.bounce(ctx, el, wire.ErrJIDMalformed)
		return
	}
	switch {
	case a.Domain() != r.domain:
		if r.toService(ctx, el, a.Domain()) {
			return
		}
		r.toRemoteDomain(ctx, el)
	case a.Local() == "":
		r.toServer(ctx, el)
	default:
		r.toUser(ctx, el, a)
	}
}

// toUser applies the RFC 6121 §8.5 rules for a local account.
func (r *Router) toUser(ctx context.Context, el *wire.Element, a wire.JID) {
	switch el.Name {
	case "message":
		r.routeMessage(ctx, el, a)
	case "presence":
		r.routePresence(ctx, el, a)
	case "iq":
		r.routeIQ(ctx, el, a)
	}
}

// isService reports whether a plugin serves domain (plugins.Service).
func (r *Router) isService(domain string) bool {
	if r.plugins == nil {
		return false
	}
	_, ok := r.plugins.Service(domain)
	return ok
}

// toService hands a stanza to the plugin serving its 'to' domain and
// bounces what the plugin refuses. It reports false when no plugin serves
// the domain (it is another server's, for s2s).
func (r *Router) toService(ctx context.Context, el *wire.Element, domain string) bool {
	if r.plugins == nil {
		return false
	}
	svc, ok := r.plugins.Service(domain)
	if !ok {
		return false
	}
	r.m.service.Inc()
	if err := svc.Handle(ctx, el); err != nil {
		se, ok := err.(*wire.StanzaError)
		if !ok {
			r.log.Error("router: service failed", "domain", domain, "err", err)
			se = wire.ErrInternalServerError
		}
		r.bounce(ctx, el, se)
	}
	return true
}

// remoteAckWait bounds how long a message to another domain holds its
// sender's acknowledgement on s2s alone (acknowledgements are answered in
// order, so one held up holds up every later one): past it the message,
// still waiting in the s2s queue, is deposited with a buddy node as a
// local delivery is, and the buddy's receipt releases the
// acknowledgement (holdRemote). A stream is usually set up well within
// it; a remote domain that does not answer takes s2s.connect_timeout to
// bounce.
const remoteAckWait = 5 * time.Second

// holdRemote returns what s2s calls once it wrote el to the remote
// domain's stream or bounced it, for a message whose sender's
// acknowledgement h holds (a reference of its own). Before remoteWait
// that releases h. Past it, the message is deposited with a buddy
// (custody.keepLocal, which takes a reference on h that the buddy's
// receipt releases), and s2s's report drops the copy; if this
// node dies first, the buddy routes the message again through its own
// s2s. With no buddy, h is released at the bound: the message then has
// only this node, as without crash safety.
func (r *Router) holdRemote(h *hold, el *wire.Element) (settled func()) {
	var (
		mu      sync.Mutex
		settle  bool     // s2s reported
		receipt *Receipt // the deposited copy's, once made
	)
	// Once the timer has fired, t.Stop reports false and h is the timer's
	// to release, whatever s2s reports meanwhile.
	t := time.AfterFunc(r.remoteWait, func() {
		mu.Lock()
		if settle {
			mu.Unlock()
			h.release() // s2s reported as the timer fired: no copy needed
			return
		}
		mu.Unlock()
		rc, _ := r.custody.keepLocal(withHold(context.Background(), h), el.To(), el)
		// The deposit took a reference of its own on h (released when the
		// buddy has the copy); this one goes now. With no buddy there is
		// no copy, and h is released here.
		h.release()
		if rc == nil {
			return
		}
		mu.Lock()
		late := settle
		receipt = rc
		mu.Unlock()
		if late { // s2s reported while the copy was being made
			r.Release([]*Receipt{rc})
		}
	})
	return func() {
		mu.Lock()
		if settle {
			mu.Unlock()
			return
		}
		settle = true
		rc := receipt
		mu.Unlock()
		if t.Stop() {
			h.release() // within the bound: nothing else took h
			return
		}
		if rc != nil {
			r.Release([]*Receipt{rc}) // the copy is no longer needed
		}
		// Else the timer is making the copy (it releases it on seeing
		// settle); it released h either way.
	}
}

// toRemoteDomain hands a stanza to s2s, or bounces remote-server-not-found.
func (r *Router) toRemoteDomain(ctx context.Context, el *wire.Element) {
	if r.fed != nil {
		r.m.sentS2S.Inc()
		// Until the stream to the remote domain has it (a new stream
		// takes a connection, TLS and dialback first) only this process
		// does: the sender's acknowledgement waits, so a crash leaves the
		// message with its client, which sends it again.
		if nf, ok := r.fed.(NotifyingFederation); ok && r.custody.holdsRemote(el) {
			if h := holdFrom(ctx); h != nil {
				nf.SendNotify(ctx, el, r.holdRemote(h, el))
				return
			}
		}
		r.fed.Send(ctx, el)
		return
	}
	r.bounce(ctx, el, wire.ErrRemoteServerNotFound)
}

// toServer handles stanzas addressed to the domain itself (or to
// domain/resource): IQ get/set go to plugins, everything else is dropped
// or refused.
func (r *Router) toServer(ctx context.Context, el *wire.Element) {
	switch el.Name {
	case "iq":
		switch el.Type() {
		case "get", "set":
			if r.handleIQ(ctx, el, plugins.ToServer, r.domain) {
				return
			}
			r.bounce(ctx, el, wire.ErrServiceUnavailable)
		}
		// result and error to the server: nobody waits for them here.
	case "message":
		switch el.Type() {
		case "error", "headline", "groupchat":
		default:
			r.bounce(ctx, el, wire.ErrServiceUnavailable)
		}
	case "presence":
		// Presence to the server carries nothing for us (RFC 6121 §4.6.3
		// leaves it to the server; we ignore it).
	}
}

// handleIQ offers an IQ get/set to the plugins for target and routes the
// reply. It reports whether a plugin handled it.
func (r *Router) handleIQ(ctx context.Context, el *wire.Element, target plugins.Target, to string) bool {
	if r.plugins == nil {
		return false
	}
	from := el.From()
	fromLocal := false
	if a, err := wire.ParseJID(from); err == nil && a.Domain() == r.domain && a.Local() != "" {
		fromLocal = true
	}
	reply, ok := r.plugins.HandleIQ(ctx, &plugins.IQ{Stanza: el, From: from, FromLocal: fromLocal, To: to}, target)
	if !ok {
		return false
	}
	if reply != nil {
		if el.To() == "" {
			// The request had no 'to' (addressed to the account or the
			// server implicitly): answer from the same place.
			reply.RemoveAttr("from")
		}
		r.route(ctx, reply)
	}
	return true
}

// bounce answers a stanza that could not be delivered with an error,
// unless it is itself an error (never answer an error with an error), an
// IQ result, or has no sender.
func (r *Router) bounce(ctx context.Context, el *wire.Element, se *wire.StanzaError) {
	if el.IsError() || el.From() == "" || (el.Name == "iq" && el.Type() == "result") {
		r.m.dropped.Inc()
		return
	}
	r.m.bounced.Inc()
	reply := wire.ErrorReply(el, se)
	if reply.From() == "" {
		reply.SetAttr("from", r.domain)
	}
	r.route(ctx, reply)
}

// intercept runs the interceptors at p. It reports whether the stanza goes
// on; on an error at an inbound point the stanza is bounced with it.
func (r *Router) intercept(ctx context.Context, p plugins.Point, el *wire.Element, session string, bounceErr bool) bool {
	if r.plugins == nil {
		return true
	}
	v, err := r.plugins.Intercept(ctx, p, &plugins.Stanza{El: el, Session: session})
	if err != nil {
		if bounceErr {
			se, ok := err.(*wire.StanzaError)
			if !ok {
				se = wire.ErrInternalServerError
			}
			r.bounce(ctx, el, se)
		} else {
			r.m.dropped.Inc()
		}
		return false
	}
	if v == plugins.Drop {
		r.m.dropped.Inc()
	}
	return v == plugins.Continue
}

// Resources returns a local user's online resources, cluster-wide.
func (r *Router) Resources(ctx context.Context, bare string) ([]plugins.Resource, error) {
	routes, err := r.routes(ctx, bare)
	if err != nil {
		return nil, err
	}
	out := make([]plugins.Resource, 0, len(routes))
	for _, rt := range routes {
		out = append(out, plugins.Resource{
			JID:       rt.JID,
			Node:      rt.Node,
			Priority:  rt.Priority,
			Available: rt.Available,
			Carbons:   rt.Flags&cluster.FlagCarbons != 0,
		})
	}
	return out, nil
}

// SetCarbons turns message carbons on or off for one local session and
// republishes its route. It returns ErrNoSession when full is not bound on
// this node.
func (r *Router) SetCarbons(ctx context.Context, full string, on bool) error {
	r.mu.Lock()
	s := r.sessions[full]
	if s == nil {
		r.mu.Unlock()
		return ErrNoSession
	}
	s.carbons = on
	rt := s.routeLocked(r.node)
	r.mu.Unlock()
	return r.putRoute(ctx, rt)
}

// Kick closes every session of a bare JID, on every node, and returns how
// many it closed. Each is logged out at once (unavailable presence sent on
// its behalf); the session's own later Unbind only re-routes what it had
// queued.
func (r *Router) Kick(ctx context.Context, bare, reason string) int {
	n := 0
	r.mu.RLock()
	local := append([]*session(nil), r.byBare[bare]...)
	r.mu.RUnlock()
	for _, s := range local {
		if r.logout(ctx, s, nil) {
			s.s.Close("not-authorized", reason)
			n++
		}
	}
	if r.clustered() {
		cctx, cancel := r.clusterCtx(ctx)
		routes, err := r.cluster.Routes(cctx, bare)
		cancel()
		if err == nil {
			for _, rt := range routes {
				if rt.Node == r.node {
					continue
				}
				if r.kickRemote(ctx, rt, "not-authorized", reason) {
					n++
				}
			}
		}
	}
	return n
}

// LocalSessions returns the sessions bound on this node.
func (r *Router) LocalSessions() []Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s.s)
	}
	return out
}

// userExists reports whether the localpart names an account. Storage
// errors count as "exists" so that a flaky database never makes the server
// deny an account's existence; the caller's own storage call then reports
// the failure.
func (r *Router) userExists(ctx context.Context, local string) bool {
	exists, err := r.lookupUser(ctx, local)
	return exists || err != nil
}

// lookupUser reports whether the localpart names an account, or the
// error that kept the store from saying (never storage.ErrNotFound).
func (r *Router) lookupUser(ctx context.Context, local string) (bool, error) {
	if r.store == nil {
		return false, nil
	}
	dctx, cancel := r.dbCtx(ctx)
	defer cancel()
	_, err := r.store.GetUser(dctx, local)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// dbCtx bounds one storage call with the configured database timeout.
func (r *Router) dbCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := r.cfg.DatabaseTimeout
	if d <= 0 {
		d = 5 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// clusterCtx bounds one cluster operation (a routing-table read or write,
// a call to another node) by cluster.operation_timeout.
func (r *Router) clusterCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := r.cfg.Cluster.OperationTimeout
	if d <= 0 {
		d = 5 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

func (r *Router) fireHook(ctx context.Context, ev plugins.Event, payload any) {
	if r.hooks == nil {
		return
	}
	if err := r.hooks.Run(ctx, ev, payload); err != nil {
		r.log.Warn("router: hook failed", "event", ev, "err", err)
	}
}
