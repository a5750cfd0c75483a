package balance

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors.
var (
	// ErrNotRunning means the service has not been started (or has stopped).
	ErrNotRunning = errors.New("balance: not running")
)

// DefaultSweepInterval is how often a draining node looks for sessions
// left to move and checks whether it is empty.
const DefaultSweepInterval = 200 * time.Millisecond

// Service is the node's balancing part, a server.Service: it publishes
// the load, installs the admission check on the c2s server, mounts the
// dispatcher on the HTTP listener, and drains the node on request.
//
//	bal := balance.NewService(httpSvc, stopProcess)
//	server.New(cfg, server.WithService(httpSvc), server.WithService(bal))
//
// Register it after the httpd service so the dispatcher can be mounted.
type Service struct {
	// http is the node's HTTP service. When set and listening, /dispatch
	// and /dispatch/health are served on it, and its addresses are
	// published.
	http *httpd.Service
	// onDrained runs once, on its own goroutine, when a drain ended.
	onDrained func(Report)
	// SweepInterval overrides DefaultSweepInterval (tests).
	SweepInterval time.Duration

	mu       sync.Mutex
	n        *server.Node
	cfg      Config
	log      *slog.Logger
	policy   Policy
	members  []cluster.Member
	fetched  time.Time
	fetching bool               // a refresh of members is under way
	lastSoon time.Time          // the last publishSoon
	extra    map[string]float64 // load sent to nodes since their figures were fetched
	draining bool
	report   Report
	drained  chan struct{}
	ctx      context.Context // the loops' context, cancelled by Stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	metrics  *metrics
}

// Report describes a drain.
type Report struct {
	Node     string
	Started  time.Time
	Ended    time.Time
	Moved    int    // sessions sent to another node (see-other-host)
	Refused  int    // sessions closed with system-shutdown: nowhere to go
	Left     int    // sessions still open when the drain ended (deadline)
	Reason   string // "empty", "deadline", or "stopped" (the node stopped first)
	Finished bool
}

// Took is how long the drain took.
func (r Report) Took() time.Duration { return r.Ended.Sub(r.Started) }

var _ server.Service = (*Service)(nil)

// NewService returns the balancing service. web is the node's HTTP
// service: when it listens, the dispatcher (/dispatch, /dispatch/health)
// is served on it and its addresses are published; nil means neither.
// onDrained runs once, on its own goroutine, when a drain ended (the node
// is empty or the deadline passed): `aviary serve` makes it stop the
// process cleanly; nil does nothing more than report it (Drained).
func NewService(web *httpd.Service, onDrained func(Report)) *Service {
	return &Service{http: web, onDrained: onDrained, drained: make(chan struct{})}
}

// Name is "balance".
func (s *Service) Name() string { return "balance" }

// Start publishes the node's figures, installs admission on the c2s
// server, mounts the dispatcher and starts the publishing loop.
func (s *Service) Start(ctx context.Context, n *server.Node) error {
	cfg := ConfigFrom(n.Config())
	s.mu.Lock()
	s.n, s.cfg = n, cfg
	s.log = n.Logger().With("component", "balance")
	s.policy = Policy{TTL: cfg.NodeTTL, LoadThreshold: cfg.Balance.LoadThreshold, Weights: cfg.Balance.Weights}
	s.extra = map[string]float64{}
	// A node started again (in-process) starts undrained.
	s.draining, s.report = false, Report{}
	select {
	case <-s.drained:
		s.drained = make(chan struct{})
	default:
	}
	if s.metrics == nil {
		s.metrics = newMetrics(n.Registry())
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.ctx, s.cancel = lctx, cancel
	s.mu.Unlock()

	s.publish(ctx)
	n.C2S().SetAdmission(s.admit)
	n.C2S().SetShedTarget(s.shedTarget)
	n.C2S().OnShed(s.publishSoon)
	if s.http != nil {
		if srv := s.http.Server(); srv != nil {
			if mux, ok := srv.Handler().(*http.ServeMux); ok {
				mux.Handle(PathDispatch, s.DispatchHandler())
				mux.Handle(PathHealth, s.HealthHandler())
			}
		}
	}
	s.wg.Add(1)
	go s.publishLoop(lctx)
	return nil
}

// Stop ends the loops and removes the admission check.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	n, cancel := s.n, s.cancel
	s.mu.Unlock()
	if n == nil {
		return nil
	}
	n.C2S().SetAdmission(nil)
	n.C2S().SetShedTarget(nil)
	n.C2S().OnShed(nil)
	if cancel != nil {
		cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.n = nil
	s.mu.Unlock()
	return nil
}

func (s *Service) publishLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Balance.PublishInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.publish(ctx)
		}
	}
}

// Load is this node's load figure for a session count: sessions divided
// by c2s.max_sessions, or by balance.capacity when there is no limit.
func Load(cfg Config, sessions int) float64 {
	capacity := cfg.MaxSessions
	if capacity <= 0 {
		capacity = cfg.Balance.Capacity
	}
	if capacity <= 0 {
		return 0
	}
	return float64(sessions) / float64(capacity)
}

// selfLocked returns this node's current figures; pending is the number of
// open streams not to count (the stream being admitted).
func (s *Service) selfLocked(pending int) Self {
	n := s.n
	sessions := n.C2S().Active() - pending
	if sessions < 0 {
		sessions = 0
	}
	return Self{
		Name:        n.Cluster().NodeName(),
		Sessions:    sessions,
		MaxSessions: s.cfg.MaxSessions,
		Load:        Load(s.cfg, sessions),
		Draining:    s.draining,
		Shedding:    n.C2S().Shedding(),
	}
}

// publish writes this node's figures and refreshes the member cache.
func (s *Service) publish(ctx context.Context) {
	s.mu.Lock()
	n := s.n
	if n == nil {
		s.mu.Unlock()
		return
	}
	me := s.selfLocked(0)
	s.mu.Unlock()
	addrs := s.clientAddrs()
	n.Cluster().UpdateSelf(func(m *cluster.Member) {
		m.Sessions, m.Load, m.Draining, m.Shedding = me.Sessions, me.Load, me.Draining, me.Shedding
		if m.ClientAddrs == nil {
			m.ClientAddrs = map[string]string{}
		}
		for k, v := range addrs {
			if v == "" {
				delete(m.ClientAddrs, k)
			} else {
				m.ClientAddrs[k] = v
			}
		}
	})
	s.refresh(ctx)
}

// refresh re-reads the member list.
func (s *Service) refresh(ctx context.Context) {
	s.mu.Lock()
	n := s.n
	if n == nil || s.fetching {
		s.mu.Unlock()
		return
	}
	s.fetching = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.fetching = false
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OperationTimeout)
	members, err := n.Cluster().Members(ctx)
	cancel()
	if err != nil {
		s.log.Warn("balance: reading the member list", "err", err)
		return
	}
	s.mu.Lock()
	s.members, s.fetched = members, time.Now()
	s.extra = map[string]float64{}
	s.mu.Unlock()
}

// clientAddrs returns the addresses to publish: balance.*_address when
// set, else the bound listener address with a wildcard host replaced;
// "" removes a key (listener off).
func (s *Service) clientAddrs() map[string]string {
	cfg, n := s.cfg, s.n
	host := advertiseHost(cfg)
	out := map[string]string{}
	bound := func(a net.Addr) string {
		if a == nil {
			return ""
		}
		return publicAddr(a.String(), host)
	}
	pick := func(key, public string, a net.Addr, known bool) {
		switch {
		case public != "":
			out[key] = public
		case known:
			out[key] = bound(a)
		}
	}
	pick(AddrC2S, cfg.Balance.C2SAddress, n.Addr(server.ListenerC2S), true)
	pick(AddrC2STLS, cfg.Balance.C2STLSAddress, n.Addr(server.ListenerC2STLS), true)
	var httpAddr, httpsAddr net.Addr
	if s.http != nil {
		httpAddr, httpsAddr = s.http.Addr(httpd.ListenerHTTP), s.http.Addr(httpd.ListenerHTTPS)
	}
	pick(AddrHTTP, cfg.Balance.HTTPAddress, httpAddr, s.http != nil)
	pick(AddrHTTPS, cfg.Balance.HTTPSAddress, httpsAddr, s.http != nil)
	return out
}

// advertiseHost is the host that replaces a wildcard bind address: the
// host of cluster.advertise, else the machine's host name.
func advertiseHost(cfg Config) string {
	if h, _, err := net.SplitHostPort(cfg.Advertise); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			return h
		}
	}
	h, _ := os.Hostname()
	return h
}

// transportOf says how a stream reached this node.
func transportOf(n *server.Node, t c2s.Transport) Transport {
	switch tt := t.(type) {
	case *httpd.WSTransport:
		return TransportWebSocket
	case *httpd.BOSHTransport:
		return TransportBOSH
	case *c2s.TCPTransport:
		// Which listener took the connection: compare ports, since a
		// wildcard listener's address is not the connection's local one.
		if a := n.Addr(server.ListenerC2STLS); a != nil && tt.LocalAddr() != nil && samePort(tt.LocalAddr(), a) {
			return TransportC2STLS
		}
	}
	return TransportC2S
}

// perSession estimates the load one more session adds to m.
func (s *Service) perSessionLocked(node string) float64 {
	for _, m := range s.members {
		if m.Name == node && m.Sessions > 0 && m.Load > 0 {
			return m.Load / float64(m.Sessions)
		}
	}
	return Load(s.cfg, 1)
}

// decide runs the policy for one stream, counting a redirect against the
// target's load until the next refresh.
func (s *Service) decide(tr Transport, pending int) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		return Decision{}
	}
	d := s.policy.Decide(s.selfLocked(pending), s.members, tr, time.Now(), s.extra)
	if d.Node != "" {
		s.extra[d.Node] += s.perSessionLocked(d.Node)
	}
	return d
}

// admit is the c2s Admission: serve, redirect or refuse a new stream.
func (s *Service) admit(t c2s.Transport) *wire.Element {
	s.mu.Lock()
	n := s.n
	s.mu.Unlock()
	if n == nil {
		return nil
	}
	tr := transportOf(n, t)
	d := s.decide(tr, 1)
	switch {
	case d.Serve():
		return nil
	case d.Addr != "":
		s.metrics.redirects.WithLabelValues("new").Inc()
		s.log.Debug("balance: redirecting a new stream", "transport", string(tr), "to", d.Node, "addr", d.Addr)
		return c2s.SeeOtherHost(d.Addr)
	}
	s.metrics.refusals.WithLabelValues(d.Refuse).Inc()
	s.log.Debug("balance: refusing a new stream", "transport", string(tr), "condition", d.Refuse)
	return wire.StreamError(d.Refuse, refuseText(d.Refuse))
}

// shedTarget is the c2s ShedTarget: a stream this node sheds (over its
// admission rates) goes to the least loaded node that accepts clients,
// counted against that node like any redirect; nil when none does (the
// stream is refused with resource-constraint).
func (s *Service) shedTarget(t c2s.Transport) *wire.Element {
	s.mu.Lock()
	n := s.n
	if n == nil {
		s.mu.Unlock()
		return nil
	}
	tr := transportOf(n, t)
	m, ok := s.policy.Pick(s.members, tr, time.Now(), n.Cluster().NodeName(), s.extra)
	if ok {
		s.extra[m.Name] += s.perSessionLocked(m.Name)
	}
	s.mu.Unlock()
	if !ok {
		s.metrics.refusals.WithLabelValues(CondResourceConstraint).Inc()
		return nil
	}
	s.metrics.redirects.WithLabelValues("shed").Inc()
	return c2s.SeeOtherHost(RedirectAddr(m, tr))
}

// publishSoon publishes the figures now, at most once per
// minPublishGap: a node that starts shedding tells the cluster at once
// rather than at its next interval.
func (s *Service) publishSoon() {
	s.mu.Lock()
	ctx := s.ctx
	if ctx == nil || time.Since(s.lastSoon) < minPublishGap {
		s.mu.Unlock()
		return
	}
	s.lastSoon = time.Now()
	s.mu.Unlock()
	s.publish(ctx)
}

// minPublishGap spaces out the publications publishSoon asks for.
const minPublishGap = 250 * time.Millisecond

func refuseText(cond string) string {
	if cond == CondSystemShutdown {
		return "this node is shutting down and no other node can take the session"
	}
	return "every node is full"
}

// Draining reports whether the node is draining.
func (s *Service) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Drained is closed when a drain has ended.
func (s *Service) Drained() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drained
}

// Report returns the drain's figures so far.
func (s *Service) Report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.report
}

type metrics struct {
	redirects *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	drainSecs prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_balance_redirects_total",
			Help: "Client streams sent to another node with see-other-host: new streams (new), new streams this node shed over its admission rates (shed) and sessions moved by a drain (drain).",
		}, []string{"kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_balance_refusals_total",
			Help: "Client streams refused because no node could take them, by stream error condition.",
		}, []string{"condition"}),
		drainSecs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aviary_balance_drain_seconds",
			Help: "How long the last drain of this node took (0 before one ended).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.redirects, m.refusals, m.drainSecs} {
			_ = reg.Register(c)
		}
	}
	return m
}

func samePort(a, b net.Addr) bool {
	_, pa, err1 := net.SplitHostPort(a.String())
	_, pb, err2 := net.SplitHostPort(b.String())
	return err1 == nil && err2 == nil && pa == pb
}
