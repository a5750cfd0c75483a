package c2s_test

import (
	"bufio"
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
)

// BenchmarkMessageRoundTrip sends b.N chat messages from alice to bob over
// TLS through a real node on loopback, and ends with a ping round trip so
// every queued message has been handled and delivered.
func BenchmarkMessageRoundTrip(b *testing.B) {
	cfg := servertest.DefaultConfig(b)
	n := servertest.RunServer(b, cfg)
	servertest.CreateUser(b, n, "alice", "alicepw")
	servertest.CreateUser(b, n, "bob", "bobpw")
	a := servertest.DialTLS(b, n)
	a.Login("alice", "alicepw", "r")
	bob := servertest.DialTLS(b, n)
	bob.Login("bob", "bobpw", "r")
	msg := []byte("<message to='bob@localhost/r' type='chat'><body>hello, this is a benchmark message</body></message>")
	w := bufio.NewWriterSize(a.Conn, 32<<10)
	done := make(chan int)
	go func() {
		got := 0
		for {
			el, err := bob.Next()
			if err != nil {
				done <- -1
				return
			}
			if el.Name == "message" {
				got++
			}
			if el.Name == "iq" && el.ID() == "end" {
				done <- got
				return
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	// alice pings bob: the answer comes after every message before it.
	w.WriteString("<iq type='get' id='end' to='bob@localhost/r'><ping xmlns='urn:xmpp:ping'/></iq>")
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if got := <-done; got != b.N {
		b.Fatalf("bob got %d of %d messages", got, b.N)
	}
	b.StopTimer()
}
