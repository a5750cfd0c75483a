package clustertest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// TestArchiveSurvivesKillAfterAck (issue 20): a client with stream
// management on node 3 sends messages to a user on node 1, sees them
// acknowledged, and node 3 is SIGKILLed at once. Node 3 writes both
// archive copies (the sender's and the recipient's); none is lost: a MAM
// query of the sender's account on node 1 returns every message, and the
// recipient's archive has them too.
//
// The window is widened from outside the server: the test holds an
// EXCLUSIVE lock on archive_entries (reads go on, inserts wait), so node
// 3's group commit is stuck in PostgreSQL while the messages are routed.
// Acknowledgements that do not wait for the archive come back meanwhile;
// the test then kills node 3 at once and ends its stuck insert as
// PostgreSQL would for a client that is gone, and the archive lacks the
// messages (the failure this test exists for). Acknowledgements that
// wait show up on node 3 as aviary_mam_acks_held (one per copy); then the
// lock is released, the acknowledgement comes, and node 3 dies at once.
func TestArchiveSurvivesKillAfterAck(t *testing.T) {
	c := fixture(t)
	n1, victim := c.nodes[0], c.nodes[2]
	ua, ub := c.user(t, "mamk-alice"), c.user(t, "mamk-bob")
	b := login(t, n1, ub, "r", 1)
	defer b.Close()
	a := login(t, victim, ua, "r", 1)
	defer a.Close()
	awaitRoute(t, a, b)
	a.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	a.Await("sm enabled", func(el *wire.Element) bool { return el.Name == "enabled" })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lock, err := c.store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.Background())
	if _, err := lock.Exec(ctx, "LOCK TABLE archive_entries IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	const n = 20
	for i := range n {
		send(a, bare(ub), fmt.Sprint("kept ", i))
	}
	a.Send("<r xmlns='urn:xmpp:sm:3'/>")
	ackN := fmt.Sprint(n)
	isAck := func(el *wire.Element) bool { return el.Name == "a" && el.Attr("h") == ackN }

	// Until either the acknowledgement came (read up to a ping's answer:
	// acknowledgements are answered in order, so one given is ahead of
	// it) or node 3 reports every archive copy holding one.
	acked := false
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		id := a.NextID()
		a.Send("<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>", id, domain)
		a.Await("ping answer", func(el *wire.Element) bool {
			acked = acked || isAck(el)
			return el.Name == "iq" && el.ID() == id
		})
		if acked {
			return nil
		}
		held, err := c.admins[2].Metric(ctx, "aviary_mam_acks_held")
		if err != nil {
			return err
		}
		if held != 2*n {
			return fmt.Errorf("node 3 holds %v acknowledgements for the archive, want %d", held, 2*n)
		}
		return nil
	})
	if acked {
		// Acknowledged while the archive could not commit: this is the
		// crash the client was told it need not fear.
		victim.Kill()
		t.Errorf("%d messages acknowledged while their archive write was stuck", n)
		if _, err := c.store.Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO archive_entries%'`); err != nil {
			t.Fatal(err)
		}
		if err := lock.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := lock.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		a.Await("ack "+ackN, isAck)
		victim.Kill()
	}
	b.Await("last message", isMsg(fmt.Sprint("kept ", n-1)))

	// The sender's account asks the archive on node 1.
	a2 := login(t, n1, ua, "after", -1)
	defer a2.Close()
	id := a2.NextID()
	a2.Send("<iq type='set' id='%s'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100</max></set></query></iq>", id)
	got := map[string]bool{}
	a2.Await("query answer", func(el *wire.Element) bool {
		if r := el.Child("result", mam.NS); r != nil {
			if fw := r.Child("forwarded", wire.NSForward); fw != nil {
				if m := fw.Child("message", ""); m != nil && strings.HasPrefix(m.ChildText("body", ""), "kept ") {
					got[m.ChildText("body", "")] = true
				}
			}
		}
		return el.Name == "iq" && el.ID() == id
	})
	if len(got) != n {
		t.Errorf("the sender's archive has %d of the %d acknowledged messages", len(got), n)
	}
	p, err := c.store.Archive(mam.Store).Query(ctx, bare(ub), storage.ArchiveQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != n {
		t.Errorf("the recipient's archive has %d of the %d messages", len(p.Entries), n)
	}
}
