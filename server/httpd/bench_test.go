package httpd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
	ws "github.com/coder/websocket"
)

// BenchmarkMessages measures messages per second from a client on each
// transport, through the router, to a TCP client on the same node. Each
// run ends when the TCP client has read every message, so queued work
// counts.
//
//	go test -run '^$' -bench Messages -benchtime 2000x ./server/httpd
func BenchmarkMessages(b *testing.B) {
	n, _, base := node(b, nil)
	for _, u := range []string{"sender", "recv"} {
		servertest.CreateUser(b, n, u, "pw-"+u)
	}
	recv := servertest.Dial(b, n)
	recvJID := recv.Login("recv", "pw-recv", "sink")
	msg := func(i int) string {
		return fmt.Sprintf("<message xmlns='jabber:client' to='%s' type='chat' id='b%d'><body>bench</body></message>", recvJID, i)
	}
	// receive reads count messages on the TCP client.
	receive := func(count int) chan error {
		done := make(chan error, 1)
		go func() {
			for got := 0; got < count; {
				el, err := recv.Next()
				if err != nil {
					done <- err
					return
				}
				if el.Name == "message" && el.ChildText("body", "") == "bench" {
					got++
				}
			}
			done <- nil
		}()
		return done
	}
	finish := func(b *testing.B, done chan error, start time.Time) {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	}

	b.Run("tcp", func(b *testing.B) {
		c := servertest.Dial(b, n)
		c.Login("sender", "pw-sender", fmt.Sprintf("tcp%d", b.N))
		done := receive(b.N)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		var sb strings.Builder
		for i := range b.N {
			sb.WriteString(msg(i))
			if sb.Len() > 16<<10 || i == b.N-1 {
				c.SendRaw(sb.String())
				sb.Reset()
			}
		}
		finish(b, done, start)
		c.Close()
	})

	b.Run("websocket", func(b *testing.B) {
		w := dialWS(b, base)
		w.login("sender", "pw-sender", fmt.Sprintf("ws%d", b.N))
		go func() { // keep reading so pings are answered and echoes drained
			for {
				if _, _, err := w.c.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		done := receive(b.N)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		ctx := context.Background()
		for i := range b.N {
			if err := w.c.Write(ctx, ws.MessageText, []byte(msg(i))); err != nil {
				b.Fatal(err)
			}
		}
		finish(b, done, start)
		w.c.Close(ws.StatusNormalClosure, "")
	})

	for _, batch := range []int{1, 10} {
		b.Run(fmt.Sprintf("bosh-%dperbody", batch), func(b *testing.B) {
			bc := &boshClient{t: b, url: base + httpd.PathBOSH, rid: 100}
			bc.login("sender", "pw-sender", fmt.Sprintf("bosh%d-%d", batch, b.N))
			done := receive(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			// Two requests in flight, as browsers do: a new request releases
			// the held one (hold=1), so each waits only for its successor.
			var prev chan error
			for i := 0; i < b.N; i += batch {
				var sb strings.Builder
				for j := i; j < i+batch && j < b.N; j++ {
					sb.WriteString(msg(j))
				}
				bc.rid++
				cur := boshPost(bc, bc.rid, sb.String())
				if prev != nil {
					if err := <-prev; err != nil {
						b.Fatal(err)
					}
				}
				prev = cur
			}
			finish(b, done, start)
			bc.postRaw("type='terminate'", "")
		})
	}
}

// boshPost sends one request of the session in the background.
func boshPost(bc *boshClient, rid int64, payload string) chan error {
	ch := make(chan error, 1)
	body := fmt.Sprintf("<body xmlns='%s' sid='%s' rid='%d'>%s</body>", bosh.NSHTTPBind, bc.sid, rid, payload)
	go func() {
		resp, err := http.Post(bc.url, "text/xml; charset=utf-8", strings.NewReader(body))
		if err != nil {
			ch <- err
			return
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		el, err := wire.Parse(data, wire.Limits{})
		if err == nil && el.Attr("type") == "terminate" {
			err = fmt.Errorf("terminated: %s", data)
		}
		ch <- err
	}()
	return ch
}
