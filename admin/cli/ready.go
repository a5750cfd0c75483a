package cli

import (
	"log/slog"
	"net"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/assembly"
	"github.com/aviary-im/aviary/server/httpd"
)

// readyRecord is what a started node tells its operator, in one log
// record: where clients connect (c2s, direct TLS, BOSH and WebSocket URLs),
// where the console is, and, when the console has no admin yet, how to
// make one. A newcomer's first `aviary serve` shows everything without
// reading the README; each value is also a key a script can pick up.
func readyRecord(n *assembly.Node, domain string, admins []string) (string, []any) {
	addr := func(a net.Addr, scheme, path string) string {
		if a == nil {
			return "off"
		}
		if scheme == "" {
			return a.String()
		}
		return scheme + "://" + a.String() + path
	}
	attrs := []any{
		"domain", domain,
		"c2s_starttls", addr(n.Addr(server.ListenerC2S), "", ""),
		"c2s_direct_tls", addr(n.Addr(server.ListenerC2STLS), "", ""),
		"bosh", addr(n.HTTP.Addr(httpd.ListenerHTTP), "http", httpd.PathBOSH),
		"websocket", addr(n.HTTP.Addr(httpd.ListenerHTTP), "ws", httpd.PathWebSocket),
		"bosh_tls", addr(n.HTTP.Addr(httpd.ListenerHTTPS), "https", httpd.PathBOSH),
		"websocket_tls", addr(n.HTTP.Addr(httpd.ListenerHTTPS), "wss", httpd.PathWebSocket),
		"console", addr(n.Admin.Addr(), "http", "/"),
	}
	if n.HTTP.Addr(httpd.ListenerHTTP) == nil && n.HTTP.Addr(httpd.ListenerHTTPS) == nil {
		attrs = append(attrs, "web_clients", "add --http-listen 127.0.0.1:5280 to serve BOSH and WebSocket")
	}
	if n.Admin.Addr() != nil && len(admins) == 0 {
		attrs = append(attrs, "first_admin", "aviary user add --password PASSWORD admin, then serve with --set admin.admins=admin@"+domain+" and sign in to the console with that password")
	}
	return "aviary serve: ready", attrs
}

// logReady writes readyRecord to log.
func logReady(log *slog.Logger, n *assembly.Node, domain string, admins []string) {
	msg, attrs := readyRecord(n, domain, admins)
	log.Info(msg, attrs...)
}
