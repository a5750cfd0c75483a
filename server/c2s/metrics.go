package c2s

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts sessions, stanzas and closes. A nil *Metrics counts
// nothing.
type Metrics struct {
	sessions    prometheus.Gauge
	byTransport *prometheus.GaugeVec
	opened      prometheus.Counter
	stanzasIn   *prometheus.CounterVec
	stanzasOut  *prometheus.CounterVec
	closes      *prometheus.CounterVec
	authFailure *prometheus.CounterVec
	shedTotal   *prometheus.CounterVec
	negotiating prometheus.Gauge
	duplicates  prometheus.Counter
	share       prometheus.Gauge
	schedP99    prometheus.Gauge
}

// Values of the "via" label of aviary_c2s_auth_failures_total: a failed
// XMPP login (any transport) or a failed admin console sign-in, which
// checks the same password.
const (
	AuthViaXMPP    = "xmpp"
	AuthViaConsole = "console"
)

// NewMetrics creates the c2s metrics and registers them on reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aviary_c2s_sessions", Help: "Client streams currently open on this node (all transports).",
		}),
		byTransport: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aviary_c2s_sessions_by_transport", Help: "Client streams currently open on this node, by transport: tcp (STARTTLS listener), tls (direct TLS), bosh, websocket.",
		}, []string{"transport"}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aviary_c2s_sessions_opened_total", Help: "Client streams opened.",
		}),
		stanzasIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_c2s_stanzas_in_total", Help: "Stanzas received from clients, by kind.",
		}, []string{"kind"}),
		stanzasOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_c2s_stanzas_out_total", Help: "Stanzas written to clients, by kind.",
		}, []string{"kind"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_c2s_closes_total", Help: "Client sessions closed, by reason.",
		}, []string{"reason"}),
		authFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_c2s_auth_failures_total", Help: "Failed authentications with an account's password: SASL (via=xmpp) and admin console sign-ins (via=console).",
		}, []string{"via"}),
		shedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aviary_c2s_shed_total",
			Help: "New client streams this node shed (sent elsewhere with see-other-host, refused with resource-constraint, or a direct-TLS connection closed before its handshake) because it was over an admission limit: c2s.max_negotiating (negotiating), c2s.max_tls_handshakes_per_second (handshakes), c2s.max_logins_per_second (logins).",
		}, []string{"reason"}),
		negotiating: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aviary_c2s_negotiating", Help: "Client streams accepted and not yet authenticated (the accept queue c2s.max_negotiating bounds).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aviary_c2s_duplicates_dropped_total", Help: "Messages not given to a session because it had been given one with the same sender and XEP-0359 origin-id among its last 128 (a client's resend after a reconnection; server/c2s/origins.go).",
		}),
		share: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aviary_c2s_admission_share", Help: "Share of c2s.max_tls_handshakes_per_second and c2s.max_logins_per_second this node takes new streams at: below 1 while its scheduling latency is over c2s.admission_latency (server/c2s/governor.go).",
		}),
		schedP99: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aviary_c2s_sched_latency_p99_seconds", Help: "99th percentile of how long this node's runnable goroutines waited for a CPU over the admission governor's last quarter second (runtime/metrics /sched/latencies:seconds).",
		}),
	}
	m.share.Set(1)
	for _, via := range []string{AuthViaXMPP, AuthViaConsole} {
		m.authFailure.WithLabelValues(via) // present at zero from the start
	}
	for _, r := range []string{ShedNegotiating, ShedHandshakes, ShedLogins} {
		m.shedTotal.WithLabelValues(r)
	}
	for _, t := range Transports {
		m.byTransport.WithLabelValues(t)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sessions, m.byTransport, m.opened, m.stanzasIn, m.stanzasOut, m.closes, m.authFailure, m.shedTotal, m.negotiating, m.duplicates, m.share, m.schedP99} {
			_ = reg.Register(c)
		}
	}
	return m
}

func (m *Metrics) open(transport string) {
	if m != nil {
		m.sessions.Inc()
		m.byTransport.WithLabelValues(transport).Inc()
		m.opened.Inc()
	}
}

func (m *Metrics) closed(transport string, r CloseReason) {
	if m != nil {
		m.sessions.Dec()
		m.byTransport.WithLabelValues(transport).Dec()
		m.closes.WithLabelValues(r.String()).Inc()
	}
}

func (m *Metrics) in(kind string) {
	if m != nil {
		m.stanzasIn.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) out(kind string, n int) {
	if m != nil && n > 0 {
		m.stanzasOut.WithLabelValues(kind).Add(float64(n))
	}
}

func (m *Metrics) authFailed() { m.AuthFailed(AuthViaXMPP) }

// AuthFailed counts a failed authentication (via AuthViaXMPP or
// AuthViaConsole).
func (m *Metrics) AuthFailed(via string) {
	if m != nil {
		m.authFailure.WithLabelValues(via).Inc()
	}
}

func (m *Metrics) governed(share float64, p99 time.Duration) {
	if m != nil {
		m.share.Set(share)
		m.schedP99.Set(p99.Seconds())
	}
}

func (m *Metrics) shed(reason string) {
	if m != nil {
		m.shedTotal.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) negotiatingAdd(n int) {
	if m != nil {
		m.negotiating.Add(float64(n))
	}
}

func (m *Metrics) duplicateDropped() {
	if m != nil {
		m.duplicates.Inc()
	}
}
