package clustertest_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
)

const benchPairs, benchBurst = 12, 100

type benchPair struct {
	from, to *servertest.Client
	batch    []byte
}

// benchPairs logs in benchPairs sender/receiver pairs spread over the
// three nodes: same node (both on node i%3) or cross node (sender on
// node i%3, receiver on node (i+1)%3), so the same processes do the same
// client work and only the path differs.
func setupPairs(b *testing.B, c *cluster, cross bool) []benchPair {
	b.Helper()
	ps := make([]benchPair, benchPairs)
	for i := range ps {
		sn := c.nodes[i%3]
		rn := sn
		if cross {
			rn = c.nodes[(i+1)%3]
		}
		from := login(b, sn, c.user(b, "bs"), "s", 1)
		to := login(b, rn, c.user(b, "br"), "r", 1)
		befriend(b, from, to) // the sender's node knows the route
		var msg []byte
		for k := range benchBurst {
			msg = fmt.Appendf(msg, "<message to='%s' type='chat' id='b%d'><body>bench payload %d of a typical chat message length</body></message>", to.JID, k, k)
		}
		ps[i] = benchPair{from, to, msg}
	}
	return ps
}

// round has every sender write its burst at once and returns when every
// receiver has read all of its messages.
func round(b *testing.B, ps []benchPair) {
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(ps))
	for _, p := range ps {
		wg.Go(func() {
			_ = p.from.Conn.SetWriteDeadline(time.Now().Add(time.Minute))
			if _, err := p.from.Conn.Write(p.batch); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			for n := 0; n < benchBurst; {
				el, err := p.to.Next()
				if err != nil {
					errs <- err
					return
				}
				if el.Name == "message" {
					n++
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkThroughput measures messages per second between pairs of
// users on the three-process cluster, with sender and receiver on the
// same node and on different nodes, in one run. One iteration is a
// round: every sender writes a burst of 100 messages at once and the
// round ends when every receiver has read all of its own.
//
// same-node and cross-node run one after the other; interleaved
// alternates a same-node and a cross-node round in every iteration and
// times each separately, so that load changes on a shared machine hit
// both alike: its cross/same-% is the figure to compare with the 80%
// target. Run with
//
//	go test ./server/clustertest -run '^$' -bench Throughput -benchtime 300x
func BenchmarkThroughput(b *testing.B) {
	c := fixture(b)
	perRound := float64(benchPairs * benchBurst)
	for _, mode := range []string{"same-node", "cross-node"} {
		b.Run(mode, func(b *testing.B) {
			ps := setupPairs(b, c, mode == "cross-node")
			b.ReportAllocs()
			b.ResetTimer()
			rounds := 0
			for b.Loop() {
				rounds++
				round(b, ps)
			}
			b.ReportMetric(float64(rounds)*perRound/b.Elapsed().Seconds(), "msgs/s")
		})
	}
	b.Run("interleaved", func(b *testing.B) {
		same, cross := setupPairs(b, c, false), setupPairs(b, c, true)
		var tSame, tCross time.Duration
		rounds := 0
		for b.Loop() {
			rounds++
			t0 := time.Now()
			round(b, same)
			t1 := time.Now()
			round(b, cross)
			tSame += t1.Sub(t0)
			tCross += time.Since(t1)
		}
		sameRate := float64(rounds) * perRound / tSame.Seconds()
		crossRate := float64(rounds) * perRound / tCross.Seconds()
		b.ReportMetric(sameRate, "same-msgs/s")
		b.ReportMetric(crossRate, "cross-msgs/s")
		b.ReportMetric(100*crossRate/sameRate, "cross/same-%")
	})
}
