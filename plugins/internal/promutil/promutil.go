// Package promutil registers a built-in plugin's Prometheus collectors
// for as long as the plugin runs.
package promutil

import "github.com/prometheus/client_golang/prometheus"

// Register registers each collector with reg and returns the function
// that unregisters those it registered. A collector already registered
// (another instance of the plugin in the same process, as in tests) is
// skipped rather than failing the plugin's start.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) (unregister func()) {
	var done []prometheus.Collector
	for _, c := range cs {
		if reg.Register(c) == nil {
			done = append(done, c)
		}
	}
	return func() {
		for _, c := range done {
			reg.Unregister(c)
		}
	}
}
