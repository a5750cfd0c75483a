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
	pg := pgtest.Start(t) // its own server: this test freezes it
	hz := hztest.Shared(t, hzName+"-freeze")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, pg.URL(), postgres.Options{Logger: servertest.TestLogger(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	users := &auth.Users{Store: st, Domain: domain, Iterations: conf.Default().C2S.SCRAMIterations}
	for _, u := range []string{adminUser, "fa", "fb", "fj", "fr"} {
		pw := userPass
		if u == adminUser {
			pw = adminPass
		}
		if err := users.CreateUser(ctx, u, pw); err != nil {
			t.Fatal(err)
		}
	}
	nodes := newNodes(t, "fznode", 2, pg.URL(), hz)
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
	n1, n2 := nodes[0], nodes[1]

	a := login(t, n1, "fa", "a", 1)
	b := login(t, n2, "fb", "b", 1)
	befriend(t, a, b)
	// Juliet is on both nodes; Romeo, on node 1, writes to her.
	j1 := login(t, n1, "fj", "j1", 1)
	j2 := login(t, n2, "fj", "j2", 1)
	r := login(t, n1, "fr", "r", 1)
	awaitRoute(t, r, j2)
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
