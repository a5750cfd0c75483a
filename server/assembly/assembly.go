// Package assembly builds a whole Aviary node, the one `aviary serve`
// runs: every part, in the order it starts, with its dependencies given
// when it is built. Read New from top to bottom to see the node.
//
// It is a package of its own, not a file of package server, because the
// admin console (admin/backend) is built on server.Node: server cannot
// import it, and no other package of server/ imports admin/ (arch_test.go).
// Tests that need only part of a node build it with server.New and the
// services they need, as New does here.
package assembly

import (
	"log/slog"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/balance"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/pluginhost"
)

// Node is a whole node: its core and each of its services.
type Node struct {
	*server.Node

	S2S     *server.FederationService
	HTTP    *httpd.Service
	Balance *balance.Service
	Plugins *pluginhost.Service
	Admin   *backend.Service
}

// New builds the node cfg describes (defaults applied: conf.Load does it).
// Nothing listens until Start, which starts the parts in the order below
// and, if one fails, stops the ones already started in reverse; Stop takes
// them all down in reverse. onDrained runs when a drain of the node ended
// (`aviary serve` stops the process then); opts are passed to server.New.
func New(cfg *conf.Config, log *slog.Logger, onDrained func(balance.Report), opts ...server.Option) (*Node, error) {
	n := &Node{}

	// Federation (s2s.listen): s2s streams to and from other domains,
	// attached to the router when it starts. Off, remote domains get
	// remote-server-not-found.
	n.S2S = server.NewFederationService()

	// BOSH, WebSocket and host-meta on http.listen and http.tls_listen,
	// handing their sessions to the c2s server.
	n.HTTP = httpd.NewService()

	// Balancing: publishes this node's load, redirects new streams when
	// another node is a better place, serves the dispatcher on the HTTP
	// listener, drains the node on request or SIGTERM.
	n.Balance = balance.NewService(n.HTTP, onDrained)

	// Third-party plugins: the WebAssembly runtime and the plugin host,
	// which loads the catalogue's enabled versions and follows rolling
	// upgrades. They run whether or not the console listens.
	n.Plugins = pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, log)

	// The admin console, JSON API, /metrics and health checks on
	// admin.listen, reporting on and acting through the services above.
	n.Admin = backend.NewService(cfg, backend.Deps{
		Logger:  log, // each part of the console names itself (component=admin, audit)
		S2S:     n.S2S.Stats,
		Balance: n.Balance,
		Plugins: n.Plugins,
	})

	// The core, which server.New builds and Node.Start starts first, in
	// this order:
	//  1. the store: PostgreSQL for database.url, else SQLite in data_dir
	//     (server.OpenStore);
	//  2. the TLS certificate: tls.cert_file, else one generated in data_dir;
	//  3. the cluster: for cluster.hazelcast, the node's links to the other
	//     nodes (cluster/link) and Hazelcast's membership (cluster/hazelcast),
	//     else cluster/local (one node); and each plugin's view of it
	//     (server/plugincluster: owners of keys, calls to other nodes);
	//  4. the router (server/router): where each stanza goes, service
	//     domains the plugins claim included;
	//  5. the built-in plugins (plugins/builtin) and the hooks they share;
	//     once they started, the service domains they claim are named in
	//     the self-signed certificate;
	//  6. authentication and the client stream server (server/c2s) with its
	//     listeners, c2s.listen and c2s.tls_listen;
	//  7. the cluster-wide chores (expiring offline messages), then the
	//     services below, in the order given;
	//  8. last, the certificate manager's loop (server/certs: certificates
	//     other nodes stored and, with tls.acme.enabled, ordering and
	//     renewal), which needs the HTTP listener for HTTP-01.
	all := append([]server.Option{server.WithLogger(log)}, opts...)
	for _, s := range []server.Service{n.S2S, n.HTTP, n.Balance, n.Plugins, n.Admin} {
		all = append(all, server.WithService(s))
	}
	core, err := server.New(cfg, all...)
	if err != nil {
		return nil, err
	}
	n.Node = core
	return n, nil
}
