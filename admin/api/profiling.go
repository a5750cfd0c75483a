package api

import (
	"net/http"
	"net/http/pprof"
)

// handleProfiles serves Go's runtime profiles under /debug/pprof/ when
// admin.profiling is on, behind the same token as /metrics: an operator
// (or the storm measurements, server/balance/STORMS.md) profiles a
// running node with `go tool pprof`. The handlers are mounted on the
// API's own mux; the package's init also puts them on
// http.DefaultServeMux, which no listener of a node serves.
func (s *Server) handleProfiles() {
	s.mux.Handle("GET /debug/pprof/", s.metricsAuth(http.HandlerFunc(pprof.Index)))
	s.mux.Handle("GET /debug/pprof/cmdline", s.metricsAuth(http.HandlerFunc(pprof.Cmdline)))
	s.mux.Handle("GET /debug/pprof/profile", s.metricsAuth(http.HandlerFunc(pprof.Profile)))
	s.mux.Handle("GET /debug/pprof/symbol", s.metricsAuth(http.HandlerFunc(pprof.Symbol)))
	s.mux.Handle("GET /debug/pprof/trace", s.metricsAuth(http.HandlerFunc(pprof.Trace)))
}
