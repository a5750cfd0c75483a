package c2s_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

func TestTwoUsersExchangeMessage(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "bob", "bobpw")
	a := servertest.Dial(t, n)
	a.Login("alice", "alicepw", "home")
	b := servertest.Dial(t, n)
	b.Login("bob", "bobpw", "work")
	a.Send("<message to='bob@localhost/work' type='chat' id='m1' from='mallory@evil'><body>hello bob</body></message>")
	m := b.Await("message", func(el *wire.Element) bool { return el.Name == "message" })
	if m.From() != "alice@localhost/home" || m.ChildText("body", "") != "hello bob" {
		t.Fatalf("got %s", m)
	}
	if m.NS() != "" && m.NS() != wire.NSClient {
		t.Errorf("namespace %q", m.NS())
	}
	a.Close()
	if err := a.ExpectClosed(); err == nil {
		t.Error("stream not closed")
	}

	// The metrics counted the message and the close.
	servertest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		got, err := metricValues(n)
		if err != nil {
			return err
		}
		if got["aviary_c2s_stanzas_in_total/message"] < 1 || got["aviary_c2s_stanzas_out_total/message"] < 1 ||
			got["aviary_c2s_closes_total/client_closed"] < 1 || got["aviary_c2s_sessions"] != 1 {
			return fmt.Errorf("metrics %v", got)
		}
		return nil
	})
}
