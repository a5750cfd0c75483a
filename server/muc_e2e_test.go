package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestLastNodeStopTellsOccupants332: a lone node that stops tells each
// occupant of its rooms, before the session closes, that it leaves the
// room because the service shuts down (XEP-0045 status 332), so clients
// show why instead of a silent disconnect.
func TestLastNodeStopTellsOccupants332(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "pw")
	c := servertest.Dial(t, n)
	c.Login("alice", "pw", "r")
	c.Send("<presence to='room332@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	c.Await("self-presence", func(el *wire.Element) bool {
		return el.Name == "presence" && el.From() == "room332@conference.localhost/alice" && el.Type() == "" && hasCode(el, "110")
	})
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- n.Stop(ctx)
	}()
	c.Await("unavailable with 332", func(el *wire.Element) bool {
		return el.Name == "presence" && el.From() == "room332@conference.localhost/alice" && el.Type() == "unavailable" &&
			hasCode(el, "110") && hasCode(el, "332")
	})
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func hasCode(el *wire.Element, code string) bool {
	x := el.Child("x", "http://jabber.org/protocol/muc#user")
	if x == nil {
		return false
	}
	for _, s := range x.ChildrenNamed("status", "") {
		if s.Attr("code") == code {
			return true
		}
	}
	return false
}
