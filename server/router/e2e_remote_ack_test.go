package router_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// gatedProxy forwards TCP connections to target once opened: until then a
// connection is accepted and left waiting, like a remote server slow to
// answer (a new s2s stream needs a connection, TLS and dialback).
type gatedProxy struct {
	ln     net.Listener
	target string
	open   chan struct{}
	once   sync.Once
}

func newGatedProxy(t *testing.T, target string) *gatedProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gatedProxy{ln: ln, target: target, open: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *gatedProxy) serve(c net.Conn) {
	defer c.Close()
	<-p.open
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
}

func (p *gatedProxy) release() { p.once.Do(func() { close(p.open) }) }

// TestRemoteMessageAcknowledgedOnceWritten runs two real domains over
// s2s, the first one's stream to the second held up (a proxy that does
// not forward yet). alice@a.test, with stream management, sends bob@b.test
// a message and asks for an acknowledgement: the answer waits until the
// message is out of a.test's process (written to the s2s stream), so a
// crash of a.test meanwhile leaves it with alice's client, which sends it
// again. Before, the message was acknowledged at once while it sat in the
// s2s queue.
func TestRemoteMessageAcknowledgedOnceWritten(t *testing.T) {
	var proxy *gatedProxy
	a, b := servertest.RunFederatedPairWith(t, "a.test", "b.test", servertest.FederatedPair{
		AToB: func(addrB string) string {
			proxy = newGatedProxy(t, addrB)
			return proxy.ln.Addr().String()
		},
	})
	servertest.CreateUser(t, a, "alice", "alice-secret")
	servertest.CreateUser(t, b, "bob", "bob-secret")
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	bob.Login("bob", "bob-secret", "work")
	bob.Send(`<presence/>`)

	alice := servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	alice.Login("alice", "alice-secret", "home")
	alice.Send(`<enable xmlns='urn:xmpp:sm:3'/>`)
	alice.ExpectName("enabled")
	alice.Send(`<message to='bob@b.test' type='chat' id='m1'><body>across</body></message><r xmlns='urn:xmpp:sm:3'/>`)

	// The stream to b.test is held at the proxy: no acknowledgement yet.
	alice.Timeout = 1500 * time.Millisecond
	if el, err := alice.Next(); err == nil {
		t.Fatalf("while the s2s stream is not set up, alice got %s; want nothing (the message exists only in a.test's process)", el)
	}
	alice.Close()
	alice = servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	alice.Login("alice", "alice-secret", "again")
	alice.Send(`<enable xmlns='urn:xmpp:sm:3'/>`)
	alice.ExpectName("enabled")

	proxy.release()
	got := bob.Await("the message", func(el *wire.Element) bool { return el.Name == "message" && el.ID() == "m1" })
	if got.ChildText("body", "") != "across" {
		t.Fatalf("bob got %s", got)
	}
	alice.Send(`<message to='bob@b.test' type='chat' id='m2'><body>again</body></message><r xmlns='urn:xmpp:sm:3'/>`)
	a1 := alice.Await("an acknowledgement once the stream is up", func(el *wire.Element) bool { return el.Name == "a" })
	if a1.Attr("h") != "1" {
		t.Fatalf("acknowledged %s, want h='1'", a1)
	}
}
