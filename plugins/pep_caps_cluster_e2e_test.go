package plugins_test

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// stampNode is a node whose name sorts after the tune node's.
const stampNode = "urn:example:stamp"

// sendCaps sends the peer's available presence with caps version ver
// (hashed: a sha-1 ver a server can verify and share).
func (p *pepPeer) sendCaps(ver string, hashed bool) {
	hash := ""
	if hashed {
		hash = ` hash='sha-1'`
	}
	p.write(`<presence><c xmlns='http://jabber.org/protocol/caps'` + hash + ` node='https://example.org/client' ver='` + ver + `'/></presence>`)
}

// capsQueries reads n caps queries a holding peer got, keyed by the node
// that asks (the query's ID names it).
func (p *pepPeer) capsQueries(t *testing.T, n int) map[string]*wire.Element {
	t.Helper()
	out := map[string]*wire.Element{}
	for len(out) < n {
		select {
		case q := <-p.queries:
			rest, _ := strings.CutPrefix(q.ID(), "pepcaps-")
			h, _, _ := strings.Cut(rest, "-")
			node, err := hex.DecodeString(h)
			if err != nil {
				t.Fatalf("%s: caps query %s names no node", p.name, q)
			}
			out[string(node)] = q
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: %d of %d caps queries within 20s", p.name, len(out), n)
		}
	}
	return out
}

// answerCaps answers a caps query with info (VER replaced by ver).
func (p *pepPeer) answerCaps(q *wire.Element, info, ver string) {
	p.write(`<iq type='result' id='` + q.ID() + `' to='` + q.From() + `'>` + strings.ReplaceAll(info, "VER", ver) + `</iq>`)
}

// expectSet reads the peer's next len(want) events and fails unless they
// are want in some order.
func (p *pepPeer) expectSet(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for range want {
		select {
		case ev, ok := <-p.events:
			if !ok {
				t.Fatalf("%s: stream closed waiting for %q", p.name, want)
			}
			got = append(got, ev)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: got %q within 20s, want %q", p.name, got, want)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("%s: got events %q, want %q in any order", p.name, got, want)
	}
}

// TestPEPCapsChangeWhilePublishingInCluster: on two real nodes
// (PostgreSQL and Hazelcast), Romeo's client (on b) changes its caps
// while Juliet publishes from her resource on b, and the two nodes
// where Juliet has sessions resolve his caps at different times (the
// test holds his client's answers). He gets each item once, as XEP-0163
// asks: the notification or the last item, never neither or both.
// Juliet's home is a, her first resource.
func TestPEPCapsChangeWhilePublishingInCluster(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t, "pepcaps", "juliet", "romeo")
	for _, r := range [][2]string{{"juliet", "romeo"}, {"romeo", "juliet"}} {
		_, _, _, _, err := a.Store().UpdateRosterItem(ctx, r[0]+"@localhost", r[1]+"@localhost", storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
			it.Subscription, it.InRoster = storage.SubBoth, true
			return it, false, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setup := servertest.Dial(t, a)
	t.Cleanup(setup.Close)
	setup.Login("juliet", "pw-juliet", "setup")
	for _, x := range [][2]string{{"http://jabber.org/protocol/tune", "t1"}, {stampNode, "s1"}} {
		el := iq(setup, `<iq type='set' id='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+x[0]+`'><item id='`+x[1]+`'><x xmlns='`+x[0]+`'/></item></publish></pubsub></iq>`)
		if el.Type() != "result" {
			t.Fatalf("setup publish %s: %s", x[1], el)
		}
	}
	setup.Close()

	julietA := newPEPPeer(t, a, "juliet", "a", capsInfo)
	julietB := newPEPPeer(t, b, "juliet", "b", capsInfo)
	juliets := []*pepPeer{julietA, julietB}
	for _, p := range juliets {
		p.expect(t, "publish t1")
	}
	romeo := newHoldingPEPPeer(t, b, "romeo", "r")
	for _, p := range juliets {
		p.waitOnline(t, "romeo@localhost/r")
	}
	publish := func(from *pepPeer, id string) {
		t.Helper()
		iqOn(t, from, pubIQ(id))
		for _, p := range juliets {
			p.expect(t, "publish "+id)
		}
	}

	// His caps version is no hash: each node asks his client, none can
	// share the answer. The home resolves it first and sends him the
	// last tune; b still waits when Juliet publishes t2 there. Before,
	// b left him out and, not being the home, sent nothing when its
	// answer came: t2 never reached him.
	t.Run("publish where his caps are still unknown", func(t *testing.T) {
		romeo.sendCaps("legacy-1", false)
		qs := romeo.capsQueries(t, 2)
		romeo.answerCaps(qs["node-a"], capsInfo, "legacy-1")
		romeo.expect(t, "publish t1")
		publish(julietB, "t2")
		romeo.answerCaps(qs["node-b"], capsInfo, "legacy-1")
		romeo.expect(t, "publish t2")
		publish(julietA, "t3")
		romeo.expect(t, "publish t3")
	})

	// His caps (a verifiable hash, asking for tunes and stamps) are
	// resolved on b first, and shared; the home still waits for its own
	// answer when Juliet publishes t4 from b. He gets t4 once and the
	// last stamp. Before, b notified him and the home, resolving later,
	// sent t4 again as the last item of a node he newly wanted.
	t.Run("publish before the home resolves his caps", func(t *testing.T) {
		romeo.write(`<presence/>`) // no caps: he wants nothing for now
		info := strings.Replace(capsInfo, "<feature", "<feature var='"+stampNode+"+notify'/><feature", 1)
		q, err := wire.Parse([]byte(info), wire.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		ver := pep.CapsHash(q)
		romeo.sendCaps(ver, true)
		qs := romeo.capsQueries(t, 2)
		romeo.answerCaps(qs["node-b"], info, ver)
		servertest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
			_, err := a.Store().GetProperty(ctx, "pep.caps."+ver)
			return err
		})
		publish(julietB, "t4")
		romeo.answerCaps(qs["node-a"], info, ver)
		romeo.expectSet(t, "publish t4", "publish s1")
		publish(julietA, "t5")
		romeo.expect(t, "publish t5")
	})
}
