package s2s

import (
	"testing"

	"github.com/aviary-im/aviary/wire"
)

// BenchmarkFederatedMessage sends messages from a.test to b.test over one
// established stream (SASL EXTERNAL) and waits until all were delivered.
func BenchmarkFederatedMessage(b *testing.B) {
	ca := newTestCA(b)
	nb := startNode(b, nodeOpts{domain: "b.test", cert: domainCert(b, ca, "b.test"), caFile: ca.pemPath})
	nb.got = make(chan *wire.Element, 1<<16)
	na := startNode(b, nodeOpts{domain: "a.test", cert: domainCert(b, ca, "a.test"), caFile: ca.pemPath,
		hosts: map[string]string{"b.test": nb.addr()}})
	nb.cfg.S2S.Hosts["a.test"] = na.addr()
	na.svc.QueueLimit = 1 << 16
	na.svc.Send(b.Context(), msg("alice@a.test", "bob@b.test", "warm-up"))
	nb.expect(isBody("warm-up"), "warm-up")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		na.svc.Send(b.Context(), msg("alice@a.test", "bob@b.test", "x"))
		n++
		if n%1000 == 0 {
			drain(b, nb, 1000)
		}
	}
	drain(b, nb, n%1000)
}

func drain(b *testing.B, n *testNode, count int) {
	for range count {
		n.expect(isBody("x"), "benchmark message")
	}
}

func BenchmarkDialbackKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = dialbackKey("secret", "b.test", "a.test", "0123456789abcdef")
	}
}
