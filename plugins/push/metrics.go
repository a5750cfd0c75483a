package push

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviary-im/aviary/plugins/internal/promutil"
)

// counters are the plugin's numbers on this node, exported by
// registerMetrics.
type counters struct {
	sent     atomic.Int64 // notifications published
	errors   atomic.Int64 // error answers from app servers
	disabled atomic.Int64 // registrations removed after such an answer
	// deferredTotal: notifications deferred because the registrations
	// could not be read; deferDropped: deferred ones given up.
	deferredTotal atomic.Int64
	deferDropped  atomic.Int64
}

// registerMetrics exports the counters; it returns the function that
// unregisters them.
func (p *Plugin) registerMetrics(reg prometheus.Registerer) func() {
	count := func(v *atomic.Int64) func() float64 { return func() float64 { return float64(v.Load()) } }
	return promutil.Register(reg,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_push_notifications_total",
			Help: "XEP-0357 push notifications this node sent to app servers."}, count(&p.stats.sent)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_push_errors_total",
			Help: "Error answers from app servers to push notifications that reached this node."}, count(&p.stats.errors)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_push_disabled_total",
			Help: "Push registrations this node removed because the app server said they are gone."}, count(&p.stats.disabled)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_push_deferred_total",
			Help: "Push notifications deferred because the database did not answer when their registrations were read."}, count(&p.stats.deferredTotal)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_push_deferred_dropped_total",
			Help: "Deferred push notifications given up (waited too long, too many waiting, or the node stopped)."}, count(&p.stats.deferDropped)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aviary_push_deferred_waiting",
			Help: "Push notifications waiting for the database on this node."}, func() float64 { return float64(p.deferredNow()) }))
}
