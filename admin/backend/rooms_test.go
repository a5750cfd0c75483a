package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// TestRoomsReportAndDestroy: on a running node, the admin API's room
// source lists a room a client made, with its occupant, and destroys it:
// the occupant is told, and the room is gone from the list.
func TestRoomsReportAndDestroy(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "pw")
	c := servertest.Dial(t, n)
	c.Login("alice", "pw", "a")
	room := "ops@conference." + cfg.Domain
	c.Send(`<presence to='%s/alice'/>`, room) // no MUC element: an instant room
	c.Await("alice's join", func(el *wire.Element) bool { return el.Name == "presence" && el.From() == room+"/alice" })
	src := roomSource(n)
	if src == nil {
		t.Fatal("no room source while group chat is on")
	}
	ctx := context.Background()
	var list []string
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		rooms, err := src.Rooms(ctx)
		if err != nil {
			return err
		}
		list = nil
		for _, r := range rooms {
			list = append(list, fmt.Sprintf("%s %d %s %v", r.JID, r.Occupants, r.Node, r.People))
		}
		if len(rooms) != 1 || rooms[0].JID != room || rooms[0].Occupants != 1 || rooms[0].Node != "test-node" ||
			rooms[0].People[0].Nick != "alice" || rooms[0].People[0].Affiliation != "owner" {
			return fmt.Errorf("rooms: %v", list)
		}
		return nil
	})
	if err := src.DestroyRoom(ctx, "nosuch@conference."+cfg.Domain, ""); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("destroying a room that does not exist: %v", err)
	}
	if err := src.DestroyRoom(ctx, room, "maintenance"); err != nil {
		t.Fatal(err)
	}
	gone := c.Await("the destruction", func(el *wire.Element) bool {
		return el.Name == "presence" && el.Type() == "unavailable" && el.From() == room+"/alice"
	})
	if !strings.Contains(gone.String(), "maintenance") {
		t.Errorf("destroy presence lacks the reason: %s", gone)
	}
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		rooms, err := src.Rooms(ctx)
		if err != nil || len(rooms) != 0 {
			return fmt.Errorf("after destroy: %v %v", rooms, err)
		}
		return nil
	})
	off := servertest.DefaultConfig(t)
	f := false
	off.MUC.Enabled = &f
	if roomSource(servertest.RunServer(t, off)) != nil {
		t.Error("a room source while group chat is off")
	}
}
