package clustertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// TestArchiveOncePerAccount: messages between users on different nodes,
// live and offline, are archived exactly once in each account's archive,
// and the stanza-id a recipient's live copy carries (stamped by the
// sending node) is the ID in the recipient's archive.
func TestArchiveOncePerAccount(t *testing.T) {
	c := fixture(t)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	ua, ub, uc, ud := c.user(t, "arch-alice"), c.user(t, "arch-bob"), c.user(t, "arch-carol"), c.user(t, "arch-dave")
	a := login(t, n1, ua, "r", 1)
	b := login(t, n2, ub, "r", 1)
	d := login(t, n3, ud, "r", 1)
	defer a.Close()
	defer b.Close()
	defer d.Close()
	awaitRoute(t, a, b)
	awaitRoute(t, a, d)
	awaitRoute(t, b, a)

	const rounds = 20
	live := map[string]string{} // body → stanza-id bob's live copy carried
	for i := range rounds {
		ab, ba := fmt.Sprint("a-b-", i), fmt.Sprint("b-a-", i)
		send(a, bare(ub), ab)
		send(b, bare(ua), ba)
		send(a, bare(uc), fmt.Sprint("a-c-", i)) // carol is offline: stored on node 1
		send(d, bare(ub), fmt.Sprint("d-b-", i)) // node 3 → node 2
		m := b.Await(ab, isMsg(ab))
		for _, sid := range m.ChildrenNamed("stanza-id", mam.NSSID) {
			if sid.Attr("by") == bare(ub) {
				live[ab] = sid.Attr("id")
			}
		}
		if live[ab] == "" {
			t.Fatalf("bob's live copy has no stanza-id of his archive: %s", m)
		}
		a.Await(ba, isMsg(ba))
	}
	want := map[string]int{ua: 3 * rounds, ub: 3 * rounds, uc: rounds, ud: rounds}
	arch := c.store.Archive(mam.Store)
	read := func(u string) []storage.ArchiveEntry {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, err := arch.Query(ctx, bare(u), storage.ArchiveQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Entries
	}
	for u, n := range want {
		servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if got := len(read(u)); got < n {
				return fmt.Errorf("%s has %d archived messages, want %d", u, got, n)
			}
			return nil
		})
	}
	// A MAM query on each node flushes its writer: nothing more comes.
	for _, cl := range []*servertest.Client{a, b, d} {
		id := cl.NextID()
		cl.Send("<iq type='set' id='%s'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set></query></iq>", id)
		cl.Await("query answer", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
	}
	for u, n := range want {
		es := read(u)
		if len(es) != n {
			t.Errorf("%s has %d archived messages, want exactly %d", u, len(es), n)
		}
		seen := map[string]bool{}
		for _, e := range es {
			el, err := wire.Parse(e.Value, wire.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			body := el.ChildText("body", "")
			if seen[body] {
				t.Errorf("%s archived %q twice", u, body)
			}
			seen[body] = true
			if u == ub && live[body] != "" && live[body] != storage.FormatArchiveID(e.ID) {
				t.Errorf("bob's %q: live stanza-id %s, archive id %s", body, live[body], storage.FormatArchiveID(e.ID))
			}
		}
	}
}
