package c2s

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/tlsutil"
	"github.com/aviary-im/aviary/wire"
)

// DefaultMaxPendingBytes caps what one session may have queued plus
// unacknowledged before it is closed as a slow consumer.
const DefaultMaxPendingBytes = 4 << 20

// Deps are what a Server is built from. Domain, Router and Auth are
// required. It takes only its own part of the configuration: the domain,
// the c2s section and the database timeout its store calls are bounded by.
type Deps struct {
	Domain string
	C2S    conf.C2SConfig
	// DatabaseTimeout is database.timeout (the bound of a store call);
	// the session's own waits for the store allow it plus a margin.
	DatabaseTimeout time.Duration
	Router          Router
	Auth            *auth.Authenticator
	// Plugins contributes stream features and answers pre-auth
	// registration IQs (XEP-0077). Nil means none.
	Plugins *plugins.Manager
	// TLS is the server certificate configuration. Nil means no STARTTLS
	// (and, with RequireTLS, no authentication on plain TCP).
	TLS    *tls.Config
	Logger *slog.Logger
	// Metrics may be nil (nothing counted).
	Metrics *Metrics
	// MaxPendingBytes overrides DefaultMaxPendingBytes.
	MaxPendingBytes int
	// Cluster, when set, lets a stream-management resumption take over a
	// session detached on another node (handover.go).
	Cluster cluster.Cluster
	// Hooks, when set, receives plugins.EventSessionBound after a resource
	// is bound and plugins.EventSessionClosed after a bound session ended
	// (unbound from the router), both with a *plugins.SessionEvent.
	Hooks *plugins.Hooks
}

// Server holds what every client session of a node shares: the
// dependencies and the table of stream-management sessions that can be
// resumed. One Server serves every connector (TCP, BOSH, WebSocket).
type Server struct {
	d Deps
	// baseTLS is Deps.TLS as given; d.TLS records the certificate chosen
	// for each connection (channel.go).
	baseTLS   *tls.Config
	active    atomic.Int64
	admission atomic.Pointer[Admission] // see SetAdmission
	preAuth   preAuthTable              // see preauth.go
	// gate paces and sheds new streams (gate.go); shedTarget names where
	// shed streams go (SetShedTarget).
	gate       *gate
	shedTarget atomic.Pointer[ShedTarget]
	// fdSessions is the session limit the open-file limit allows, for a
	// node without c2s.max_sessions (fdlimit.go).
	fdSessions int

	mu        sync.Mutex
	streams   map[*Session]struct{} // every stream being served (see RedirectUnbound)
	resumable map[string]*Session   // SM ID → session with resumption enabled
	// handedOver: SM ID → timer routing again the stanzas of a session
	// handed to another node, stopped when that node confirms.
	handedOver map[string]*handedOver
}

// NewServer returns a Server for the given dependencies.
func NewServer(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.MaxPendingBytes <= 0 {
		d.MaxPendingBytes = DefaultMaxPendingBytes
	}
	base := d.TLS
	d.TLS = tlsutil.Recording(base)
	srv := &Server{d: d, baseTLS: base, gate: newGate(d.C2S), resumable: map[string]*Session{}, streams: map[*Session]struct{}{}}
	if d.C2S.MaxSessions <= 0 {
		nofile := openFileLimit()
		if srv.fdSessions = sessionsForFDs(nofile); srv.fdSessions > 0 {
			d.Logger.Info("c2s.max_sessions is not set: sessions are limited by the open-file limit",
				"max_sessions", srv.fdSessions, "RLIMIT_NOFILE", nofile)
		}
	}
	srv.registerHandover()
	return srv
}

func (srv *Server) maxPending() int { return srv.d.MaxPendingBytes }

// Auth is the authenticator of every client session. The admin console
// signs in through its throttle too, so guesses over either count together.
func (srv *Server) Auth() *auth.Authenticator { return srv.d.Auth }

// Metrics are the client metrics (nil when none are kept); the admin
// console counts its failed sign-ins in them.
func (srv *Server) Metrics() *Metrics { return srv.d.Metrics }

// TLSConfig is the certificate configuration connectors use for direct TLS.
func (srv *Server) TLSConfig() *tls.Config { return srv.d.TLS }

// Active returns how many client streams are open on this node.
func (srv *Server) Active() int { return int(srv.active.Load()) }

// Serve runs one client stream on t; see the package documentation and
// Transport. It returns when the session is over (or detached, waiting for
// a stream-management resumption).
func (srv *Server) Serve(ctx context.Context, t Transport) error {
	srv.active.Add(1)
	defer srv.active.Add(-1)
	kind := transportKind(t)
	srv.d.Metrics.open(kind)
	c := srv.d.C2S
	addrRelease, ok := srv.preAuth.enter(t.RemoteAddr(), c.MaxUnauthenticatedPerAddress)
	// The stream is in the accept queue until it authenticates or ends.
	srv.gate.negotiating.Add(1)
	srv.d.Metrics.negotiatingAdd(1)
	var once sync.Once
	release := func() {
		once.Do(func() {
			addrRelease()
			srv.gate.negotiating.Add(-1)
			srv.d.Metrics.negotiatingAdd(-1)
		})
	}
	defer release()
	if l, can := t.(stanzaLimiter); can {
		l.SetMaxStanzaBytes(min(c.PreAuthMaxStanzaBytes, c.MaxStanzaBytes))
	}
	s := srv.newSession(ctx, t)
	s.preAuthRelease, s.preAuthOver = release, !ok
	first := s
	srv.mu.Lock()
	srv.streams[first] = struct{}{}
	srv.mu.Unlock()
	var reason CloseReason
	for s != nil {
		var next *Session
		next, reason = s.run()
		s = next
	}
	srv.mu.Lock()
	delete(srv.streams, first)
	srv.mu.Unlock()
	srv.d.Metrics.closed(kind, reason)
	return nil
}

// Shutdown ends every detached session (their unacknowledged stanzas are
// re-routed). Live sessions end when their Serve context is cancelled.
func (srv *Server) Shutdown(ctx context.Context) {
	srv.mu.Lock()
	var list []*Session
	for _, s := range srv.resumable {
		list = append(list, s)
	}
	srv.mu.Unlock()
	for _, s := range list {
		s.mu.Lock()
		detached := s.detached
		s.mu.Unlock()
		if detached {
			s.expire(ReasonShutdown)
		}
	}
}

// RedirectUnbound ends, with the stream error choose returns for its
// transport (see-other-host, system-shutdown), every stream that has not
// bound a resource: still negotiating, it has nothing in the router and
// nothing to lose. A draining node calls it so that a client that opened a
// stream and never authenticated does not keep the drain waiting until
// c2s.auth_timeout. It returns how many streams it ended.
func (srv *Server) RedirectUnbound(choose func(Transport) *wire.Element) int {
	srv.mu.Lock()
	list := make([]*Session, 0, len(srv.streams))
	for s := range srv.streams {
		list = append(list, s)
	}
	srv.mu.Unlock()
	n := 0
	for _, s := range list {
		s.mu.Lock()
		skip := s.bound || s.closing || s.detached || s.t == nil
		t := s.t
		s.mu.Unlock()
		if skip {
			continue
		}
		s.Redirect(choose(t))
		n++
	}
	return n
}

func (srv *Server) addResumable(s *Session) {
	srv.mu.Lock()
	srv.resumable[s.smID] = s
	srv.mu.Unlock()
}

func (srv *Server) dropResumable(s *Session) {
	srv.mu.Lock()
	dropped := srv.resumable[s.smID] == s
	if dropped {
		delete(srv.resumable, s.smID)
	}
	srv.mu.Unlock()
	if it, ok := srv.d.Router.(InboundTracker); ok && dropped {
		// Ended or moved on: its count is not needed, and none follows.
		s.mu.Lock()
		s.smBare = ""
		it.InboundEnded(s.smID)
		s.mu.Unlock()
	}
}

func (srv *Server) lookupResumable(id string) *Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.resumable[id]
}

func (srv *Server) fire(ctx context.Context, ev plugins.Event, full, reason string) {
	if srv.d.Hooks == nil {
		return
	}
	if err := srv.d.Hooks.Run(ctx, ev, &plugins.SessionEvent{JID: full, Reason: reason}); err != nil {
		srv.d.Logger.Warn("c2s: hook failed", "event", string(ev), "err", err)
	}
}
