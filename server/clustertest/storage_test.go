package clustertest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// stanzaErr returns the condition of a stanza error reply, or "".
func stanzaErr(el *wire.Element) string {
	if el.Type() != "error" {
		return ""
	}
	e := el.Child("error", "")
	if e == nil {
		return "?"
	}
	for _, ch := range e.Children {
		if ch.NS() == wire.NSStanzas && ch.Name != "text" {
			return ch.Name
		}
	}
	return "?"
}

// rosterGet asks for the roster and returns the reply.
func rosterGet(cl *servertest.Client) *wire.Element {
	cl.T.Helper()
	id := cl.NextID()
	cl.Send("<iq type='get' id='%s'><query xmlns='jabber:iq:roster'/></iq>", id)
	return cl.Await("roster reply "+id, func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
}

// TestPostgresRestart (issue 3): PostgreSQL restarts under a running
// node. Connected sessions stay up; what needs the database during the
// outage gets a stanza error within database.timeout instead of hanging,
// except a message for offline storage, which waits until the database
// is back (issues 23, 24); after the restart everything works again and
// nothing accepted before it or during it is lost.
func TestPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and an aviary process")
	}
	pg, st := ownPostgres(t, "pa", "pb", "pc") // this test stops it
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := newNodes(t, "pgnode", 1, pg.URL(), nil)[0]
	t.Cleanup(n.Kill)
	startAll(t, n)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- node log tail:\n%s", n.LogTail(80))
		}
	})

	a := login(t, n, "pa", "a", 1)
	b := login(t, n, "pb", "b", 1)
	befriend(t, a, b)
	send(a, bare("pc"), "before the restart")
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if k, err := st.CountOffline(ctx, bare("pc")); err != nil || k != 1 {
			return fmt.Errorf("offline %d %v", k, err)
		}
		return nil
	})

	// A hung database (every PostgreSQL process stopped with SIGSTOP:
	// connections stay open, nothing answers): the roster answer is an
	// error once database.timeout (2s) has passed, not a hang.
	if err := pg.Freeze(); err != nil {
		t.Fatal(err)
	}
	a.Timeout = 15 * time.Second
	asked := time.Now()
	r := rosterGet(a)
	t.Logf("roster with PostgreSQL frozen: %s after %v", stanzaErr(r), time.Since(asked))
	switch cond := stanzaErr(r); cond {
	case "internal-server-error", "resource-constraint":
	default:
		t.Errorf("roster with PostgreSQL frozen: want internal-server-error or resource-constraint, got %s", r)
	}
	if err := pg.Thaw(); err != nil {
		t.Fatal(err)
	}
	if r := rosterGet(a); r.Type() != "result" {
		t.Errorf("roster after thawing: %s", r)
	}

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = pg.Start()
		}
	})

	// Sessions stay up and local delivery between online users works.
	send(a, b.JID, "during the outage")
	b.Await("message", isMsg("during the outage"))

	// The roster needs the database: a stanza error, not a hang. The
	// client waits up to 15s; database.timeout is 2s.
	asked = time.Now()
	r = rosterGet(a)
	t.Logf("roster during the outage: %s after %v", stanzaErr(r), time.Since(asked))
	switch cond := stanzaErr(r); cond {
	case "internal-server-error", "resource-constraint":
	default:
		t.Errorf("roster during the outage: want internal-server-error or resource-constraint, got %s", r)
	}
	// A message for an offline user cannot be stored now: it waits on
	// the node until the database is back, neither bounced nor lost
	// (delivered at pc's login below; a bounce would not be stored).
	a.Send("<message to='%s' type='chat' id='waits'><body>to storage during the outage</body></message>", bare("pc"))

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	// The pool reconnects by itself.
	servertest.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		if r := rosterGet(a); r.Type() != "result" {
			return fmt.Errorf("roster: %s", r)
		}
		return nil
	})
	r = rosterGet(a)
	if r.Child("query", wire.NSRoster).Child("item", "") == nil {
		t.Errorf("roster after the restart lost bob: %s", r)
	}
	send(a, b.JID, "after the restart")
	b.Await("message", isMsg("after the restart"))

	// Accepted before the restart, and during the outage: there.
	cc := login(t, n, "pc", "c", 1)
	awaitOffline(t, cc, "before the restart", "to storage during the outage")
	send(b, bare("pc"), "stored after the restart")
	cc.Await("live message", isMsg("stored after the restart"))
}

// TestConcurrentWritersOnOneDatabase (issue 3): two server processes
// write the same account at the same moment (roster changes from both,
// offline messages to the same user from both); nothing is lost.
func TestConcurrentWritersOnOneDatabase(t *testing.T) {
	c := fixture(t)
	n1, n2 := c.nodes[0], c.nodes[1]
	const perNode = 40

	t.Run("roster from two nodes", func(t *testing.T) {
		u := c.user(t, "roster")
		x := login(t, n1, u, "x", 1)
		y := login(t, n2, u, "y", 1)
		var wg sync.WaitGroup
		for k, cl := range []*servertest.Client{x, y} {
			ids := map[string]bool{}
			var b []byte
			for i := range perNode {
				id := fmt.Sprintf("r%d-%d", k, i)
				ids[id] = true
				b = fmt.Appendf(b, "<iq type='set' id='%s'><query xmlns='jabber:iq:roster'><item jid='contact%d-%d@example.net' name='n%d'><group>g%d</group></item></query></iq>", id, k, i, i, k)
			}
			// All sets go out at once on both nodes; then each client
			// waits for its results (roster pushes interleave).
			cl.SendRaw(string(b))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for len(ids) > 0 {
					el, err := cl.Next()
					if err != nil {
						t.Errorf("client %d: %v (%d results missing)", k, err, len(ids))
						return
					}
					if el.Name == "iq" && ids[el.ID()] {
						if el.Type() != "result" {
							t.Errorf("roster set: %s", el)
						}
						delete(ids, el.ID())
					}
				}
			}()
		}
		wg.Wait()
		items, ver, err := c.store.GetRoster(context.Background(), bare(u))
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 2*perNode {
			t.Errorf("roster has %d items, want %d", len(items), 2*perNode)
		}
		if ver < 2*perNode {
			t.Errorf("roster version %d after %d changes", ver, 2*perNode)
		}
		// And a third node reads the same roster.
		z := login(t, c.nodes[2], u, "z", -1)
		r := rosterGet(z)
		if got := len(r.Child("query", wire.NSRoster).ChildrenNamed("item", "")); got != 2*perNode {
			t.Errorf("roster get on node 3: %d items", got)
		}
	})

	t.Run("offline messages from two nodes", func(t *testing.T) {
		target := c.user(t, "inbox")
		s1 := login(t, n1, c.user(t, "w"), "s", 1)
		s2 := login(t, n2, c.user(t, "w"), "s", 1)
		var want []string
		for k, cl := range []*servertest.Client{s1, s2} {
			var b []byte
			for i := range perNode {
				body := fmt.Sprintf("from %d number %d", k, i)
				want = append(want, body)
				b = fmt.Appendf(b, "<message to='%s' type='chat' id='m%d'><body>%s</body></message>", bare(target), i, body)
			}
			cl.SendRaw(string(b))
		}
		c.waitOffline(t, bare(target), 2*perNode)
		in := login(t, c.nodes[2], target, "in", 1)
		awaitOffline(t, in, want...)
	})
}
