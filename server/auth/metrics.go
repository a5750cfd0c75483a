package auth

import "github.com/prometheus/client_golang/prometheus"

// throttleMetrics counts the waits the SASL throttle imposes, by gate
// ("address" or "account"). A nil *throttleMetrics counts nothing.
type throttleMetrics struct {
	waits       *prometheus.CounterVec
	waitSeconds *prometheus.CounterVec
	waiting     *prometheus.GaugeVec
	failures    *prometheus.CounterVec
}

func newThrottleMetrics(reg prometheus.Registerer) *throttleMetrics {
	if reg == nil {
		return nil
	}
	m := &throttleMetrics{
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_sasl_throttle_waits_total",
			Help: "SASL attempts that had to wait their turn after earlier failures, by gate (address, account).",
		}, []string{"gate"}),
		waitSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_sasl_throttle_wait_seconds_total",
			Help: "Time SASL attempts spent waiting their turn, by gate (address, account).",
		}, []string{"gate"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aviary_sasl_throttle_waiting",
			Help: "SASL attempts waiting their turn now, by gate (address, account).",
		}, []string{"gate"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_sasl_throttle_failures_total",
			Help: "Failed SASL attempts the throttle recorded, by gate (address, account).",
		}, []string{"gate"}),
	}
	for _, c := range []prometheus.Collector{m.waits, m.waitSeconds, m.waiting, m.failures} {
		_ = reg.Register(c)
	}
	return m
}

func (m *throttleMetrics) failed(gate string) {
	if m != nil {
		m.failures.WithLabelValues(gate).Inc()
	}
}

// wait wraps a sleep of d in the gate's counts.
func (m *throttleMetrics) wait(gate string, d float64, sleep func() error) error {
	if m == nil {
		return sleep()
	}
	m.waits.WithLabelValues(gate).Inc()
	m.waitSeconds.WithLabelValues(gate).Add(d)
	g := m.waiting.WithLabelValues(gate)
	g.Inc()
	defer g.Dec()
	return sleep()
}
