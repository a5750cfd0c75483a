// Package httpd is the node's HTTP listener for web clients: BOSH at
// /http-bind (server/bosh), WebSocket at /xmpp-websocket
// (server/websocket), XEP-0156 discovery at /.well-known/host-meta and
// /.well-known/host-meta.json, and ACME HTTP-01 challenges at
// /.well-known/acme-challenge/ (server/certs, from the shared store, so
// any node answers for the one ordering). Sessions of both connectors are
// run by the c2s core (c2s.Server.Serve) through the transports in this package, so
// they are the same kind of session as TCP clients.
//
// A node starts it as a service:
//
//	n, err := server.New(cfg, server.WithService(httpd.NewService()))
//
// Security: HTTPS requests count as encrypted. Plain HTTP counts as
// encrypted according to http.plain_secure: "never", "loopback" (the
// default: a TLS-terminating proxy on the same host, and tests) or
// "always" (behind a TLS-terminating proxy elsewhere). With c2s.require_tls
// a session that is not encrypted cannot authenticate.
package httpd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/certs"
	"github.com/aviary-im/aviary/server/httplimit"
	"github.com/aviary-im/aviary/server/tlsutil"
	"github.com/aviary-im/aviary/server/websocket"
	"github.com/aviary-im/aviary/wire"
)

// Paths the server serves.
const (
	PathBOSH         = "/http-bind"
	PathWebSocket    = "/xmpp-websocket"
	PathHostMeta     = "/.well-known/host-meta"
	PathHostMetaJSON = "/.well-known/host-meta.json"
)

// Listener names for Addr (and the keys published in cluster.Member.ClientAddrs).
const (
	ListenerHTTP  = "http"
	ListenerHTTPS = "https"
)

// Link relations of XEP-0156.
const (
	relBOSH      = "urn:xmpp:alt-connections:xbosh"
	relWebSocket = "urn:xmpp:alt-connections:websocket"
)

// Streamer runs one client stream; *c2s.Server implements it.
type Streamer interface {
	Serve(ctx context.Context, t c2s.Transport) error
}

// Deps are what a Server needs from the node.
type Deps struct {
	// C2S runs the sessions. Required.
	C2S Streamer
	// Cluster forwards BOSH requests to the node owning their session.
	// Nil means one node.
	Cluster cluster.Cluster
	// TLS is the certificate configuration of the HTTPS listener; required
	// when http.tls_listen is on.
	TLS    *tls.Config
	Logger *slog.Logger
	// ACMEChallenges answers ACME HTTP-01 challenges at
	// /.well-known/acme-challenge/ (server/certs); nil leaves it out.
	ACMEChallenges http.Handler
	// Plugins serves every path the server does not serve itself
	// (plugins.Manager: XEP-0363 uploads); nil answers 404 there.
	Plugins http.Handler
}

// Config is the HTTP listener's part of the node's configuration.
type Config struct {
	Domain string
	HTTP   conf.HTTPConfig
	// MaxStanzaBytes is c2s.max_stanza_bytes: BOSH bodies and WebSocket
	// frames are bounded by it, as TCP stanzas are.
	MaxStanzaBytes int
}

// ConfigFrom takes the HTTP listener's part of a node's configuration.
func ConfigFrom(c *conf.Config) Config {
	return Config{Domain: c.Domain, HTTP: c.HTTP, MaxStanzaBytes: c.C2S.MaxStanzaBytes}
}

// Server is the HTTP listener of one node.
type Server struct {
	cfg  Config
	d    Deps
	log  *slog.Logger
	bosh *bosh.Manager
	ws   *websocket.Handler
	mux  *http.ServeMux

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	servers map[string]*http.Server
	addrs   map[string]net.Addr
}

// New builds the HTTP server; nothing listens until Start. It registers
// the BOSH forwarding handler with d.Cluster.
func New(cfg Config, d Deps) (*Server, error) {
	if d.C2S == nil {
		return nil, errors.New("httpd: no c2s server")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, d: d, log: d.Logger, servers: map[string]*http.Server{}, addrs: map[string]net.Addr{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	bo := bosh.FromConfig(cfg.Domain, cfg.HTTP, cfg.MaxStanzaBytes)
	bo.Cluster = d.Cluster
	bo.Logger = d.Logger
	bo.OnSession = s.runBOSH
	s.bosh = bosh.NewManager(bo)

	s.ws = websocket.NewHandler(websocket.Options{
		Domain:         cfg.Domain,
		MaxStanzaBytes: cfg.MaxStanzaBytes,
		PingInterval:   cfg.HTTP.WebSocketPingInterval,
		CORSOrigins:    cfg.HTTP.CORSOrigins,
		OnConn:         s.runWS,
		Logger:         d.Logger,
	})

	s.mux = http.NewServeMux()
	s.mux.HandleFunc(PathBOSH, s.serveBOSH)
	s.mux.HandleFunc(PathBOSH+"/", s.serveBOSH)
	s.mux.HandleFunc(PathWebSocket, s.serveWS)
	s.mux.HandleFunc(PathHostMeta, s.serveHostMeta)
	s.mux.HandleFunc(PathHostMetaJSON, s.serveHostMetaJSON)
	if d.ACMEChallenges != nil {
		s.mux.Handle(certs.PathHTTP01, d.ACMEChallenges)
	}
	return s, nil
}

// Handler returns the server's routes, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.mux }

// BOSH returns the BOSH session manager.
func (s *Server) BOSH() *bosh.Manager { return s.bosh }

// Start opens the configured listeners (http.listen, http.tls_listen).
func (s *Server) Start(ctx context.Context) error {
	for _, l := range []struct {
		name, addr string
		tls        bool
	}{
		{ListenerHTTP, s.cfg.HTTP.Listen, false},
		{ListenerHTTPS, s.cfg.HTTP.TLSListen, true},
	} {
		if conf.Off(l.addr) {
			continue
		}
		if l.tls && s.d.TLS == nil {
			s.Stop(ctx)
			return errors.New("httpd: http.tls_listen needs a certificate")
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", conf.ListenAddr(l.addr))
		if err != nil {
			s.Stop(ctx)
			return fmt.Errorf("httpd: listening on %s: %w", l.addr, err)
		}
		hs := s.limits().Server(s.mux)
		hs.Handler = s.withPlugins(hs.Handler)
		hs.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
		hs.BaseContext = func(net.Listener) context.Context { return s.ctx }
		if l.tls {
			tc := s.d.TLS.Clone()
			tc.NextProtos = []string{"http/1.1"} // WebSocket needs HTTP/1.1
			// The certificate presented on each connection is recorded for
			// a WebSocket's tls-server-end-point channel binding.
			ln = tls.NewListener(tlsutil.RecordingListener(ln), tlsutil.Recording(tc))
			hs.ConnContext = tlsutil.ConnContext
		}
		s.mu.Lock()
		s.servers[l.name] = hs
		s.addrs[l.name] = ln.Addr()
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("httpd: serving", "listener", l.name, "err", err)
			}
		}()
		s.log.Info("listening", "listener", l.name, "addr", ln.Addr().String())
	}
	return nil
}

// limits are what one request may cost (http.read_header_timeout,
// http.read_body_timeout, http.write_timeout, http.idle_timeout). Bodies
// are capped one byte above BOSH's own limit (c2s.max_stanza_bytes), so
// that BOSH still sees an oversized body and ends its session with
// policy-violation, while no route reads more. Held BOSH requests and
// WebSockets are not cut: see package httplimit.
func (s *Server) limits() httplimit.Limits {
	h := s.cfg.HTTP
	maxBody := s.cfg.MaxStanzaBytes
	if maxBody <= 0 {
		maxBody = wire.DefaultMaxStanzaBytes
	}
	return httplimit.Limits{
		ReadHeader:   h.ReadHeaderTimeout,
		ReadBody:     h.ReadBodyTimeout,
		Write:        h.WriteTimeout,
		Idle:         h.IdleTimeout,
		MaxBodyBytes: int64(maxBody) + 1,
	}
}

// withPlugins sends what no route of the server takes to the plugins
// (Deps.Plugins) without the server's body cap and deadlines: a file
// upload is far larger than a stanza and may take minutes, so the
// plugin bounds each read and write itself (plugins.HTTPHandler). The
// header timeout and size still apply.
func (s *Server) withPlugins(core http.Handler) http.Handler {
	if s.d.Plugins == nil {
		return core
	}
	plugins := httplimit.Limits{}.Handler(s.d.Plugins)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := s.mux.Handler(r); pattern == "" {
			plugins.ServeHTTP(w, r)
			return
		}
		core.ServeHTTP(w, r)
	})
}

// Stop closes the listeners and ends every BOSH and WebSocket session.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.servers = map[string]*http.Server{}
	s.addrs = map[string]net.Addr{}
	s.mu.Unlock()
	s.bosh.Close()
	s.cancel()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			hs.Close()
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// Addr returns a listener's bound address (ListenerHTTP, ListenerHTTPS),
// or nil when it is off or not started.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

// secure decides whether a request counts as encrypted (http.plain_secure).
func (s *Server) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	switch s.cfg.HTTP.PlainSecure {
	case "always":
		return true
	case "loopback":
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback()
	}
	return false
}

// remoteAddr is the client's address: the peer's, or, when the peer is a
// trusted proxy (loopback, or anyone with plain_secure "always"), the
// address the proxy appended to X-Forwarded-For. Authentication throttling
// counts failures per this address.
func (s *Server) remoteAddr(r *http.Request) string {
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 || r.TLS != nil {
		return r.RemoteAddr
	}
	trusted := s.cfg.HTTP.PlainSecure == "always"
	if !trusted {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip := net.ParseIP(host)
		trusted = ip != nil && ip.IsLoopback()
	}
	if !trusted {
		return r.RemoteAddr
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	last = strings.TrimSpace(last)
	if net.ParseIP(last) == nil {
		return r.RemoteAddr
	}
	return net.JoinHostPort(last, "0")
}

func (s *Server) serveBOSH(w http.ResponseWriter, r *http.Request) {
	s.bosh.ServeHTTPWithMeta(w, r, bosh.Meta{RemoteAddr: s.remoteAddr(r), Secure: s.secure(r)})
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.ws.ServeHTTPWith(w, r, s.secure(r), s.remoteAddr(r))
}

// runBOSH starts the c2s stream of a new BOSH session.
func (s *Server) runBOSH(sess *bosh.Session) {
	t := NewBOSHTransport(sess)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.d.C2S.Serve(s.ctx, t); err != nil {
			s.log.Debug("httpd: bosh session", "sid", sess.SID(), "err", err)
		}
		// The core closes the transport; make sure the session ends even if
		// it returned early.
		sess.Close(nil)
	}()
}

// runWS runs the c2s stream of a WebSocket connection until it ends.
func (s *Server) runWS(ctx context.Context, c *websocket.Conn) {
	s.wg.Add(1)
	defer s.wg.Done()
	sctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-sctx.Done():
		}
	}()
	if err := s.d.C2S.Serve(sctx, NewWSTransport(c)); err != nil {
		s.log.Debug("httpd: websocket session", "remote", c.RemoteAddr(), "err", err)
	}
}

// endpoints returns the public BOSH and WebSocket URLs: the configured
// ones, or ones derived from the request's Host and scheme.
func (s *Server) endpoints(r *http.Request) (boshURL, wsURL string) {
	secure := r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	host := r.Host
	if host == "" {
		host = s.cfg.Domain
	}
	scheme, wsScheme := "http", "ws"
	if secure {
		scheme, wsScheme = "https", "wss"
	}
	boshURL, wsURL = s.cfg.HTTP.BOSHURL, s.cfg.HTTP.WebSocketURL
	if boshURL == "" {
		boshURL = scheme + "://" + host + PathBOSH
	}
	if wsURL == "" {
		wsURL = wsScheme + "://" + host + PathWebSocket
	}
	return boshURL, wsURL
}

func hostMetaHeaders(w http.ResponseWriter, r *http.Request, ctype string) bool {
	h := w.Header()
	// XEP-0156 §3.2: host-meta is public; any origin may read it.
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return false
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "max-age=3600")
	return true
}

// serveHostMeta serves the XRD document of XEP-0156 (RFC 6415).
func (s *Server) serveHostMeta(w http.ResponseWriter, r *http.Request) {
	if !hostMetaHeaders(w, r, "application/xrd+xml; charset=utf-8") {
		return
	}
	b, ws := s.endpoints(r)
	var sb strings.Builder
	sb.WriteString("<?xml version='1.0' encoding='utf-8'?>\n")
	sb.WriteString("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n")
	for _, l := range [][2]string{{relBOSH, b}, {relWebSocket, ws}} {
		sb.WriteString("  <Link rel='" + l[0] + "' href='" + xmlAttrEscape(l[1]) + "'/>\n")
	}
	sb.WriteString("</XRD>\n")
	w.Write([]byte(sb.String()))
}

func xmlAttrEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;")
	return r.Replace(s)
}

// serveHostMetaJSON serves the JRD form of host-meta.
func (s *Server) serveHostMetaJSON(w http.ResponseWriter, r *http.Request) {
	if !hostMetaHeaders(w, r, "application/json") {
		return
	}
	b, ws := s.endpoints(r)
	type link struct {
		Rel  string `json:"rel"`
		Href string `json:"href"`
	}
	json.NewEncoder(w).Encode(struct {
		Links []link `json:"links"`
	}{[]link{{relBOSH, b}, {relWebSocket, ws}}})
}

// Service adapts Server to server.Service, so a node starts it after its
// core and stops it before: server.New(cfg, server.WithService(httpd.NewService())).
type Service struct {
	srv server.Running[*Server]
}

var _ server.Service = (*Service)(nil)

// NewService returns the HTTP service; it does nothing when both
// http.listen and http.tls_listen are off.
func NewService() *Service { return &Service{} }

// Name is "httpd".
func (sv *Service) Name() string { return "httpd" }

// Start builds the server from the node and opens its listeners.
func (sv *Service) Start(ctx context.Context, n *server.Node) error {
	cfg := n.Config()
	if conf.Off(cfg.HTTP.Listen) && conf.Off(cfg.HTTP.TLSListen) {
		return nil
	}
	srv, err := New(ConfigFrom(cfg), Deps{C2S: n.C2S(), Cluster: n.Cluster(), TLS: n.TLSConfig(), Logger: n.Logger(), ACMEChallenges: n.Certs().HTTPHandler(), Plugins: n.Plugins()})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	sv.srv.Set(srv)
	return nil
}

// Stop stops the server.
func (sv *Service) Stop(ctx context.Context) error { return sv.srv.Stop(ctx) }

// Server returns the running server, or nil.
func (sv *Service) Server() *Server {
	srv, _ := sv.srv.Get()
	return srv
}

// Addr returns a listener's address, or nil.
func (sv *Service) Addr(name string) net.Addr {
	if srv := sv.Server(); srv != nil {
		return srv.Addr(name)
	}
	return nil
}

// BOSHStats returns the node's BOSH counters; false while the HTTP
// listeners are off or not started.
func (sv *Service) BOSHStats() (bosh.Stats, bool) {
	if srv := sv.Server(); srv != nil {
		return srv.BOSH().Stats(), true
	}
	return bosh.Stats{}, false
}
