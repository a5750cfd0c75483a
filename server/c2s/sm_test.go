package c2s_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

func enableSM(t *testing.T, c *servertest.Client) string {
	t.Helper()
	c.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	en := c.Await("enabled", func(el *wire.Element) bool { return el.Name == "enabled" || el.Name == "failed" })
	if en.Name != "enabled" || en.Attr("resume") != "true" || en.Attr("id") == "" {
		t.Fatalf("enable: %s", en)
	}
	return en.Attr("id")
}

func isMsg(el *wire.Element) bool { return el.Name == "message" }

func TestSMAckCounting(t *testing.T) {
	n := startServer(t, "alice", "bob")
	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "r")
	enableSM(t, a)
	a.Send("<message to='bob@localhost' type='chat'><body>1</body></message>")
	a.Send("<presence/>")
	a.Send("<r xmlns='urn:xmpp:sm:3'/>")
	ack := a.Await("ack", func(el *wire.Element) bool { return el.Name == "a" })
	if ack.Attr("h") != "2" {
		t.Errorf("h = %s, want 2", ack)
	}
	// An ack for more than the server sent ends the stream.
	a.Send("<a xmlns='urn:xmpp:sm:3' h='1000'/>")
	a.ExpectStreamError("undefined-condition")
}

func TestSMResumeRedelivers(t *testing.T) {
	n := startServer(t, "alice", "bob")
	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "r")
	id := enableSM(t, a)
	b := servertest.DialTLS(t, n)
	b.Login("bob", "bobpw", "r")
	for i := 1; i <= 3; i++ {
		b.Send("<message to='alice@localhost/r' type='chat' id='m%d'><body>%d</body></message>", i, i)
	}
	for i := 1; i <= 3; i++ {
		if m := a.Await("message", isMsg); m.ID() != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %s", m)
		}
	}
	// Acknowledge only the first, then lose the connection.
	a.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	a.Send("<message to='bob@localhost/r' type='chat' id='x'><body>sync</body></message>")
	b.Await("sync", func(el *wire.Element) bool { return el.ID() == "x" })
	_ = a.Conn.Close()

	// The detached session stays bound and keeps queueing.
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		rs, _ := n.Router().Resources(context.Background(), "alice@localhost")
		if len(rs) != 1 {
			return fmt.Errorf("resources = %v", rs)
		}
		return nil
	})
	b.Send("<message to='alice@localhost/r' type='chat' id='m4'><body>4</body></message>")

	a2 := servertest.DialTLS(t, n)
	if err := a2.AuthSCRAM("SCRAM-SHA-256", "alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
	a2.Send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='1'/>", id)
	r := a2.ExpectName("resumed")
	if r.Attr("previd") != id || r.Attr("h") != "1" {
		t.Errorf("resumed = %s (alice sent 1 stanza)", r)
	}
	for _, want := range []string{"m2", "m3", "m4"} {
		m := a2.Await("message", isMsg)
		if m.ID() != want {
			t.Fatalf("redelivered %s, want %s", m, want)
		}
	}
	// The resumed session works both ways.
	a2.Send("<message to='bob@localhost/r' type='chat' id='after'><body>back</body></message>")
	b.Await("after", func(el *wire.Element) bool { return el.ID() == "after" })

	// Resuming an unknown or already resumed session fails.
	a3 := servertest.DialTLS(t, n)
	if err := a3.AuthSCRAM("SCRAM-SHA-256", "bob", "bobpw"); err != nil {
		t.Fatal(err)
	}
	a3.Send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", id)
	if f := a3.ExpectName("failed"); f.Child("item-not-found", wire.NSStanzas) == nil {
		t.Errorf("resume of another user's session: %s", f)
	}
}

func TestSMResumeTimeoutStoresOffline(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.SMResumeTimeout = 300 * time.Millisecond
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "bob", "bobpw")
	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "r")
	enableSM(t, a)
	a.Send("<presence/>")
	b := servertest.DialTLS(t, n)
	b.Login("bob", "bobpw", "r")
	b.Send("<message to='alice@localhost/r' type='chat' id='m1'><body>unacked</body></message>")
	a.Await("message", isMsg)
	_ = a.Conn.Close()

	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		rs, _ := n.Router().Resources(context.Background(), "alice@localhost")
		if len(rs) != 0 {
			return fmt.Errorf("still bound: %v", rs)
		}
		cnt, err := n.Store().CountOffline(context.Background(), "alice@localhost")
		if err != nil || cnt != 1 {
			return fmt.Errorf("offline count = %d, %v", cnt, err)
		}
		return nil
	})
}
