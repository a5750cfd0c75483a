// Package server is the core of one Aviary node: the store, the cluster,
// the router, the plugins, the client stream layer and its listeners. New
// builds it; Start brings the parts up in order, then the services the
// node was built with (WithService), and Stop takes them down in reverse.
//
// The whole node that `aviary serve` runs (this core with federation,
// HTTP, balancing, third-party plugins and the admin console) is listed
// and built in one place, server/assembly; tests build a core with only
// the services they need.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/link"
	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/builtin"
	xep0092 "github.com/aviary-im/aviary/plugins/version"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/certs"
	"github.com/aviary-im/aviary/server/plugincluster"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/server/tlsticket"
	"github.com/aviary-im/aviary/server/tlsutil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
	"github.com/prometheus/client_golang/prometheus"
)

// Listener names for Node.Addr.
const (
	ListenerC2S    = "c2s"
	ListenerC2STLS = "c2s_tls"
)

// Service is an extra part of a node (HTTP connectors, s2s, admin...)
// started after the core and stopped before it, in registration order
// and reverse.
type Service interface {
	Name() string
	Start(ctx context.Context, n *Node) error
	Stop(ctx context.Context) error
}

// Option changes how New builds a node.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	registry prometheus.Registerer
	store    storage.Store
	cluster  cluster.Cluster
	plugins  []plugins.Plugin
	hasPlug  bool
	clock    auth.Clock
	tls      *tls.Config
	services []Service
	chores   time.Duration
	certOpts func(*certs.Options)
}

// WithChoreInterval sets how often the cluster-wide chores run (default
// an hour); tests shorten it.
func WithChoreInterval(d time.Duration) Option { return func(o *options) { o.chores = d } }

// WithLogger sets the node's logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegistry registers the node's metrics on reg (default: a private
// registry, see Node.Registry).
func WithRegistry(reg prometheus.Registerer) Option {
	return func(o *options) { o.registry = reg }
}

// WithStore uses an already opened store instead of opening one from the
// configuration. The node does not close it.
func WithStore(s storage.Store) Option { return func(o *options) { o.store = s } }

// WithCluster uses the given cluster instead of cluster/local.
func WithCluster(c cluster.Cluster) Option { return func(o *options) { o.cluster = c } }

// WithPlugins replaces the built-in plugin set.
func WithPlugins(list ...plugins.Plugin) Option {
	return func(o *options) { o.plugins, o.hasPlug = list, true }
}

// WithAuthClock sets the clock of authentication throttling (tests).
func WithAuthClock(c auth.Clock) Option { return func(o *options) { o.clock = c } }

// WithTLSConfig uses the given certificate configuration for every
// listener instead of the certificate manager's (Node.Certs still
// answers ACME challenges and lists the stored certificates).
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithCertOptions adjusts the certificate manager's options after the
// node has filled them in (tests shorten its timing knobs).
func WithCertOptions(fn func(*certs.Options)) Option {
	return func(o *options) { o.certOpts = fn }
}

// WithService adds a service started after the core.
func WithService(s Service) Option {
	return func(o *options) { o.services = append(o.services, s) }
}

// Node is one running Aviary node.
type Node struct {
	cfg      *conf.Config
	log      *slog.Logger
	registry prometheus.Registerer
	gatherer prometheus.Gatherer

	store    storage.Store
	ownStore bool
	cluster  cluster.Cluster
	links    *link.Node // the node's links to the other nodes; nil alone
	pnet     *plugincluster.Net
	hooks    *plugins.Hooks
	events   *pluginEvents
	router   *router.Router
	plugins  *plugins.Manager
	auth     *auth.Authenticator
	users    *auth.Users
	certs    *certs.Manager
	tls      *tls.Config
	// selfSigned: tls is the generated certificate in data_dir, which
	// Start extends with the service domains plugins claim.
	selfSigned bool
	listening  atomic.Bool // the listeners started: the certificate is served
	c2s        *c2s.Server
	services   []Service

	mu      sync.Mutex // serializes Start and Stop; held while services start
	cancel  context.CancelFunc
	stops   []func(context.Context) error
	running bool

	// lmu guards ctx and listeners only. Services call Addr and Context
	// from their Start, while mu is held, so those must not take mu.
	lmu       sync.Mutex
	ctx       context.Context
	listeners map[string]*c2s.Listener

	// live is cfg with the live settings changed since start (live.go);
	// liveMu serializes changes.
	live   atomic.Pointer[conf.Config]
	liveMu sync.Mutex
}

// New builds a node from cfg (defaults must be applied; conf.Load does it).
// It opens the store: PostgreSQL when database.url is set, otherwise the
// embedded SQLite file in data_dir. Nothing listens until Start.
func New(cfg *conf.Config, opts ...Option) (n *Node, err error) {
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.chores <= 0 {
		o.chores = choreInterval
	}
	n = &Node{cfg: cfg, log: o.logger, listeners: map[string]*c2s.Listener{}}
	// Certificates start last: ACME's first order needs the HTTP listener
	// (HTTP-01) of a service registered before.
	n.services = append(append([]Service{&chores{interval: o.chores}}, o.services...), &certService{})
	if o.registry == nil {
		reg := prometheus.NewRegistry()
		n.registry, n.gatherer = reg, reg
	} else {
		n.registry = o.registry
		if g, ok := o.registry.(prometheus.Gatherer); ok {
			n.gatherer = g
		}
	}

	n.store = o.store
	if n.store == nil {
		if n.store, err = OpenStore(context.Background(), cfg, n.log); err != nil {
			return nil, err
		}
		n.ownStore = true
	}
	// n is nil after a failing return; close through a copy.
	built := n
	defer func() {
		if err != nil && built.ownStore {
			_ = built.store.Close()
		}
	}()

	if n.certs, err = newCertManager(cfg, n.store, n.log, n.registry, o); err != nil {
		return nil, err
	}
	n.tls = o.tls
	if n.tls == nil {
		n.tls = n.certs.TLSConfig()
		// The fallback is the generated certificate, which Start names
		// the service domains in.
		n.selfSigned = cfg.TLS.CertFile == ""
		if err := sessionTickets(n.tls, cfg); err != nil {
			return nil, err
		}
	}

	n.cluster = o.cluster
	if n.cluster == nil && len(cfg.Cluster.Hazelcast) > 0 {
		// The links are the node's; Hazelcast says who is a member and
		// where its links listen.
		n.links = link.FromConfig(cfg.Cluster, n.log)
		hc, err := hazelcast.NewWithOptions(hazelcast.Options{Cluster: cfg.Cluster, Properties: n.store, Links: n.links, Logger: n.log, Version: xep0092.Version})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		n.cluster = hc
	}
	if n.cluster == nil {
		n.cluster = local.New(cfg.Cluster.NodeName)
	}
	n.pnet = plugincluster.New(n.cluster, cfg.Cluster.OperationTimeout, n.log)
	n.hooks = plugins.NewHooks()
	n.events = &pluginEvents{cluster: n.cluster, hooks: n.hooks, timeout: cfg.Cluster.OperationTimeout}
	if n.events.timeout <= 0 {
		n.events.timeout = 5 * time.Second
	}
	n.events.register()
	n.router = router.New(router.Options{Config: router.ConfigFrom(cfg), Store: n.store, Cluster: n.cluster, Logger: n.log, Hooks: n.hooks, Registry: n.registry})
	fakeSaltKey, err := n.fakeSaltKey()
	if err != nil {
		return nil, err
	}
	var fastTokens storage.KeyValue
	if f := cfg.C2S.FASTTokens; f == nil || *f {
		fastTokens = n.store.KeyValue(auth.FASTStore)
	}
	n.auth = auth.New(auth.Options{
		Tokens:          fastTokens,
		TokenLifetime:   cfg.C2S.FASTTokenLifetime,
		Store:           n.store,
		Domain:          cfg.Domain,
		Iterations:      cfg.C2S.SCRAMIterations,
		FakeSaltKey:     fakeSaltKey,
		FailureDelay:    cfg.C2S.SASLFailureDelay,
		AccountFailures: cfg.C2S.SASLAccountFailures,
		MaxAccountDelay: cfg.C2S.SASLMaxAccountDelay,
		Registerer:      n.registry,
		Clock:           o.clock,
		Logger:          n.log,
	})
	n.users = &auth.Users{
		Store:      n.store,
		Domain:     cfg.Domain,
		Iterations: cfg.C2S.SCRAMIterations,
		KickFunc:   n.router.Kick,
		Hooks:      n.hooks,
		FASTTokens: n.store.KeyValue(auth.FASTStore),
	}

	list := o.plugins
	if !o.hasPlug {
		list = builtin.New(cfg)
	}
	if errs := plugins.ValidateSettings(cfg, list); len(errs) > 0 {
		return nil, fmt.Errorf("server: configuration: %w", errs)
	}
	n.plugins = plugins.NewManager(&host{n: n}, n.log, list)
	n.router.SetPlugins(n.plugins)

	n.c2s = c2s.NewServer(c2s.Deps{
		Domain:          cfg.Domain,
		C2S:             cfg.C2S,
		DatabaseTimeout: cfg.Database.Timeout,
		Router:          n.router,
		Auth:            n.auth,
		Plugins:         n.plugins,
		TLS:             n.tls,
		Logger:          n.log,
		Metrics:         c2s.NewMetrics(n.registry),
		Hooks:           n.hooks,
		Cluster:         n.cluster,
	})
	return n, nil
}

// fakeSaltKey returns the key of unknown users' fake SCRAM salts, shared
// by every node on the store (auth.FakeSaltKey).
func (n *Node) fakeSaltKey() ([]byte, error) {
	pc, ok := n.store.(storage.PropertyCreator)
	if !ok && n.cfg.Cluster.Secret == "" {
		n.log.Warn("the store cannot create shared properties: fake SCRAM salts differ between nodes and restarts")
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Database.Timeout)
	defer cancel()
	key, err := auth.FakeSaltKey(ctx, n.cfg.Cluster.Secret, pc)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return key, nil
}

// OpenStore opens the store the configuration names: PostgreSQL for
// database.url (waiting for it, see openPostgres), else SQLite at data_dir/aviary.db (the directory is
// created).
func OpenStore(ctx context.Context, cfg *conf.Config, log *slog.Logger) (storage.Store, error) {
	if cfg.Database.URL != "" {
		return openPostgres(ctx, cfg, log)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: creating data_dir: %w", err)
	}
	s, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "aviary.db"))
	if err != nil {
		return nil, fmt.Errorf("server: opening the embedded store in data_dir: %w", err)
	}
	return s, nil
}

// Start brings the node up: cluster, plugins, client listeners, then the
// extra services. If a step fails, the steps already done are undone in
// reverse and the error is returned.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return errors.New("server: already started")
	}
	nctx, cancel := context.WithCancel(context.Background())
	n.lmu.Lock()
	n.ctx = nctx
	n.lmu.Unlock()
	n.cancel = cancel
	n.stops = nil
	defer func() {
		if err != nil {
			n.stopLocked(context.WithoutCancel(ctx))
		}
	}()
	if n.links != nil {
		// Closed after the cluster stopped (stops run in reverse).
		n.stops = append(n.stops, func(context.Context) error { return n.links.Close() })
	}
	if err := n.cluster.Start(ctx); err != nil {
		return fmt.Errorf("server: starting the cluster: %w", err)
	}
	n.stops = append(n.stops, n.cluster.Stop)
	n.pnet.Refresh()
	if err := n.plugins.Start(ctx); err != nil {
		return fmt.Errorf("server: starting plugins: %w", err)
	}
	n.stops = append(n.stops, n.plugins.Stop)
	// Stops run in reverse: once the sessions are gone and before the
	// plugins stop, stanzas other nodes send go back to them (router
	// HandBack), and messages waiting for offline storage get a last try
	// while the store and the cluster still run; the cluster and its links
	// stop after the plugins.
	n.router.HandBack(ctx, false)
	n.stops = append(n.stops, func(ctx context.Context) error {
		n.router.HandBack(ctx, true)
		n.router.StopOfflineRetry(ctx)
		return nil
	})
	if err := n.nameServices(); err != nil {
		return fmt.Errorf("server: certificate for the service domains: %w", err)
	}
	// Serve the stored certificates from the first handshake on.
	if err := n.certs.Reload(ctx); err != nil {
		n.log.Warn("certs: reading the stored certificates; serving the fallback until they can be read", "err", err)
	}
	n.listening.Store(true)
	n.stops = append(n.stops, func(context.Context) error { n.listening.Store(false); return nil })
	n.stops = append(n.stops, func(ctx context.Context) error { n.c2s.Shutdown(ctx); return nil })
	go n.c2s.Govern(nctx)
	for _, l := range []struct {
		name, addr string
		tls        bool
	}{
		{ListenerC2S, n.cfg.C2S.Listen, false},
		{ListenerC2STLS, n.cfg.C2S.TLSListen, true},
	} {
		if conf.Off(l.addr) {
			continue
		}
		ln, err := n.c2s.Listen(l.addr, l.tls)
		if err != nil {
			return fmt.Errorf("server: c2s listener %s: %w", l.addr, err)
		}
		ln.Start(nctx)
		n.lmu.Lock()
		n.listeners[l.name] = ln
		n.lmu.Unlock()
		n.stops = append(n.stops, ln.Stop)
		n.log.Info("listening", "listener", l.name, "addr", ln.Addr().String())
	}
	for _, s := range n.services {
		if err := s.Start(ctx, n); err != nil {
			return fmt.Errorf("server: starting %s: %w", s.Name(), err)
		}
		n.stops = append(n.stops, s.Stop)
	}
	n.running = true
	n.log.Info("aviary node started", "domain", n.cfg.Domain, "node", n.cluster.NodeName())
	return nil
}

// sessionsClosingTimeout bounds the plugins' goodbyes at Stop.
const sessionsClosingTimeout = 5 * time.Second

// Stop takes the node down in the reverse order of Start. Open sessions
// are closed with system-shutdown; detached stream-management sessions are
// unbound (their unacknowledged messages go offline).
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return nil
	}
	err := n.stopLocked(ctx)
	n.running = false
	if n.ownStore {
		if cerr := n.store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	n.log.Info("aviary node stopped")
	return err
}

func (n *Node) stopLocked(ctx context.Context) error {
	var errs []error
	if n.running {
		// The first step, before the node's context ends (it ends every
		// session): plugins say goodbye while sessions and federation
		// still run (group chat's 332 on the last node).
		cctx, cancel := context.WithTimeout(ctx, sessionsClosingTimeout)
		n.plugins.SessionsClosing(cctx)
		cancel()
	}
	if n.cancel != nil {
		n.cancel()
	}
	for i := len(n.stops) - 1; i >= 0; i-- {
		if err := n.stops[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	n.stops = nil
	n.lmu.Lock()
	n.listeners = map[string]*c2s.Listener{}
	n.lmu.Unlock()
	return errors.Join(errs...)
}

// nameServices runs once the plugins have started, before any listener
// serves the certificate: peers check a service domain's name in it
// (s2s), so the self-signed fallback gets a subjectAltName for each
// claimed domain (regenerated only when one is missing); when no
// certificate (ACME, imported, tls.cert_file) covers one, it is reported.
func (n *Node) nameServices() error {
	var names []string
	for _, s := range n.plugins.Services() {
		names = append(names, s.Domain)
	}
	if len(names) == 0 {
		return nil
	}
	if n.selfSigned {
		tc, err := tlsutil.SelfSignedWithNames(n.cfg, names)
		if err != nil {
			return err
		}
		c, err := certs.FromTLS(tc, tlsutil.SourceSelfSigned, n.cfg.Cluster.NodeName)
		if err != nil {
			return err
		}
		n.certs.SetFallback(c)
		return nil
	}
	for _, d := range names {
		n.warnUncovered(d)
	}
	return nil
}

// serviceClaimed is told of each service domain a plugin claims. Claims
// made while the node serves (a plugin started at run time) cannot change
// the certificate any more: one that does not cover the domain is logged.
func (n *Node) serviceClaimed(domain string) {
	if n.listening.Load() {
		n.warnUncovered(domain)
	}
}

func (n *Node) warnUncovered(domain string) {
	if !tlsutil.Covers(n.tls, n.cfg.Domain, domain) {
		n.log.Warn("the TLS certificate does not name a service domain; federated peers that check certificates will use dialback or refuse it",
			"domain", domain)
	}
}

// Addr returns a listener's bound address (ListenerC2S, ListenerC2STLS),
// or nil when it is off or the node is not started.
func (n *Node) Addr(name string) net.Addr {
	n.lmu.Lock()
	defer n.lmu.Unlock()
	if l := n.listeners[name]; l != nil {
		return l.Addr()
	}
	return nil
}

// Services returns the extra services the node was built with
// (WithService), in registration order: `aviary serve` asks them what a
// SIGTERM does.
func (n *Node) Services() []Service { return append([]Service(nil), n.services...) }

// Config returns the node's configuration.
func (n *Node) Config() *conf.Config { return n.cfg }

// Logger returns the node's logger.
func (n *Node) Logger() *slog.Logger { return n.log }

// Store returns the node's store.
func (n *Node) Store() storage.Store { return n.store }

// Cluster returns the node's cluster.
func (n *Node) Cluster() cluster.Cluster { return n.cluster }

// Router returns the node's router.
func (n *Node) Router() *router.Router { return n.router }

// Plugins returns the node's plugin manager.
func (n *Node) Plugins() *plugins.Manager { return n.plugins }

// Hooks returns the node's event bus.
func (n *Node) Hooks() *plugins.Hooks { return n.hooks }

// Users returns the node's account manager.
func (n *Node) Users() *auth.Users { return n.users }

// C2S returns the client stream server, which BOSH and WebSocket
// connectors hand their transports to (c2s.Server.Serve).
func (n *Node) C2S() *c2s.Server { return n.c2s }

// TLSConfig returns the node's certificate configuration: every listener
// uses it (or a clone), so certificates renewed or imported while the node
// runs are served without a restart.
func (n *Node) TLSConfig() *tls.Config { return n.tls }

// Certs returns the node's certificate manager: the stored certificates,
// ACME, and the HTTP-01 challenge handler for the HTTP listener.
func (n *Node) Certs() *certs.Manager { return n.certs }

// Registry returns where the node's metrics are registered.
func (n *Node) Registry() prometheus.Registerer { return n.registry }

// Gatherer returns the node's metrics for /metrics (nil when the registry
// passed to WithRegistry cannot gather).
func (n *Node) Gatherer() prometheus.Gatherer { return n.gatherer }

// Context is cancelled when the node stops; services derive from it.
func (n *Node) Context() context.Context {
	n.lmu.Lock()
	defer n.lmu.Unlock()
	if n.ctx == nil {
		return context.Background()
	}
	return n.ctx
}

// sessionTickets applies tls.session_tickets to the node's TLS
// configuration, before any listener clones it.
func sessionTickets(tc *tls.Config, cfg *conf.Config) error {
	switch cfg.TLS.SessionTickets {
	case "off":
		tc.SessionTicketsDisabled = true
	case "cluster":
		if cfg.Cluster.Secret == "" {
			return nil // crypto/tls's own keys: resumed on this node only
		}
		s, err := tlsticket.New(cfg.Cluster.Secret, nil)
		if err != nil {
			return fmt.Errorf("server: tls.session_tickets: %w", err)
		}
		s.Install(tc)
	}
	return nil
}
