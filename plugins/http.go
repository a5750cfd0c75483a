package plugins

import (
	"net/http"
	"strings"
)

// HTTPHandler is a plugin that serves HTTP requests under a path prefix
// on the node's HTTP and HTTPS listeners (http.listen, http.tls_listen):
// XEP-0363 uploads and downloads. Paths the server serves itself (BOSH,
// WebSocket, host-meta, ACME) never reach a plugin.
//
// The server's body cap (c2s.max_stanza_bytes) and body and response
// deadlines (http.read_body_timeout, http.write_timeout) do not apply: the
// handler caps what it reads (http.MaxBytesReader) and sets a deadline
// before each read and write (http.ResponseController), so a large file
// may take as long as it needs while a stalled client is still cut off.
type HTTPHandler interface {
	Plugin
	// HTTPPrefix is the path the plugin serves, ending in "/"
	// ("/upload/"); it must not be one of the server's own.
	HTTPPrefix() string
	http.Handler
}

// ServeHTTP hands a request to the running plugin whose prefix its path
// starts with (the longest), or answers 404. The server mounts it under
// every path it does not serve itself.
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var best HTTPHandler
	for _, p := range m.list() {
		if h, ok := p.(HTTPHandler); ok && strings.HasPrefix(r.URL.Path, h.HTTPPrefix()) &&
			(best == nil || len(h.HTTPPrefix()) > len(best.HTTPPrefix())) {
			best = h
		}
	}
	if best == nil {
		http.NotFound(w, r)
		return
	}
	best.ServeHTTP(w, r)
}
