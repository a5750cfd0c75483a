package mam

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviary-im/aviary/plugins/internal/promutil"
	"github.com/aviary-im/aviary/storage/groupcommit"
)

// registerMetrics exports the archive writer's counters, and how many
// client acknowledgements wait for its commits; it returns the function
// that unregisters them.
func registerMetrics(reg prometheus.Registerer, w *groupcommit.Writer, a *Archive) func() {
	stat := func(f func(groupcommit.Stats) float64) func() float64 {
		return func() float64 { return f(w.Stats()) }
	}
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_mam_archived_total",
			Help: "Messages written to the message archive (one per account copy)."},
			stat(func(s groupcommit.Stats) float64 { return float64(s.Entries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_mam_batches_total",
			Help: "Group-commit transactions of the message archive."},
			stat(func(s groupcommit.Stats) float64 { return float64(s.Batches) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_mam_failed_total",
			Help: "Archive entries given up after the writer's retries (lost from the archive)."},
			stat(func(s groupcommit.Stats) float64 { return float64(s.Failed) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aviary_mam_moved_ids_total",
			Help: "Archive entries whose stamped stanza-id was taken and were stored under another."},
			stat(func(s groupcommit.Stats) float64 { return float64(s.MovedIDs) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aviary_mam_pending",
			Help: "Archive entries queued or being written."},
			stat(func(s groupcommit.Stats) float64 { return float64(s.Pending) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aviary_mam_acks_held",
			Help: "Stream-management acknowledgements of sent messages waiting for their archive write to commit."},
			func() float64 { return float64(a.acksHeld.Load()) }),
	}
	return promutil.Register(reg, cs...)
}
