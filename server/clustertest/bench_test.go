package clustertest_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
)

// BenchmarkThroughput measures messages per second between pairs of
// users on the three-process cluster, with sender and receiver on the
// same node and on different nodes, in one run. Pairs are spread over
// all three nodes in both cases (same: both on node i%3; cross: sender on
// node i%3, receiver on node (i+1)%3), so the same machines do the same
// client work and only the path differs. One iteration is a round: every
// sender writes `burst` messages at once and the round ends when every
// receiver has read all of its own. Run with
//
//	go test ./server/clustertest -run '^$' -bench Throughput -benchtime 200x
func BenchmarkThroughput(b *testing.B) {
	c := fixture(b)
	const pairs, burst = 12, 100
	for _, mode := range []string{"same-node", "cross-node"} {
		b.Run(mode, func(b *testing.B) {
			type pair struct {
				from, to *servertest.Client
				batch    []byte
			}
			ps := make([]pair, pairs)
			for i := range ps {
				sn := c.nodes[i%3]
				rn := sn
				if mode == "cross-node" {
					rn = c.nodes[(i+1)%3]
				}
				from := login(b, sn, c.user(b, "bs"), "s", 1)
				to := login(b, rn, c.user(b, "br"), "r", 1)
				befriend(b, from, to) // the sender's node knows the route
				var msg []byte
				for k := range burst {
					msg = fmt.Appendf(msg, "<message to='%s' type='chat' id='b%d'><body>bench payload %d of a typical chat message length</body></message>", to.JID, k, k)
				}
				ps[i] = pair{from, to, msg}
			}
			b.ReportAllocs()
			b.ResetTimer()
			rounds := 0
			for b.Loop() {
				rounds++
				var wg sync.WaitGroup
				errs := make(chan error, 2*pairs)
				for _, p := range ps {
					wg.Go(func() {
						_ = p.from.Conn.SetWriteDeadline(time.Now().Add(time.Minute))
						if _, err := p.from.Conn.Write(p.batch); err != nil {
							errs <- err
						}
					})
					wg.Go(func() {
						for n := 0; n < burst; {
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
			b.ReportMetric(float64(rounds*pairs*burst)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
