package clustertest_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/muc"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestMUCSurvivesHostKill is group chat's proof on real nodes
// (PostgreSQL, a Hazelcast member, node links, the built-in xep0045.muc):
// one room with an occupant on each of three nodes; the room's host, a
// separate process, is SIGKILLed while alice sends a steady stream of
// messages. alice (ma) and carol (mc) stay in the room without joining
// again and receive every message; dave, whose session died with the
// host, leaves with an unavailable presence; the room keeps its owner.
func TestMUCSurvivesHostKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and a node process")
	}
	co := placementCluster(t, "muc.")
	ma, ca := servertest.RunClusterNode(t, placementConfig(t.TempDir()), co("ma"), server.WithPlugins(muc.New()))
	mc, cc := servertest.RunClusterNode(t, placementConfig(t.TempDir()), co("mc"), server.WithPlugins(muc.New()))
	b := co("mb")
	child, childC2S := startPlacementChildC2S(t, childSpec{Database: b.DatabaseURL, Member: b.Member, HZName: b.ClusterName,
		Prefix: b.Prefix, Name: "mb", Secret: secret, Dir: t.TempDir(), MUC: true})
	if childC2S == "" {
		t.Fatal("the child did not say its c2s address")
	}
	awaitMembers(t, 3, ca, cc)
	room := roomOwnedBy("room", "mb", "ma", "mb", "mc") + "@conference." + domain
	// Accounts of their own: the package's tests share one database.
	for _, u := range []string{"mucalice", "muccarol", "mucdave"} {
		servertest.CreateUser(t, ma, u, userPass)
	}
	alice := servertest.Dial(t, ma)
	alice.Login("mucalice", userPass, "a")
	carol := servertest.Dial(t, mc)
	carol.Login("muccarol", userPass, "c")
	dave := servertest.DialAddr(t, childC2S, domain, false)
	dave.Login("mucdave", userPass, "d")
	ar, cr, dr := startReader(alice), startReader(carol), startReader(dave)
	selfPresence := func(el *wire.Element) bool {
		x := el.Child("x", "http://jabber.org/protocol/muc#user")
		return el.Name == "presence" && el.Type() == "" && strings.HasPrefix(el.From(), room+"/") && x != nil &&
			strings.Contains(x.String(), `code="110"`)
	}
	// alice creates the room (locked until configured) and makes it an
	// instant room.
	alice.Send(`<presence to='%s/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	ar.await(t, "alice's join", selfPresence)
	alice.Send(`<iq type='set' id='cfg' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`, room)
	ar.await(t, "the instant room", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "cfg" && el.Type() == "result" })
	carol.Send(`<presence to='%s/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	cr.await(t, "carol's join", selfPresence)
	dave.Send(`<presence to='%s/dave'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	dr.await(t, "dave's join", selfPresence)
	ar.await(t, "dave's presence at alice", func(el *wire.Element) bool { return el.Name == "presence" && el.From() == room+"/dave" })
	cr.await(t, "dave's presence at carol", func(el *wire.Element) bool { return el.Name == "presence" && el.From() == room+"/dave" })
	isBody := func(b string) func(*wire.Element) bool {
		return func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == b }
	}
	alice.Send(`<message to='%s' type='groupchat' id='m0'><body>m0</body></message>`, room)
	for _, r := range []*reader{ar, cr, dr} {
		r.await(t, "m0", isBody("m0"))
	}

	const total = 150
	killAt := 30
	start := time.Now()
	var killed time.Time
	pace := time.NewTicker(20 * time.Millisecond)
	defer pace.Stop()
	for i := 1; i <= total; i++ {
		<-pace.C
		alice.Send(`<message to='%s' type='groupchat' id='m%d'><body>m%d</body></message>`, room, i, i)
		if i == killAt {
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = time.Now()
		}
	}
	// Every message reaches alice and carol, from alice's room JID; none
	// bounces; neither is thrown out.
	for _, who := range []struct {
		name string
		r    *reader
	}{{"carol", cr}, {"alice", ar}} {
		servertest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
			seen := map[string]int{}
			for _, el := range who.r.snapshot() {
				if el.Type() == "error" {
					return fmt.Errorf("%s got an error: %s", who.name, el)
				}
				if el.Name == "presence" && el.Type() == "unavailable" && el.From() == room+"/"+who.name {
					return fmt.Errorf("%s was thrown out: %s", who.name, el)
				}
				if el.Name == "message" && el.From() == room+"/alice" {
					seen[el.ChildText("body", "")]++
				}
			}
			var missing []string
			for i := 0; i <= total; i++ {
				if seen[fmt.Sprintf("m%d", i)] == 0 {
					missing = append(missing, fmt.Sprintf("m%d", i))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%s is missing %d messages: %v", who.name, len(missing), missing)
			}
			return nil
		})
	}
	// dave's session died with mb: carol is told he left.
	cr.await(t, "dave's departure", func(el *wire.Element) bool {
		return el.Name == "presence" && el.Type() == "unavailable" && el.From() == room+"/dave"
	})
	// carol speaks in the moved room without joining again, and alice,
	// still its owner, reads its configuration.
	carol.Send(`<message to='%s' type='groupchat' id='c1'><body>still here</body></message>`, room)
	ar.await(t, "carol's message after the move", func(el *wire.Element) bool {
		return el.Name == "message" && el.From() == room+"/carol" && el.ChildText("body", "") == "still here"
	})
	alice.Send(`<iq type='get' id='cfg2' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`, room)
	ar.await(t, "the owner's form after the move", func(el *wire.Element) bool { return el.ID() == "cfg2" && el.Type() == "result" })

	dups, gap := 0, time.Duration(0)
	seen := map[string]bool{}
	var last time.Time
	cr.mu.Lock()
	for i, el := range cr.got {
		if el.Name == "message" && el.From() == room+"/alice" {
			b := el.ChildText("body", "")
			if seen[b] {
				dups++
			}
			seen[b] = true
			if !last.IsZero() && cr.at[i].Sub(last) > gap {
				gap = cr.at[i].Sub(last)
			}
			last = cr.at[i]
		}
	}
	cr.mu.Unlock()
	t.Logf("room %s: host mb killed %v after the first of %d messages; carol got every one, %d twice; room unavailable (longest pause at carol) %v; messages lost 0",
		room, killed.Sub(start).Round(time.Millisecond), total+1, dups, gap.Round(time.Millisecond))
}

// awaitMembers waits until each of cs sees n members.
func awaitMembers(t *testing.T, n int, cs ...*hazelcast.Cluster) {
	t.Helper()
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, c := range cs {
			ms, _ := c.Members(t.Context())
			if len(ms) != n {
				return fmt.Errorf("%s sees %d members", c.NodeName(), len(ms))
			}
		}
		return nil
	})
}

// roomOwnedBy returns the first room name prefix0, prefix1... that owner
// hosts among the members named.
func roomOwnedBy(prefix, owner string, members ...string) string {
	var ms []plugins.Member
	for _, m := range members {
		ms = append(ms, plugins.Member{Name: m})
	}
	for i := 0; ; i++ {
		if k := fmt.Sprintf("%s%d", prefix, i); plugins.Rendezvous(k, ms) == owner {
			return k
		}
	}
}
