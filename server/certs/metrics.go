package certs

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	m        *Manager
	expiry   *prometheus.Desc
	renewals *prometheus.CounterVec
	failures *prometheus.CounterVec
}

func newMetrics(m *Manager, reg prometheus.Registerer) *metrics {
	x := &metrics{
		m: m,
		expiry: prometheus.NewDesc("aviary_certificate_expiry_timestamp_seconds",
			"When the certificate this node serves for a name expires (Unix time), by name and source (acme, imported, file, self-signed).",
			[]string{"name", "source"}, nil),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_certificate_renewals_total", Help: "Certificates this node obtained or renewed from the ACME CA, by name.",
		}, []string{"name"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_certificate_renewal_failures_total", Help: "Failed ACME orders (first or renewal) by this node, by name.",
		}, []string{"name"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{x, x.renewals, x.failures} {
			_ = reg.Register(c)
		}
	}
	return x
}

func (x *metrics) Describe(ch chan<- *prometheus.Desc) { ch <- x.expiry }

// Collect reports, at scrape time, the certificate served for every name
// ACME manages and every name of a stored or fallback certificate.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	s := x.m.snap.Load()
	names := slices.Clone(x.m.names)
	add := func(c *Certificate) {
		for _, n := range c.Names {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	for _, c := range s.stored {
		add(c)
	}
	if s.fallback != nil {
		add(s.fallback)
	}
	now := x.m.o.Now()
	for _, n := range names {
		if c := s.lookup(n, now); c != nil {
			ch <- prometheus.MustNewConstMetric(x.expiry, prometheus.GaugeValue, float64(c.NotAfter.Unix()), n, c.Source)
		}
	}
}
