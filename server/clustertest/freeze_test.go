package clustertest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/clustertest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// TestPostgresFreezeBlocking (issue 16): PostgreSQL hangs (every process
// SIGSTOPped) under a two-node cluster of its own. Messages between
// online users on different nodes keep being delivered, and a block set
// on one node just before the freeze is enforced on both nodes all
// through it: the block lists are in memory and kept current through
// the nodes' links, not read from the database per message.
func TestPostgresFreezeBlocking(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and two aviary processes")
	}
	pg, _, nodes := startFreezable(t, "fznode", "fa", "fb", "fj", "fr")
	n1, n2 := nodes[0], nodes[1]

	a := login(t, n1, "fa", "a", 1)
	b := login(t, n2, "fb", "b", 1)
	befriend(t, a, b)
	// Juliet is on both nodes; Romeo, on node 1, writes to her.
	j1 := login(t, n1, "fj", "j1", 1)
	j2 := login(t, n2, "fj", "j2", 1)
	r := login(t, n1, "fr", "r", 1)
	awaitAvailable(t, r, j2) // the message below goes to both of her resources
	send(r, bare("fj"), "before the block")
	j1.Await("romeo's message", isMsg("before the block"))
	j2.Await("romeo's message", isMsg("before the block"))

	// Juliet blocks Romeo on node 2; node 1 must know by the time she
	// has the answer. Then the database hangs.
	j2.Send("<iq type='set' id='block1'><block xmlns='urn:xmpp:blocking'><item jid='%s'/></block></iq>", bare("fr"))
	if res := j2.Await("block result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "block1" }); res.Type() != "result" {
		t.Fatalf("block: %s", res)
	}
	if err := pg.Freeze(); err != nil {
		t.Fatal(err)
	}

	romeoBlocked := func(round int) {
		t.Helper()
		id := fmt.Sprintf("blocked%d", round)
		r.Send("<message to='%s' type='chat' id='%s'><body>blocked %d</body></message>", bare("fj"), id, round)
		e := r.Await("romeo's bounce "+id, func(el *wire.Element) bool { return el.Name == "message" && el.ID() == id })
		if cond := stanzaErr(e); cond != "service-unavailable" {
			t.Errorf("romeo's message to juliet during the freeze (round %d): %s; want service-unavailable", round, e)
		}
		// To her resource on node 1, whose node learnt the block from node 2.
		id = fmt.Sprintf("blockedfull%d", round)
		r.Send("<message to='%s' type='chat' id='%s'><body>blocked %d</body></message>", j1.JID, id, round)
		e = r.Await("romeo's bounce "+id, func(el *wire.Element) bool { return el.Name == "message" && el.ID() == id })
		if cond := stanzaErr(e); cond != "service-unavailable" {
			t.Errorf("romeo's message to %s during the freeze (round %d): %s; want service-unavailable", j1.JID, round, e)
		}
		// Juliet on node 1 cannot write to him either.
		id = fmt.Sprintf("toromeo%d", round)
		j1.Send("<message to='%s' type='chat' id='%s'><body>to romeo %d</body></message>", r.JID, id, round)
		e = j1.Await("juliet's bounce "+id, func(el *wire.Element) bool { return el.Name == "message" && el.ID() == id })
		if e.Type() != "error" || e.Child("error", "").Child("blocked", "urn:xmpp:blocking:errors") == nil {
			t.Errorf("juliet writing to romeo during the freeze (round %d): %s; want not-acceptable with <blocked/>", round, e)
		}
	}
	romeoBlocked(1)

	// Online users on different nodes keep talking, both ways, for longer
	// than database.timeout (2s here) several times over.
	for i := range 20 {
		send(a, b.JID, fmt.Sprintf("a to b during the freeze %d", i))
		send(b, a.JID, fmt.Sprintf("b to a during the freeze %d", i))
		b.Await("a's message", isMsg(fmt.Sprintf("a to b during the freeze %d", i)))
		a.Await("b's message", isMsg(fmt.Sprintf("b to a during the freeze %d", i)))
		if i%5 == 4 {
			romeoBlocked(i)
		}
	}
	// Nothing of Romeo's reached Juliet on either node.
	for _, j := range []*servertest.Client{j1, j2} {
		j.Send("<iq type='get' id='ping-%s'><ping xmlns='urn:xmpp:ping'/></iq>", strings.ReplaceAll(j.JID, "/", "-"))
		j.Await("own ping", func(el *wire.Element) bool {
			if el.Name == "message" && wire.BareJID(el.From()) == bare("fr") {
				t.Errorf("%s got romeo's %s", j.JID, el)
			}
			return el.Name == "iq" && strings.HasPrefix(el.ID(), "ping-")
		})
	}

	if err := pg.Thaw(); err != nil {
		t.Fatal(err)
	}
	romeoBlocked(100)
}

// TestPostgresFreezeOffline (issues 23, 24): PostgreSQL hangs (SIGSTOP)
// while a message is sent to a user who is offline. It is not bounced:
// it waits on the sender's node, its sender's XEP-0198 acknowledgement
// waits with it, and once PostgreSQL answers again (SIGCONT) it is
// stored, then acknowledged, then delivered at the recipient's next
// login.
func TestPostgresFreezeOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and two aviary processes")
	}
	pg, st, nodes := startFreezable(t, "fonode", "oa", "ob")
	n1, n2 := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := clustertest.AdminLogin(ctx, n1.AdminURL(), adminUser+"@"+domain, adminPass)
	if err != nil {
		t.Fatal(err)
	}
	offline := func() int {
		t.Helper()
		n, err := st.CountOffline(ctx, bare("ob"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	a := login(t, n1, "oa", "a", -1)
	a.Timeout = 30 * time.Second
	a.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	a.Await("sm enabled", func(el *wire.Element) bool { return el.Name == "enabled" })
	// bounced fails the test on an error answering one of a's messages.
	bounced := func(el *wire.Element) {
		if el.Name == "message" && el.Type() == "error" {
			t.Errorf("the sender got an error: %s", el)
		}
	}
	acked := func(h string) func(*wire.Element) bool {
		return func(el *wire.Element) bool {
			bounced(el)
			return el.Name == "a" && el.Attr("h") == h
		}
	}
	// Before the freeze: stored at once (and node 1 has learnt ob's
	// block list, which the freeze would otherwise keep from it).
	send(a, bare("ob"), "before the freeze")
	a.Send("<r xmlns='urn:xmpp:sm:3'/>")
	a.Await("ack 1", acked("1"))
	if n := offline(); n != 1 {
		t.Fatalf("%d offline messages before the freeze, want 1", n)
	}

	if err := pg.Freeze(); err != nil {
		t.Fatal(err)
	}
	a.Send("<message to='%s' type='chat' id='frozen'><body>during the freeze</body></message>", bare("ob"))
	a.Send("<r xmlns='urn:xmpp:sm:3'/>")
	// The store fails after database.timeout (2s): the message waits.
	servertest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		n, err := admin.On(n1.AdminURL()).Metric(ctx, "aviary_router_offline_retry_waiting")
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%v messages waiting for offline storage on %s", n, n1.Cfg.Name)
		}
		return nil
	})
	// Nothing acknowledged it while PostgreSQL is frozen: the answer to a
	// ping sent after the <r/> comes first (acknowledgements are answered
	// in order, so an <a h='2'/> not held would be ahead of it).
	a.Send("<iq type='get' id='ping1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>", domain)
	a.Await("ping answer", func(el *wire.Element) bool {
		bounced(el)
		if el.Name == "a" {
			t.Errorf("acknowledged while PostgreSQL is frozen: %s", el)
		}
		return el.Name == "iq" && el.ID() == "ping1"
	})

	if err := pg.Thaw(); err != nil {
		t.Fatal(err)
	}
	// Acknowledged once stored: it is in the database when <a/> comes.
	a.Await("ack 2", acked("2"))
	if n := offline(); n != 2 {
		t.Fatalf("%d offline messages when the sender got its acknowledgement, want 2", n)
	}
	b := login(t, n2, "ob", "b", 1)
	awaitOffline(t, b, "before the freeze", "during the freeze")
	// And no error reached the sender meanwhile.
	a.Send("<iq type='get' id='ping2' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>", domain)
	a.Await("ping answer", func(el *wire.Element) bool {
		bounced(el)
		return el.Name == "iq" && el.ID() == "ping2"
	})
}

// startFreezable starts what a test that freezes PostgreSQL needs: a
// PostgreSQL of its own with the admin's and users' accounts
// (ownPostgres), a Hazelcast member of its own and two nodes (prefix1,
// prefix2) on them, clustered; it returns PostgreSQL and a store on it.
// Cleanup thaws PostgreSQL and, when the test failed, logs the nodes' log
// tails.
func startFreezable(t *testing.T, prefix string, users ...string) (*pgtest.Server, *postgres.Store, []*clustertest.Node) {
	t.Helper()
	pg, st := ownPostgres(t, users...)
	hz := hztest.Shared(t, hzName+"-"+prefix)
	nodes := newNodes(t, prefix, 2, pg.URL(), hz)
	for _, n := range nodes {
		t.Cleanup(n.Kill)
	}
	startAll(t, nodes...)
	t.Cleanup(func() {
		_ = pg.Thaw()
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("---- %s log tail:\n%s", n.Cfg.Name, n.LogTail(60))
			}
		}
	})
	waitMembers(t, nodes, 2)
	return pg, st, nodes
}

// ownPostgres starts a PostgreSQL of the test's own (the test stops or
// freezes it) with the admin's and users' accounts, and opens a store on
// it (database.timeout 2s, as the nodes).
func ownPostgres(t *testing.T, users ...string) (*pgtest.Server, *postgres.Store) {
	t.Helper()
	pg := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, pg.URL(), postgres.Options{Logger: servertest.TestLogger(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	accounts := &auth.Users{Store: st, Domain: domain, Iterations: conf.Default().C2S.SCRAMIterations}
	if err := accounts.CreateUser(ctx, adminUser, adminPass); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := accounts.CreateUser(ctx, u, userPass); err != nil {
			t.Fatal(err)
		}
	}
	return pg, st
}

// waitMembers waits until every node's admin overview lists count
// healthy members (the admin account must exist in their database).
func waitMembers(t testing.TB, nodes []*clustertest.Node, count int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := clustertest.AdminLogin(ctx, nodes[0].AdminURL(), adminUser+"@"+domain, adminPass)
	if err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, n := range nodes {
			o, err := a.On(n.AdminURL()).Overview(ctx)
			if err != nil {
				return err
			}
			if !o.Clustered || len(o.Nodes) != count {
				return fmt.Errorf("%s: clustered %v, %d members", n.Cfg.Name, o.Clustered, len(o.Nodes))
			}
		}
		return nil
	})
}
