package component

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviary-im/aviary/plugins/internal/promutil"
)

// counters are the plugin's numbers, exported by registerMetrics.
type counters struct {
	received atomic.Int64 // stanzas the components sent
	sent     atomic.Int64 // stanzas written to components
	bounced  atomic.Int64 // stanzas for a component answered with an error
}

// registerMetrics exports the counters and this node's connections; it
// returns the function that unregisters them.
func (p *Plugin) registerMetrics(reg prometheus.Registerer) func() {
	count := func(v *atomic.Int64) func() float64 { return func() float64 { return float64(v.Load()) } }
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aviary_component_connections",
			Help: "External component (XEP-0114) connections on this node."},
			func() float64 {
				p.mu.Lock()
				defer p.mu.Unlock()
				n := 0
				for _, cs := range p.local {
					n += len(cs)
				}
				return float64(n)
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_component_received_total",
			Help: "Stanzas external components sent to this node."}, count(&p.stats.received)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_component_sent_total",
			Help: "Stanzas this node wrote to external components."}, count(&p.stats.sent)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_component_bounced_total",
			Help: "Stanzas for an external component that this node answered with an error (none connected, its node unreachable, its queue full or its connection closed)."},
			count(&p.stats.bounced)),
	}
	return promutil.Register(reg, cs...)
}
