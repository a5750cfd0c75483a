package router

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names the router exports.
const (
	// MetricRouteSeconds is a histogram of the time one stanza spends in
	// FromClient, FromRemote or Route, by kind (message, presence, iq,
	// other): from entry until it is queued on every target session,
	// stored offline, handed to a node link or to s2s, bounced or dropped.
	// Everything the router does synchronously for the stanza counts (for
	// presence the whole broadcast, for an IQ the plugin that answers it).
	MetricRouteSeconds = "aviary_router_route_seconds"
	// MetricOutcomes counts what became of routed stanzas, one count per
	// target, by outcome: delivered_local (queued on a local session),
	// sent_node (handed to another node's link), sent_s2s (handed to
	// federation), service (handed to a plugin's service domain,
	// plugins.Service), offline (stored), bounced (answered with an error),
	// dropped (discarded without an answer: an interceptor dropped it,
	// RFC 6121 says to ignore it, or it was an error that cannot be
	// answered).
	MetricOutcomes = "aviary_router_stanzas_total"
	// MetricCustodyCopies is a gauge of the protected messages crash
	// safety keeps (kind=kept: this node's copies until the recipient's
	// client has them; kind=deposited: copies other nodes deposited here).
	MetricCustodyCopies = "aviary_router_custody_copies"
	// MetricCustodyRerouted counts kept copies routed again after the node
	// holding the message died or its link failed.
	MetricCustodyRerouted = "aviary_router_custody_rerouted_total"
	// MetricCustodyUnprotected counts protected messages delivered to a
	// local session while no other node could take a copy.
	MetricCustodyUnprotected = "aviary_router_custody_unprotected_total"
	// MetricCustodyPositioned is a gauge of the kept copies whose number
	// in their recipient's resumable session is known (custody_resume.go).
	MetricCustodyPositioned = "aviary_router_custody_positioned"
	// MetricCustodyDeduplicated counts kept copies let go, not routed
	// again, because a failed resumption's h said the client had them.
	MetricCustodyDeduplicated = "aviary_router_custody_deduplicated_total"
	// MetricCustodyInboundSessions is a gauge of the resumable sessions
	// of other nodes whose count of client stanzas made safe this node
	// keeps (custody_inbound.go); MetricCustodyInboundCounted counts the
	// growth of those counts (client stanzas reported safe), and
	// MetricCustodyInboundAnswered the failed resumptions answered with a
	// count (<failed h/>), so that the client sent only the rest again.
	MetricCustodyInboundSessions = "aviary_router_custody_inbound_sessions"
	MetricCustodyInboundCounted  = "aviary_router_custody_inbound_counted_total"
	MetricCustodyInboundAnswered = "aviary_router_custody_inbound_answered_total"
	// MetricOfflineRetryWaiting is a gauge of the messages waiting in
	// memory because offline storage did not answer (offlineretry.go);
	// MetricOfflineRetryBytes is what they count against
	// c2s.offline_retry_max_bytes.
	MetricOfflineRetryWaiting = "aviary_router_offline_retry_waiting"
	MetricOfflineRetryBytes   = "aviary_router_offline_retry_bytes"
	// MetricOfflineRetries counts attempts to store a waiting message that
	// failed because the database did not answer.
	MetricOfflineRetries = "aviary_router_offline_retries_total"
	// MetricOfflineRetryGaveUp counts messages offline storage could not
	// take that were not kept until it answered, by reason: full
	// (c2s.offline_retry_max_bytes; bounced), expired
	// (c2s.offline_retry_max_wait; bounced), stopped (the node stopped
	// first; left to whoever still holds them, else bounced).
	MetricOfflineRetryGaveUp = "aviary_router_offline_retry_gave_up_total"
	// MetricOfflineDeleteFailed counts portions of offline messages
	// handed over whose rows could not be deleted after they were safe
	// (the database did not answer through every retry): they are
	// delivered again (offlinehand.go).
	MetricOfflineDeleteFailed = "aviary_router_offline_delete_failed_total"
)

// metrics holds the router's collectors with every label resolved at
// construction, so the hot path only does atomic adds and allocates
// nothing.
type metrics struct {
	routeMessage, routePresence, routeIQ, routeOther prometheus.Observer

	deliveredLocal, sentNode, sentS2S, service, offline, bounced, dropped prometheus.Counter

	offlineDeleteFailed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: MetricRouteSeconds,
		Help: "Time to route one stanza (until queued on every target session, stored offline, handed to a node link or s2s, bounced or dropped), by kind.",
		// 10µs .. ~2.6s: local delivery is microseconds, storage and
		// cluster calls milliseconds.
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
	}, []string{"kind"})
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricOutcomes,
		Help: "Routed stanzas by outcome, one per target: delivered_local, sent_node, sent_s2s, service, offline, bounced, dropped.",
	}, []string{"outcome"})
	deleteFailed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: MetricOfflineDeleteFailed,
		Help: "Portions of offline messages handed over whose rows could not be deleted once the messages were safe; they are delivered again.",
	})
	if reg != nil {
		hist = register(reg, hist)
		outcomes = register(reg, outcomes)
		deleteFailed = register(reg, deleteFailed)
	}
	return &metrics{
		routeMessage:   hist.WithLabelValues("message"),
		routePresence:  hist.WithLabelValues("presence"),
		routeIQ:        hist.WithLabelValues("iq"),
		routeOther:     hist.WithLabelValues("other"),
		deliveredLocal: outcomes.WithLabelValues("delivered_local"),
		sentNode:       outcomes.WithLabelValues("sent_node"),
		sentS2S:        outcomes.WithLabelValues("sent_s2s"),
		service:        outcomes.WithLabelValues("service"),
		offline:        outcomes.WithLabelValues("offline"),
		bounced:        outcomes.WithLabelValues("bounced"),
		dropped:        outcomes.WithLabelValues("dropped"),

		offlineDeleteFailed: deleteFailed,
	}
}

// register registers c, or returns the collector already registered under
// its name (two routers on one registry, as in tests, share the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// routeTimer returns the histogram for a stanza's kind.
func (m *metrics) routeTimer(name string) prometheus.Observer {
	switch name {
	case "message":
		return m.routeMessage
	case "presence":
		return m.routePresence
	case "iq":
		return m.routeIQ
	}
	return m.routeOther
}

// observeSince records the time since start; deferred by the entry points.
func observeSince(o prometheus.Observer, start time.Time) {
	o.Observe(time.Since(start).Seconds())
}
