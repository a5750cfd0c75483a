package c2s

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server/auth"
)

// Deps are what a Server is built from. Config, Router and Auth are required.
type Deps struct {
	Config *conf.Config
	Router Router
	Auth   *auth.Authenticator
	// Plugins contributes stream features and answers pre-auth
	// registration IQs (XEP-0077). Nil means none.
	Plugins *plugins.Manager
	// TLS is the server certificate configuration. Nil means no STARTTLS
	// (and, with RequireTLS, no authentication on plain TCP).
	TLS    *tls.Config
	Logger *slog.Logger
	// Metrics may be nil (nothing counted).
	Metrics *Metrics
}

// Server holds what every client session of a node shares.
type Server struct {
	d Deps
}

// NewServer returns a Server for the given dependencies.
func NewServer(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return &Server{d: d}
}

// Serve runs one client stream on t; see the package documentation and
// Transport. It returns when the session is over.
func (srv *Server) Serve(ctx context.Context, t Transport) error {
	return errors.New("c2s: not implemented yet")
}
