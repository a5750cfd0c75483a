package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBOSHCarriersKeepTheirConnections: many carriers on one server, each
// with a poll and a write under way at once (as in the ring), reuse their
// connections. Through the process's shared default transport (two idle
// connections per host) they closed one after nearly every response, which
// the server must count as a lost response and send again: TestCrashE2E
// saw a SASL challenge twice and a failed login.
func TestBOSHCarriersKeepTheirConnections(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		io.WriteString(w, "<body xmlns='"+nsHTTPBind+"'/>")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	const carriers, rounds = 20, 5
	var bs []*boshCarrier
	for range carriers {
		b := newBOSHCarrier(srv.URL+"/http-bind", "localhost", 5*time.Second)
		b.sid = "s"
		bs = append(bs, b)
	}
	defer func() {
		for _, b := range bs {
			b.abort()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, 2*carriers)
		for _, b := range bs {
			for range boshConns { // the poll and a write
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- b.send(ctx, "", nil)
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	if n := opened.Load(); n > carriers*boshConns {
		t.Fatalf("%d connections opened for %d carriers of %d requests at a time over %d rounds: want at most %d (connections closed after responses)",
			n, carriers, boshConns, rounds, carriers*boshConns)
	}
}
