package server_test

import (
	"strconv"
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// BenchmarkLogin is one client's whole login on a node on the embedded
// store, one after another: STARTTLS, SCRAM-SHA-256, bind, initial
// presence (answered with the client's own), and the end of the stream.
// Client and server share the process: compare CPU profiles by the
// server's packages (go test -bench Login -cpuprofile), or use
// cmd/aviary-bench -workload login for the rate over the network.
func BenchmarkLogin(b *testing.B) {
	n := servertest.RunServer(b, servertest.DefaultConfig(b))
	servertest.CreateUser(b, n, "bench", "secret")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := servertest.Dial(b, n)
		c.Login("bench", "secret", "r"+strconv.Itoa(i))
		c.Send("<presence/>")
		c.Expect("own presence", func(el *wire.Element) bool { return el.Name == "presence" })
		c.Close()
	}
}
