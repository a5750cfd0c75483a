package clustertest_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/server/clustertest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestCrashSenderFailedH: alice, on node 3 with resumable stream
// management, sends 6 messages to bob on node 1 and never asks for an
// acknowledgement (<r/>). Node 3 makes them safe (node 1 has each) and
// reports the count to its buddy. Then node 3 freezes, alice sends 4
// more (they stay in its socket) and it is SIGKILLed. alice reconnects
// to node 2 and tries to resume: <failed h='6'/>, so she sends again
// only 7-10; bob gets each of the 10 exactly once. Without the count
// (<failed/>) she would send all 10 again, and bob would get 1-6 twice.
func TestCrashSenderFailedH(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and three aviary processes")
	}
	users := map[string]string{"alice": "cs-alice", "bob": "cs-bob"}
	pg, _ := ownPostgres(t, users["alice"], users["bob"])
	nodes := newNodes(t, "cs", 3, pg.URL(), hztest.Shared(t, hzName+"-cs"))
	for _, n := range nodes {
		t.Cleanup(n.Kill)
	}
	startAll(t, nodes...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("---- %s log tail:\n%s", n.Cfg.Name, n.LogTail(60))
			}
		}
	})
	waitMembers(t, nodes, 3)
	n1, n2, victim := nodes[0], nodes[1], nodes[2]

	const m, safe = 10, 6
	var all []string
	for i := 1; i <= m; i++ {
		all = append(all, fmt.Sprint("sent ", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var admins []*clustertest.Admin
	for _, n := range []*clustertest.Node{n1, n2} {
		a, err := clustertest.AdminLogin(ctx, n.AdminURL(), adminUser+"@"+domain, adminPass)
		if err != nil {
			t.Fatal(err)
		}
		admins = append(admins, a)
	}
	// metric sums a metric over the survivors (node 3's buddy is one).
	metric := func(name string) float64 {
		t.Helper()
		sum := 0.0
		for _, a := range admins {
			v, err := a.Metric(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			sum += v
		}
		return sum
	}

	bob := login(t, n1, users["bob"], "b", 1)
	defer bob.Close()
	a := login(t, victim, users["alice"], "doomed", -1)
	awaitRoute(t, a, bob)
	alice := enableResume(t, a)
	for _, b := range all[:safe] {
		send(alice.Client, bob.JID, b)
	}
	awaitMessages(t, bob, all[:safe]...)
	// Node 3 has told its buddy that all 6 are safe.
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := metric("aviary_router_custody_inbound_counted_total"); n != safe {
			return fmt.Errorf("the survivors know %v of alice's stanzas safe, want %d", n, safe)
		}
		return nil
	})
	if err := victim.Freeze(); err != nil {
		t.Fatal(err)
	}
	for _, b := range all[safe:] {
		send(alice.Client, bob.JID, b)
	}
	victim.Kill()
	alice.Conn.Close()

	cl := servertest.DialAddr(t, n2.C2SAddr(), domain, false)
	defer cl.Close()
	if cl.Features.Child("starttls", wire.NSTLS) != nil {
		cl.StartTLS()
	}
	if err := cl.AuthSCRAM("SCRAM-SHA-256", users["alice"], userPass); err != nil {
		t.Fatal(err)
	}
	cl.Send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>", alice.id, alice.h)
	f := cl.MustNext()
	if f.Name != "failed" {
		t.Fatalf("resumption on node 2 after the crash: %s, want <failed/>", f)
	}
	had := 0 // what the client may count as handled: as a client would
	if s := f.Attr("h"); s != "" {
		h, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("bad h in %s", f)
		}
		had = h
	}
	if had != safe {
		t.Errorf("<failed/> says the server had %d of alice's messages, want %d: %s", had, safe, f)
	}
	if _, err := cl.Bind("back"); err != nil {
		t.Fatal(err)
	}
	for _, b := range all[min(had, m):] {
		send(cl, bob.JID, b)
	}
	awaitExactly(t, bob, cl, all, all[safe:])
	if n := metric("aviary_router_custody_inbound_answered_total"); n != 1 {
		t.Errorf("the survivors answered %v failed resumptions with a count, want 1", n)
	}
}
