package router

import (
	"testing"

	"github.com/aviary-im/aviary/cluster/local"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMetrics routes one stanza to each outcome and checks the counters
// and the per-kind routing histogram on a registry passed in Options.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := openStore(t)
	cfg := testConfig()
	e := &env{t: t, store: st, cfg: cfg}
	e.r = New(Options{Config: ConfigFrom(cfg), Store: st, Cluster: local.New("node1"), Registry: reg})
	fed := &capFed{}
	e.r.SetFederation(fed)
	e.user("alice", "bob", "carol")
	alice := e.online("alice", "a", 0)
	bob := e.online("bob", "b", 0)

	outcome := func(name string) float64 {
		t.Helper()
		c, err := e.r.m.outcomeVec(reg, name)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	steps := []struct {
		name, outcome string
		do            func()
	}{
		{"local delivery", "delivered_local", func() {
			e.send(alice, `<message to='bob@example.com' type='chat'><body>hi</body></message>`)
		}},
		{"offline", "offline", func() {
			e.send(alice, `<message to='carol@example.com' type='chat'><body>hi</body></message>`)
		}},
		{"s2s", "sent_s2s", func() {
			e.send(alice, `<message to='dave@remote.net' type='chat'><body>hi</body></message>`)
		}},
		{"bounced", "bounced", func() {
			e.send(alice, `<iq type='get' id='q' to='bob@example.com/nowhere'><query xmlns='jabber:iq:version'/></iq>`)
		}},
		{"dropped", "dropped", func() {
			e.send(alice, `<message to='bob@example.com/nowhere' type='headline'><body>news</body></message>`)
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := outcome(s.outcome)
			s.do()
			if got := outcome(s.outcome); got != before+1 {
				t.Fatalf("%s = %v, want %v", s.outcome, got, before+1)
			}
		})
	}
	bob.take()
	alice.take()

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != MetricRouteSeconds {
			continue
		}
		for _, m := range mf.GetMetric() {
			counts[labelValue(m, "kind")] = m.GetHistogram().GetSampleCount()
		}
	}
	// online() sent an IQ and presence for each of two sessions; the steps
	// four messages and one IQ (the error answering it is routed inside
	// that IQ's routing, not timed again).
	if counts["message"] != 4 || counts["iq"] != 3 || counts["presence"] != 2 {
		t.Fatalf("route histogram sample counts = %v", counts)
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// outcomeVec reads one outcome's count through the registry, as /metrics
// would show it.
func (m *metrics) outcomeVec(reg *prometheus.Registry, outcome string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != MetricOutcomes {
			continue
		}
		for _, mm := range mf.GetMetric() {
			if labelValue(mm, "outcome") == outcome {
				return mm.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, nil
}

// TestMetricsSharedRegistry: two routers on one registry (several nodes in
// one test process) share the series instead of failing to register.
func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	r1 := New(Options{Config: ConfigFrom(testConfig()), Cluster: local.New("n1"), Registry: reg})
	r2 := New(Options{Config: ConfigFrom(testConfig()), Cluster: local.New("n2"), Registry: reg})
	r1.m.dropped.Inc()
	r2.m.dropped.Inc()
	var m dto.Metric
	if err := r1.m.dropped.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 2 {
		t.Fatalf("shared dropped counter = %v, want 2", got)
	}
}
