package clustertest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/muc"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestMUCRejoinAfterRoomEmptied is Smack's mucLeaveTest in a loop on real
// nodes (PostgreSQL, a Hazelcast member, node links): alice, on node ra,
// leaves a temporary room hosted by node rb, which empties it (rb drops
// the room and placement forgets it), and joins it again at once: when
// the leave is confirmed, and also right behind the leave, before the host
// handled it. The host then rebuilds the room and asks ra who of its
// sessions is in it; ra must already know that alice left (the leave's
// fan-out reached ra before that question), or the room would come back
// with alice as a plain occupant: no 201, no owner. Every join must get
// its self-presence with 110 and 201.
func TestMUCRejoinAfterRoomEmptied(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	co := placementCluster(t, "mucrejoin.")
	ra, ca := servertest.RunClusterNode(t, placementConfig(t.TempDir()), co("ra"), server.WithPlugins(muc.New()))
	_, cb := servertest.RunClusterNode(t, placementConfig(t.TempDir()), co("rb"), server.WithPlugins(muc.New()))
	awaitMembers(t, 2, ca, cb)
	nick := roomOwnedBy("rejoin", "rb", "ra", "rb") + "@conference." + domain + "/nick-one"
	servertest.CreateUser(t, ra, "mucrejoiner", userPass)
	alice := servertest.Dial(t, ra)
	alice.Login("mucrejoiner", userPass, "a")
	alice.Timeout = 10 * time.Second
	// self matches the self-presence (110) of that type; an error, or a
	// join's self-presence without 201 and ownership (a room rebuilt
	// around an occupant ra still listed), fails the test at once.
	self := func(typ string) func(*wire.Element) bool {
		return func(el *wire.Element) bool {
			if el.Name == "presence" && el.Type() == "error" {
				t.Fatalf("bounced: %s", el)
			}
			x := el.Child("x", "http://jabber.org/protocol/muc#user")
			if el.Name != "presence" || el.Type() != typ || el.From() != nick || x == nil || !strings.Contains(x.String(), `code="110"`) {
				return false
			}
			if typ == "" && (!strings.Contains(x.String(), `code="201"`) || !strings.Contains(x.String(), `affiliation="owner"`)) {
				t.Fatalf("want a new room's self-presence (201, owner), got %s", el)
			}
			return true
		}
	}
	joined, left := self(""), self("unavailable")
	join := fmt.Sprintf(`<presence to='%s'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, nick)
	leave := fmt.Sprintf(`<presence type='unavailable' to='%s'/>`, nick)
	alice.Send(join)
	alice.Await("the first join", joined)
	const rounds = 200
	for i := range rounds {
		alice.Send(leave)
		alice.Await(fmt.Sprintf("leave %d", i), left)
		alice.Send(join)
		alice.Await(fmt.Sprintf("join %d after the leave was confirmed", i), joined)
		alice.Send(leave + join)
		alice.Await(fmt.Sprintf("leave %d, followed at once by a join", i), left)
		alice.Await(fmt.Sprintf("join %d right behind the leave", i), joined)
	}
}
