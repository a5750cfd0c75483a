package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aviary-im/aviary/admin/api"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/s2s"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/httplimit"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// errDraining is /readyz's reason while the node drains.
var errDraining = errors.New("the node is draining")

// Service runs, on one node, the admin listener (console, JSON API,
// /metrics, /healthz, /readyz) and publishes the node's stanza rates to
// the cluster. It is a server.Service: started after the node's core and
// its other services, stopped before them.
type Service struct {
	cfg *conf.Config
	// log is the node's logger. Each part names itself on it once
	// (component=admin, audit): slog's With repeats a key rather than
	// replacing it.
	log *slog.Logger
	// alog is log with component=admin, for the service's own lines.
	alog *slog.Logger
	deps Deps

	mu  sync.Mutex
	srv *http.Server
	api *api.Server
	ln  net.Listener
	// stopRates ends the goroutine publishing this node's stanza rates.
	stopRates context.CancelFunc
}

// Drainer is the node's balancing service (server/balance): the console
// drains a node through it, and /readyz answers 503 while it drains (a
// load balancer checking it stops sending clients here).
type Drainer interface {
	Drain(ctx context.Context) error
	Draining() bool
}

// Deps are the other services of the node the console reports on and
// acts through. Each may be nil: the console then says the part is not
// running on this node.
type Deps struct {
	// Logger is the node's logger, not one naming a component: the
	// console's parts add component=admin and component=audit themselves.
	Logger *slog.Logger
	// S2S reports the node's federation streams.
	S2S func() s2s.Stats
	// Balance drains the node.
	Balance Drainer
	// Plugins runs the node's third-party plugins.
	Plugins *pluginhost.Service
}

// NewService returns the admin service for cfg, reporting on and acting
// through deps.
func NewService(cfg *conf.Config, deps Deps) *Service {
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{cfg: cfg, log: log, alog: log.With("component", "admin"), deps: deps}
}

// Name names the service in logs.
func (s *Service) Name() string { return "admin" }

// Addr is the admin listener's address (nil when off or not started).
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Plugins returns the node's plugin host (nil when the node runs no
// plugin service, or it is not started).
func (s *Service) Plugins() *pluginhost.Host { return s.deps.Plugins.Host() }

// Start starts publishing the node's stanza rates and opens the admin
// listener (unless admin.listen is off).
func (s *Service) Start(ctx context.Context, n *server.Node) error {
	rates := NewRateMeter(stanzaCounter(n.Gatherer()))
	pctx, stopRates := context.WithCancel(context.WithoutCancel(ctx))
	go publishRates(pctx, n.Cluster(), rates, 2*time.Second)
	s.mu.Lock()
	s.stopRates = stopRates
	s.mu.Unlock()
	if conf.Off(s.cfg.Admin.Listen) {
		return nil
	}
	var drain func(context.Context) error
	if s.deps.Balance != nil {
		drain = s.deps.Balance.Drain
	}
	b := New(Options{Node: n, Plugins: s.Plugins(), S2S: s.deps.S2S, Drain: drain, Logger: s.log, Rates: rates})
	c2sMetrics := n.C2S().Metrics()
	a, err := api.New(api.Options{
		Config: s.cfg, Backend: b, Properties: n.Store(), Sessions: n.Store().KeyValue(api.SessionStore),
		Metrics: promhttp.HandlerFor(metricsGatherer(n.Gatherer(), newNodeCollector(n, s.Plugins)), promhttp.HandlerOpts{}),
		Ready: func(ctx context.Context) error {
			if s.deps.Balance != nil && s.deps.Balance.Draining() {
				return errDraining
			}
			return n.Store().Ping(ctx)
		},
		Throttle:     n.C2S().Auth(),
		SignInFailed: func() { c2sMetrics.AuthFailed(c2s.AuthViaConsole) },
		Logger:       s.log,
		Certificates: certificates{n},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", conf.ListenAddr(s.cfg.Admin.Listen))
	if err != nil {
		return fmt.Errorf("admin: listen %s (admin.listen): %w", s.cfg.Admin.Listen, err)
	}
	if s.cfg.Admin.MetricsToken == "" && !isLoopback(ln.Addr()) {
		s.alog.Warn("admin: /metrics is served without a token on a non-loopback address; set admin.metrics_token to require one", "addr", ln.Addr().String())
	}
	srv := adminLimits(s.cfg).Server(a)
	if s.cfg.Admin.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.Admin.CertFile, s.cfg.Admin.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin: admin.cert_file: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	s.mu.Lock()
	s.srv, s.api, s.ln = srv, a, ln
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.alog.Error("admin listener failed", "err", err)
		}
	}()
	s.alog.Info("admin console listening", "addr", ln.Addr().String())
	return nil
}

// adminLimits are what one request to the admin listener may cost: its
// headers within 10s, its body within admin.read_timeout and at most
// api.MaxBodyBytes (each route caps its own lower: 16 KiB to sign in,
// 1 MiB for the rest but plugin uploads), its response read within a
// minute, an idle connection kept two minutes.
func adminLimits(cfg *conf.Config) httplimit.Limits {
	return httplimit.Limits{
		ReadHeader:   10 * time.Second,
		ReadBody:     cfg.Admin.ReadTimeout,
		Write:        time.Minute,
		Idle:         2 * time.Minute,
		MaxBodyBytes: api.MaxBodyBytes,
	}
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Stop closes the listener and stops publishing rates.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, a, stopRates := s.srv, s.api, s.stopRates
	s.mu.Unlock()
	if stopRates != nil {
		stopRates()
	}
	var errs []error
	if srv != nil {
		errs = append(errs, srv.Shutdown(ctx))
		a.Close()
	}
	return errors.Join(errs...)
}

// metricsGatherer adds the Go, process and node collectors to the node's
// own metrics.
func metricsGatherer(g prometheus.Gatherer, node prometheus.Collector) prometheus.Gatherer {
	extra := prometheus.NewRegistry()
	extra.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}), node)
	return prometheus.Gatherers{g, extra}
}

// stanzaCounter sums the c2s stanza counters for the overview's rates.
func stanzaCounter(g prometheus.Gatherer) func() (float64, float64) {
	return func() (in, out float64) {
		mfs, err := g.Gather()
		if err != nil {
			return 0, 0
		}
		for _, mf := range mfs {
			var dst *float64
			switch mf.GetName() {
			case "aviary_c2s_stanzas_in_total":
				dst = &in
			case "aviary_c2s_stanzas_out_total":
				dst = &out
			default:
				continue
			}
			for _, m := range mf.GetMetric() {
				*dst += counterValue(m)
			}
		}
		return in, out
	}
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}
