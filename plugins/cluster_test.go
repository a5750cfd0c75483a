package plugins

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func members(names ...string) []Member {
	out := make([]Member, len(names))
	for i, n := range names {
		out[i] = Member{Name: n}
	}
	return out
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("room-%d@conference.example.org", i)
	}
	return out
}

// TestRendezvousAgreement: the owner depends on the member names only,
// not on the order a node happens to list them in.
func TestRendezvousAgreement(t *testing.T) {
	ms := members("node1", "node2", "node3", "node4")
	for _, k := range keys(2000) {
		want := Rendezvous(k, ms)
		for _, perm := range [][]Member{
			{ms[3], ms[2], ms[1], ms[0]},
			{ms[1], ms[3], ms[0], ms[2]},
			{ms[2], ms[0], ms[3], ms[1]},
		} {
			if got := Rendezvous(k, perm); got != want {
				t.Fatalf("%s: %s in one order, %s in another", k, want, got)
			}
		}
	}
}

// TestRendezvousStable pins owners and weights recorded from this
// implementation: every node of a cluster, and every version during a
// rolling upgrade, must compute the same owner, so the weight function
// must never change by accident (that would move every key of a running
// cluster at once, with two versions disagreeing).
func TestRendezvousStable(t *testing.T) {
	ms := members("node1", "node2", "node3")
	for key, want := range map[string]string{
		"a":                             "node3",
		"lobby":                         "node1",
		"room-1@conference.example.org": "node3",
		"room-2@conference.example.org": "node2",
		"pubsub/node/news":              "node1",
	} {
		if got := Rendezvous(key, ms); got != want {
			t.Errorf("%s: owner %s, want %s", key, got, want)
		}
	}
	if got := weight("node1", "lobby"); got != 0xea2074c48955affb {
		t.Errorf("weight(node1, lobby) = %#x", got)
	}
}

// TestRendezvousBalance: keys spread evenly over the members.
func TestRendezvousBalance(t *testing.T) {
	ms := members("node1", "node2", "node3", "node4", "node5")
	count := map[string]int{}
	ks := keys(50000)
	for _, k := range ks {
		count[Rendezvous(k, ms)]++
	}
	even := float64(len(ks)) / float64(len(ms))
	for _, m := range ms {
		if dev := math.Abs(float64(count[m.Name])-even) / even; dev > 0.05 {
			t.Errorf("%s owns %d keys, %.1f%% off the even share %v", m.Name, count[m.Name], 100*dev, even)
		}
	}
}

// TestRendezvousMinimalMovement: when a member joins, only the keys it
// wins move (to it), about 1/n of them; when one leaves, only its keys
// move, each to the member that would own it without it.
func TestRendezvousMinimalMovement(t *testing.T) {
	before := members("node1", "node2", "node3")
	joined := members("node1", "node2", "node3", "node4")
	ks := keys(20000)
	moved := 0
	for _, k := range ks {
		a, b := Rendezvous(k, before), Rendezvous(k, joined)
		if a != b {
			moved++
			if b != "node4" {
				t.Fatalf("%s moved from %s to %s on node4's join", k, a, b)
			}
		}
	}
	if share := float64(moved) / float64(len(ks)); math.Abs(share-0.25) > 0.02 {
		t.Errorf("%.3f of the keys moved on a join to 4 members, want about 0.25", share)
	}
	left := members("node1", "node3", "node4") // node2 leaves
	for _, k := range ks {
		a, b := Rendezvous(k, joined), Rendezvous(k, left)
		if a != "node2" && a != b {
			t.Fatalf("%s moved from %s to %s though %s stayed", k, a, b, a)
		}
		if a == "node2" && b == "node2" {
			t.Fatalf("%s still owned by the member that left", k)
		}
	}
}

// TestRendezvousDraining: draining members own nothing, unless every
// member drains; no members, no owner.
func TestRendezvousDraining(t *testing.T) {
	ms := members("node1", "node2", "node3")
	ms[1].Draining = true
	for _, k := range keys(1000) {
		if o := Rendezvous(k, ms); o == "node2" {
			t.Fatalf("%s owned by a draining member", k)
		}
		// Draining node2 moves exactly the keys node2 would own.
		full := Rendezvous(k, members("node1", "node2", "node3"))
		if full != "node2" && Rendezvous(k, ms) != full {
			t.Fatalf("%s moved off %s because node2 drains", k, full)
		}
	}
	all := slices.Clone(ms)
	for i := range all {
		all[i].Draining = true
	}
	if o := Rendezvous("k", all); o == "" {
		t.Fatal("no owner when every member drains")
	}
	if o := Rendezvous("k", nil); o != "" {
		t.Fatalf("owner %q without members", o)
	}
}

// BenchmarkRendezvous is the cost modules pay per stanza to find a key's
// owner among 5 members.
func BenchmarkRendezvous(b *testing.B) {
	ms := members("node1", "node2", "node3", "node4", "node5")
	b.ReportAllocs()
	for b.Loop() {
		Rendezvous("room-42@conference.example.org", ms)
	}
}
