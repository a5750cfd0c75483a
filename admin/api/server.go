// Package api is the admin HTTP surface: the JSON API (described in
// openapi.yaml), the server-rendered console pages on top of the same
// handlers, /healthz and /readyz. Admins are accounts named in
// conf.AdminConfig.Admins signing in with their XMPP password (cookie
// session + CSRF token) or scripts with an API token (Bearer). Every
// action is written to the audit log.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/logsafe"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Options build a Server.
type Options struct {
	Config  *conf.Config
	Backend Backend
	// Properties stores API tokens (hashed), shared by the cluster.
	Properties storage.Properties
	// Sessions stores console sign-ins (hashed), shared by the cluster
	// (websession.go): the store's KeyValue(SessionStore). Required.
	Sessions storage.KeyValue
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Ready reports readiness for /readyz (nil: always ready).
	Ready func(ctx context.Context) error
	// Throttle slows password guessing at sign-in, by address and by
	// account (the node's *auth.Authenticator). Nil: one of the server's
	// own with c2s.sasl_failure_delay.
	Throttle SignInThrottle
	// SignInFailed counts a failed sign-in (the node counts it in
	// aviary_c2s_auth_failures_total{via="console"}). Optional.
	SignInFailed func()
	// Logger is the node's logger: the server adds component=admin, its
	// audit lines component=audit (slog's With repeats a key rather than
	// replacing it, so a logger that already names a component must not
	// be passed).
	Logger *slog.Logger
	// Certificates feeds GET /api/certificates and the certificates page;
	// nil leaves both out.
	Certificates CertificateSource
	// Rooms lists group chat rooms; nil: the rooms page and GET /api/rooms
	// say group chat does not run here.
	Rooms RoomSource
}

// Server is the admin HTTP handler.
type Server struct {
	cfg      *conf.Config
	backend  Backend
	tokens   tokens
	sessions *sessions
	audit    *auditLog
	metrics  http.Handler
	ready    func(ctx context.Context) error
	log      *slog.Logger
	mux      *http.ServeMux

	throttle     SignInThrottle
	gate         *signInGate
	signInFailed func()
	certs        CertificateSource
	rooms        RoomSource
}

// New returns the admin server. The audit log goes to DataDir/audit.log.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Sessions == nil {
		return nil, errors.New("api: Options.Sessions is required (the store's KeyValue(api.SessionStore))")
	}
	auditPath := ""
	if o.Config.DataDir != "" {
		auditPath = filepath.Join(o.Config.DataDir, "audit.log")
	}
	al, err := openAudit(auditPath, o.Logger.With("component", "audit"))
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: o.Config, backend: o.Backend, tokens: tokens{o.Properties},
		sessions: newSessions(o.Sessions, sessionTTL), audit: al, metrics: o.Metrics,
		ready: o.Ready, log: o.Logger.With("component", "admin"), mux: http.NewServeMux(),
		throttle: o.Throttle, gate: newSignInGate(), signInFailed: o.SignInFailed,
		certs: o.Certificates, rooms: o.Rooms,
	}
	if s.throttle == nil {
		s.throttle = newDefaultThrottle(o.Config.C2S.SASLFailureDelay)
	}
	s.routes()
	return s, nil
}

// Close releases the audit log.
func (s *Server) Close() error { return s.audit.close() }

// ServeHTTP checks Host and Origin, then dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	if !safeMethod(r.Method) && !s.sameOrigin(r) {
		writeError(w, errForbidden("cross-origin request refused"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// sameOrigin refuses browser requests from other origins (CSRF defence in
// depth, in addition to the token). Requests without Origin (curl, the CLI)
// pass: they cannot carry a victim's cookie.
func (s *Server) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	return strings.EqualFold(o, r.Host)
}

// Request body caps. A sign-in is a name and a password (at most 1024
// bytes); every other call but a plugin upload is a small JSON object or
// form. The listener caps every body at MaxBodyBytes; MaxBodyBytes is the
// largest of these.
const (
	maxLoginBody  = 16 << 10
	maxBody       = 1 << 20
	maxUploadBody = 64 << 20
	// MaxBodyBytes is the largest body any route reads (a plugin upload
	// with its form framing); the listener caps bodies at it.
	MaxBodyBytes = maxUploadBody + 1<<20
)

// action is an authenticated, audited API handler.
type action func(ctx context.Context, p *principal, r *http.Request) (any, *APIError)

// handle mounts an action whose body is at most maxBody bytes.
func (s *Server) handle(pattern, name string, fn action) {
	s.handleBody(pattern, name, maxBody, fn)
}

func (s *Server) handleBody(pattern, name string, limit int64, fn action) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		p, aerr := s.authenticate(r)
		if aerr != nil {
			if !safeMethod(r.Method) {
				s.audit.write(AuditEntry{Action: name, Target: r.URL.Path, Result: aerr.Message, Remote: remote(r)})
			}
			writeError(w, aerr)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		out, aerr := fn(ctx, p, r)
		if !safeMethod(r.Method) {
			res := "ok"
			if aerr != nil {
				res = aerr.Message
			}
			s.audit.write(AuditEntry{Admin: p.Admin, Via: p.Via, Action: name, Target: r.URL.Path, Result: res, Remote: remote(r)})
		}
		if aerr != nil {
			if aerr.err != nil {
				s.log.Error("admin api", "action", name, "err", aerr.err)
			}
			writeError(w, aerr)
			return
		}
		if out == nil {
			out = map[string]string{"result": "ok"}
		}
		if wh, ok := out.(withHeaders); ok {
			for k, v := range wh.h {
				w.Header()[k] = v
			}
			out = wh.body
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func remote(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": s.backend.NodeName()})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if err := s.ready(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if s.metrics != nil {
		s.mux.Handle("GET /metrics", s.metricsAuth(s.metrics))
	}
	if s.cfg.Admin.Profiling {
		s.handleProfiles()
	}
	s.mux.HandleFunc("POST /api/login", s.handleLogin)
	s.handle("POST /api/logout", "logout", s.apiLogout)
	s.handle("GET /api/whoami", "whoami", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		return map[string]string{"admin": p.Admin, "via": p.Via, "csrf": p.CSRF}, nil
	})
	s.handle("POST /api/tokens", "token.create", s.apiCreateToken)
	s.handle("GET /api/overview", "overview", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		o, err := s.backend.Overview(ctx)
		return wrap(o, err)
	})
	s.handle("GET /api/nodes", "nodes", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		n, err := s.backend.Nodes(ctx)
		return wrap(n, err)
	})
	s.handle("GET /api/cluster", "cluster", s.apiCluster)
	s.handle("POST /api/cluster/enable", "cluster.enable", s.apiClusterSwitch(true))
	s.handle("POST /api/cluster/disable", "cluster.disable", s.apiClusterSwitch(false))
	s.handle("POST /api/nodes/{node}/drain", "node.drain", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		return wrap(nil, s.backend.Drain(ctx, r.PathValue("node")))
	})
	s.handle("GET /api/users", "users.list", s.apiListUsers)
	s.handle("POST /api/users", "users.create", s.apiCreateUser)
	s.handle("DELETE /api/users/{user}", "users.delete", s.apiDeleteUser)
	s.handle("POST /api/users/{user}/password", "users.password", s.apiSetPassword)
	s.handle("GET /api/sessions", "sessions.list", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		ss, err := s.backend.Sessions(ctx)
		return wrap(ss, err)
	})
	s.handle("DELETE /api/sessions/{jid}", "sessions.kick", s.apiKick)
	s.handle("GET /api/s2s", "s2s.list", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		ss, err := s.backend.S2S(ctx)
		return wrap(ss, err)
	})
	s.handle("GET /api/plugins", "plugins.list", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		ps, err := s.backend.Plugins(ctx)
		return wrap(ps, err)
	})
	s.handleBody("POST /api/plugins/{name}/{version}", "plugins.upload", maxUploadBody, s.apiUploadPlugin)
	s.handle("POST /api/plugins/{name}/{version}/enable", "plugins.enable", s.apiPluginEnabled(true))
	s.handle("POST /api/plugins/{name}/{version}/disable", "plugins.disable", s.apiPluginEnabled(false))
	s.handle("POST /api/plugins/{name}/upgrade", "plugins.upgrade", s.apiStartUpgrade)
	s.handle("GET /api/upgrade", "plugins.upgrade.status", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		u, err := s.backend.Upgrade(ctx)
		return wrap(u, err)
	})
	s.handle("GET /api/audit", "audit", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		return s.audit.recent(), nil
	})
	s.handle("GET /api/certificates", "certificates", s.apiCertificates)
	s.consoleRoutes()
	s.pluginRoutes()
	s.pageRoutes()
	s.consolePages()
	s.certificatePage()
}

func wrap(v any, err error) (any, *APIError) {
	if err != nil {
		return nil, toAPIError(err)
	}
	return v, nil
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// handleLogin signs an admin in. JSON in, JSON out; the console's form posts
// here too (pages.go) through the same signIn.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	var req loginRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Username == "" || req.Password == "" {
		writeError(w, errBadRequest("username and password are required"))
		return
	}
	bare, aerr := s.signInLimited(r.Context(), remote(r), req.Username, req.Password)
	if aerr != nil {
		s.auditSignInFailure(r, "", req.Username, aerr)
		retryAfter(w, aerr)
		writeError(w, aerr)
		return
	}
	id, csrf, err := s.sessions.create(r.Context(), bare)
	if err != nil {
		s.log.Error("admin sign-in: storing the session", "err", err)
		writeError(w, toAPIError(err))
		return
	}
	s.setSessionCookies(w, r, id, csrf)
	s.audit.write(AuditEntry{Admin: bare, Via: "password", Action: "login", Result: "ok", Remote: remote(r)})
	writeJSON(w, http.StatusOK, map[string]string{"admin": bare, "csrf": csrf})
}

// auditSignInFailure writes a refused sign-in to the audit log, except
// one refused by the rate limits: those are refused before any password
// check, as fast as a client can send them, and would fill the log.
func (s *Server) auditSignInFailure(r *http.Request, via, username string, aerr *APIError) {
	if aerr.Status == http.StatusTooManyRequests {
		s.log.Debug("admin sign-in refused: too many attempts", "remote", remote(r), "admin", logsafe.Clip(username, 0))
		return
	}
	s.audit.write(AuditEntry{Admin: username, Via: via, Action: "login", Result: aerr.Message, Remote: remote(r)})
}

func (s *Server) setSessionCookies(w http.ResponseWriter, r *http.Request, id, csrf string) {
	secure := r.TLS != nil
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: csrf, Path: "/", Secure: secure, SameSite: http.SameSiteStrictMode})
}

func (s *Server) apiLogout(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	if p.Cookie != "" {
		s.sessions.delete(ctx, p.Cookie)
	}
	return nil, nil
}

func (s *Server) apiCreateToken(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Name) == "" {
		return nil, errBadRequest("name is required: say what the token is for")
	}
	tok, err := s.tokens.issue(ctx, p.Admin, req.Name)
	if err != nil {
		return nil, toAPIError(err)
	}
	return map[string]string{"token": tok, "name": req.Name}, nil
}

func (s *Server) apiCluster(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	on, err := s.backend.ClusterEnabled(ctx)
	if err != nil {
		return nil, toAPIError(err)
	}
	nodes, err := s.backend.Nodes(ctx)
	if err != nil {
		return nil, toAPIError(err)
	}
	return map[string]any{"enabled": on, "nodes": nodes}, nil
}

func (s *Server) apiClusterSwitch(on bool) action {
	return func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		if err := s.backend.SetClusterEnabled(ctx, on); err != nil {
			return nil, toAPIError(err)
		}
		return map[string]bool{"enabled": on}, nil
	}
}

func (s *Server) apiListUsers(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	q := r.URL.Query()
	limit, aerr := intParam(q.Get("limit"), 50, 1, 1000, "limit")
	if aerr != nil {
		return nil, aerr
	}
	offset, aerr := intParam(q.Get("offset"), 0, 0, 1<<30, "offset")
	if aerr != nil {
		return nil, aerr
	}
	users, total, err := s.backend.ListUsers(ctx, q.Get("q"), limit, offset)
	if err != nil {
		return nil, toAPIError(err)
	}
	if users == nil {
		users = []string{}
	}
	return map[string]any{"users": users, "total": total, "limit": limit, "offset": offset}, nil
}

func intParam(s string, def, min, max int, name string) (int, *APIError) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, errBadRequest("%s must be a number from %d to %d", name, min, max)
	}
	return n, nil
}

type userRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// usernameOK accepts what nodeprep accepts as a localpart; the store
// normalises, this gives a clear message for the obvious mistakes.
var usernameOK = regexp.MustCompile(`^[^@/\s"&'<>:]+$`)

func validUser(name string) *APIError {
	if !usernameOK.MatchString(name) {
		return errBadRequest("username %q is not a valid localpart (no @ / : spaces quotes or angle brackets)", name)
	}
	if _, err := wire.NewJID(name, "example.com", ""); err != nil {
		return errBadRequest("username %q is not a valid localpart: %v", name, err)
	}
	return nil
}

func validPassword(pw string) *APIError {
	if len(pw) < 6 {
		return errBadRequest("password must be at least 6 characters")
	}
	if len(pw) > 1024 {
		return errBadRequest("password must be at most 1024 characters")
	}
	return nil
}

func (s *Server) apiCreateUser(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	var req userRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if e := validUser(req.Username); e != nil {
		return nil, e
	}
	if e := validPassword(req.Password); e != nil {
		return nil, e
	}
	if err := s.backend.CreateUser(ctx, req.Username, req.Password); err != nil {
		return nil, toAPIError(err)
	}
	return map[string]string{"username": req.Username}, nil
}

func (s *Server) apiDeleteUser(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	user := r.PathValue("user")
	if e := validUser(user); e != nil {
		return nil, e
	}
	return wrap(nil, s.backend.DeleteUser(ctx, user))
}

func (s *Server) apiSetPassword(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	user := r.PathValue("user")
	if e := validUser(user); e != nil {
		return nil, e
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if e := validPassword(req.Password); e != nil {
		return nil, e
	}
	return wrap(nil, s.backend.SetPassword(ctx, user, req.Password))
}

func (s *Server) apiKick(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	full, aerr := s.sessionJID(r.PathValue("jid"))
	if aerr != nil {
		return nil, aerr
	}
	ok, err := s.backend.Kick(ctx, full)
	if err != nil {
		return nil, toAPIError(err)
	}
	if !ok {
		return nil, errNotFound("no such session")
	}
	return map[string]string{"kicked": full}, nil
}

// sessionJID returns the full JID of a client session of this domain, or
// a 400 saying what it must look like. Anything else (a path such as
// ..%2f..%2f parses as the full JID "./../") reached the routing table and
// failed there with 500.
func (s *Server) sessionJID(full string) (string, *APIError) {
	dom := s.backend.Domain()
	j, err := wire.ParseJID(full)
	if err != nil || j.Local() == "" || j.Resource() == "" || !strings.EqualFold(j.Domain(), dom) {
		return "", errBadRequest("%q is not the full JID of a session on %s (user@%s/resource)", logsafe.Clip(full, 0), dom, dom)
	}
	return j.String(), nil
}

var versionOK = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$`)
var pluginNameOK = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,63}$`)

func validPlugin(name, version string) *APIError {
	if !pluginNameOK.MatchString(name) {
		return errBadRequest("plugin name %q must be lowercase letters, digits, '.', '_' or '-'", name)
	}
	if version != "" && !versionOK.MatchString(version) {
		return errBadRequest("version %q is not a version such as 1.2.0", version)
	}
	return nil
}

func (s *Server) apiUploadPlugin(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	name, version := r.PathValue("name"), r.PathValue("version")
	if e := validPlugin(name, version); e != nil {
		return nil, e
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, bodyError("reading the artifact", err)
	}
	if len(body) < 8 || string(body[:4]) != "\x00asm" {
		return nil, errBadRequest("the artifact must be a WebAssembly module (body starts with \\0asm)")
	}
	return wrap(map[string]string{"name": name, "version": version}, s.backend.UploadPlugin(ctx, name, version, body))
}

func (s *Server) apiPluginEnabled(on bool) action {
	return func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		name, version := r.PathValue("name"), r.PathValue("version")
		if e := validPlugin(name, version); e != nil {
			return nil, e
		}
		if err := s.backend.SetPluginEnabled(ctx, name, version, on); err != nil {
			return nil, toAPIError(err)
		}
		return s.pluginEntry(ctx, name, version)
	}
}

func (s *Server) apiStartUpgrade(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	name := r.PathValue("name")
	var req struct {
		Version string `json:"version"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Version == "" {
		return nil, errBadRequest("version is required")
	}
	if e := validPlugin(name, req.Version); e != nil {
		return nil, e
	}
	return wrap(nil, s.backend.StartUpgrade(ctx, name, req.Version))
}

// decodeJSON reads a JSON body strictly: unknown fields are errors.
func decodeJSON(r *http.Request, v any) *APIError {
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errBadRequest("Content-Type must be application/json")
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError("invalid JSON body", err)
	}
	return nil
}

// bodyError is the answer to a body that could not be read or parsed:
// 413 past its cap, 408 when it did not arrive within admin.read_timeout,
// else 400 saying what went wrong.
func bodyError(what string, err error) *APIError {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return &APIError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body too large (at most %d bytes)", mbe.Limit)}
	case errors.As(err, &ne) && ne.Timeout():
		return &APIError{Status: http.StatusRequestTimeout, Message: "request body not received in time"}
	}
	return errBadRequest("%s: %v", what, err)
}
