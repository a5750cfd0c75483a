package s2s

import (
	"net"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// TestSendNotifySettlesOnceWrittenOrBounced: SendNotify reports a stanza
// settled only once it is written to the remote domain's stream, or once
// its bounce went back to the sender: while the stream is being set up,
// the stanza exists only in this process (the router holds the sender's
// acknowledgement on it, so a crash then cannot lose an acknowledged
// message).
func TestSendNotifySettlesOnceWrittenOrBounced(t *testing.T) {
	ca := newTestCA(t)
	// A remote server that accepts the connection and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	a, b := pair(t,
		nodeOpts{cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath, connectTimeout: 2 * time.Second},
		nodeOpts{cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	a.svc.mu.Lock()
	a.cfg.S2S.Hosts["silent.test"] = silent.Addr().String()
	a.svc.mu.Unlock()

	settled := make(chan string, 4)
	a.svc.SendNotify(t.Context(), msg("alice@a.test", "bob@silent.test", "waits"), func() {
		// The bounce reached the sender before the report.
		select {
		case el := <-a.got:
			a.got <- el
			settled <- "after bounce " + el.Attr("type")
		default:
			settled <- "before the bounce"
		}
	})
	select {
	case conn := <-accepted:
		defer conn.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the silent server was never dialled")
	}
	if c := a.outConnFor("a.test", "silent.test"); c != nil {
		c.mu.Lock()
		ready := c.state == outReady
		c.mu.Unlock()
		if ready {
			t.Fatal("a stream to a server that never answered is ready")
		}
	}
	select {
	case s := <-settled:
		t.Fatalf("settled (%s) while the stream to the remote was not set up", s)
	default:
	}
	select {
	case s := <-settled:
		if s != "after bounce error" {
			t.Fatalf("settled %s, want after the bounce", s)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a stanza whose remote never answered was never settled")
	}
	a.expect(func(el *wire.Element) bool { return el.IsError() }, "the bounce")

	a.svc.SendNotify(t.Context(), msg("alice@a.test", "bob@b.test", "goes"), func() { settled <- "written" })
	b.expect(isBody("goes"), "the message on b")
	select {
	case s := <-settled:
		if s != "written" {
			t.Fatalf("settled %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stanza written to b was never settled")
	}
}
