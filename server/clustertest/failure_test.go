package clustertest_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// TestNodeKilled: SIGKILL one node. Within node_ttl + heartbeat_interval
// (+ a link probe) the survivors remove its
// routes and send unavailable presence for its users to their contacts;
// what is sent to those users afterwards is stored offline and delivered
// at their next login, on another node.
func TestNodeKilled(t *testing.T) {
	c := fixture(t)
	n1, n2, victim := c.nodes[0], c.nodes[1], c.nodes[2]
	ua, ub, uc := c.user(t, "kalice"), c.user(t, "kbob"), c.user(t, "kcarol")
	a := login(t, n1, ua, "a", 1)
	cc := login(t, n2, uc, "c", 1)
	b := login(t, victim, ub, "doomed", 1)
	befriend(t, a, b)
	befriend(t, cc, b)
	send(a, b.JID, "before the crash")
	b.Await("message", isMsg("before the crash"))
	// A request the victim's client never answers: once the node is found
	// dead, node1 answers it for the dead session (server/router
	// pendingiq.go), so a's client is not left waiting.
	a.Send("<iq type='get' to='%s' id='unanswered'><query xmlns='jabber:iq:version'/></iq>", b.JID)
	b.Await("the request", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "unanswered" })
	// Crash safety keeps node1's copy of that message until the victim
	// says its client has it, in a notice sent within milliseconds; a kill
	// before the notice arrives routes the copy again (at least once, by
	// design: server/router/CRASHSAFETY.md) and it would be a fourth
	// offline message below. This test is about what is sent after the
	// crash, so it waits for the notice.
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kept, err := c.admins[0].Metric(ctx, "aviary_router_custody_copies", `kind="kept"`)
		if err != nil {
			return err
		}
		if kept != 0 {
			return fmt.Errorf("node1 keeps %v copies", kept)
		}
		return nil
	})

	// The promise (cluster/hazelcast/doc.go): survivors see a silent node
	// dead within node_ttl + heartbeat_interval (12s with the defaults the
	// nodes run), plus, when its entry lapsed first, one link probe
	// bounded by operation_timeout; 3s more for two busy cores.
	def := conf.Default().Cluster
	limit := def.NodeTTL + def.HeartbeatInterval + def.OperationTimeout + 3*time.Second
	victim.Kill()
	killed := time.Now()
	isAnswer := func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "unanswered" }
	var answer *wire.Element
	for _, w := range []*servertest.Client{a, cc} {
		w.Timeout = limit
		unavailable := isPresence(bare(ub), "unavailable")
		var p *wire.Element
		for p == nil {
			// a waits for the answer to its request too, in either order.
			el := w.Await("unavailable presence for "+b.JID, func(el *wire.Element) bool {
				return unavailable(el) || w == a && isAnswer(el)
			})
			if isAnswer(el) {
				answer = el
			} else {
				p = el
			}
		}
		if p.From() != b.JID {
			t.Errorf("unavailable from %q, want %q", p.From(), b.JID)
		}
		if d := time.Since(killed); d > limit {
			t.Errorf("unavailable presence after %v", d)
		}
	}
	t.Logf("contacts saw unavailable presence %v after SIGKILL", time.Since(killed))
	if answer == nil {
		answer = a.Await("the answer for the dead session", isAnswer)
	}
	if answer.Type() != "error" || answer.From() != b.JID || answer.Child("error", "") == nil ||
		answer.Child("error", "").Child("service-unavailable", wire.NSStanzas) == nil {
		t.Errorf("a got %s, want service-unavailable from %s", answer, b.JID)
	}
	// The survivors no longer list the dead node.
	servertest.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		for _, ad := range c.admins[:2] {
			o, err := ad.Overview(context.Background())
			if err != nil {
				return err
			}
			if len(o.Nodes) != 2 {
				return fmt.Errorf("%s lists %d nodes", ad.Base, len(o.Nodes))
			}
		}
		return nil
	})

	// To the bare JID, to the dead full JID, and from the other node.
	send(a, bare(ub), "after the crash 1")
	send(a, b.JID, "after the crash 2")
	send(cc, bare(ub), "after the crash 3")
	c.waitOffline(t, bare(ub), 3)

	b2 := login(t, n2, ub, "reborn", 1)
	awaitOffline(t, b2, "after the crash 1", "after the crash 2", "after the crash 3")

	// The node comes back under its name and the cluster is whole again.
	startAll(t, victim)
	c.waitClustered(t, 60*time.Second, true)
	b3 := login(t, victim, ub, "again", 1)
	awaitPresences(t, a, b3.JID)
	send(a, b3.JID, "welcome back")
	b3.Await("message", isMsg("welcome back"))
}

// TestHazelcastRestart (issue 16): the Hazelcast member dies and comes
// back empty. The nodes detach instead of splitting up: messages between
// users of different nodes keep being delivered live over the links
// (nothing is stored offline), and a login during the outage is known to
// the other nodes through the links. When the member is back the nodes
// re-register and republish with no new login; what another node stored
// offline meanwhile for a user who stayed online reaches that user; and
// messages sent while the nodes rejoin one after another all arrive.
func TestHazelcastRestart(t *testing.T) {
	c := fixture(t)
	ctx := context.Background()
	n1, n2 := c.nodes[0], c.nodes[1]
	ua, ub := c.user(t, "halice"), c.user(t, "hbob")
	// A resource that becomes available with priority >= 0 looks at its
	// offline queue once more 2s later (router recheckOffline). a starts
	// with priority -1, which schedules no such look, and raises it
	// once subscribed (which delivers the queue at once, without a later
	// look): from then on only a rejoin hands a what is queued for her.
	a := login(t, n1, ua, "a", -1)
	a.Send("<presence><priority>-1</priority></presence>")
	b := login(t, n2, ub, "b", 1)
	befriend(t, a, b)
	a.Send("<presence><priority>1</priority></presence>")
	b.Await("a's priority", func(el *wire.Element) bool {
		return isPresence(bare(ua), "")(el) && el.ChildText("priority", "") == "1"
	})

	c.hz.Kill()
	c.waitDetached(t, 30*time.Second, true)

	// Live both ways, to the bare and the full JID.
	for i := range 5 {
		send(a, bare(ub), fmt.Sprintf("a to b during the outage %d", i))
		send(b, a.JID, fmt.Sprintf("b to a during the outage %d", i))
	}
	for _, m := range awaitMessages(t, b, "a to b during the outage 0", "a to b during the outage 1", "a to b during the outage 2", "a to b during the outage 3", "a to b during the outage 4") {
		if delayed(m) {
			t.Errorf("went through offline storage: %s", m)
		}
	}
	for _, m := range awaitMessages(t, a, "b to a during the outage 0", "b to a during the outage 1", "b to a during the outage 2", "b to a during the outage 3", "b to a during the outage 4") {
		if delayed(m) {
			t.Errorf("went through offline storage: %s", m)
		}
	}
	// bob logs in again on node 2: node 1 learns the new resource over
	// the link (its presence comes first), and routes to it. (Priority
	// -1: what goes to bob's bare JID, and his offline queue, stay b's.
	// With 0 a node whose routes were being republished after the
	// restart below could know b2 a moment before b and hand b2 a
	// message to the bare JID, correctly for what it knew; the test
	// waits for all of them at b, and failed once in CI that way.)
	b2 := login(t, n2, ub, "b2", -1)
	b2.Send("<presence><priority>-1</priority></presence>")
	awaitPresences(t, a, b2.JID)
	send(a, b2.JID, "to the resource bound during the outage")
	if m := b2.Await("message to the new resource", isMsg("to the resource bound during the outage")); delayed(m) {
		t.Errorf("went through offline storage: %s", m)
	}
	for _, u := range []string{ua, ub} {
		if n, err := c.store.CountOffline(ctx, bare(u)); err != nil || n != 0 {
			t.Fatalf("%s has %d offline messages (%v) during the outage; want none", u, n, err)
		}
	}
	// Another node missed a's route and stored a message for her (as a
	// node rejoining before hers would); she is online throughout.
	storeFor(t, c, ua, b.JID, "stored during the outage")

	// Hazelcast comes back empty while messages keep flowing both ways.
	var sent []string
	flow := startFlow(a, bare(ub), "a to b across the restart")
	flowBack := startFlow(b, a.JID, "b to a across the restart")
	if err := c.hz.RestartErr(1); err != nil {
		t.Fatal(err)
	}
	c.waitClustered(t, 60*time.Second, true)
	sent = flow()
	back := flowBack()

	// No new login: what was stored for a arrives, and every message
	// sent across the restart arrives (live, or from offline storage if
	// sent while the nodes re-registered)...
	got := awaitMessages(t, a, append(back, "stored during the outage")...)
	if m := got["stored during the outage"]; !delayed(m) {
		t.Errorf("no delay stamp: %s", m)
	}
	awaitMessages(t, b, sent...)
	// ...nothing waits in offline storage...
	for _, u := range []string{ua, ub} {
		c.waitOffline(t, bare(u), 0)
	}
	// ...and routing and presence work as before.
	send(a, bare(ub), "to bare after the restart")
	b.Await("bare message", isMsg("to bare after the restart"))
	send(b, a.JID, "reply after the restart")
	if m := a.Await("reply", isMsg("reply after the restart")); delayed(m) {
		t.Errorf("went through offline storage: %s", m)
	}
	b.Send("<presence><show>dnd</show><priority>1</priority></presence>")
	p := a.Await("presence change", func(el *wire.Element) bool {
		return isPresence(bare(ub), "")(el) && el.ChildText("show", "") == "dnd"
	})
	if p.From() != b.JID {
		t.Errorf("presence from %q", p.From())
	}
}

// storeFor puts a chat message from 'from' into user's offline queue
// directly in the store, the way a node that found no route stores it.
func storeFor(t testing.TB, c *cluster, user, from, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := fmt.Sprintf("<message xmlns='jabber:client' from='%s' to='%s' type='chat' id='stored-%d'><body>%s</body></message>", from, bare(user), c.n.Add(1), body)
	if err := c.store.StoreOffline(ctx, bare(user), []byte(msg), storage.OfflineQuota{}); err != nil {
		t.Fatal(err)
	}
}

// startFlow sends a chat message from cl to 'to' every 100ms from a
// goroutine (cl's raw connection; the test must not use cl meanwhile)
// until the returned function is called, which stops it and returns the
// bodies sent.
func startFlow(cl *servertest.Client, to, prefix string) func() []string {
	stop, done := make(chan struct{}), make(chan struct{})
	var bodies []string
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			body := fmt.Sprintf("%s %d", prefix, k)
			_ = cl.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(cl.Conn, "<message to='%s' type='chat' id='flow%d'><body>%s</body></message>", to, k, body); err != nil {
				return
			}
			bodies = append(bodies, body)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() []string {
		close(stop)
		<-done
		return bodies
	}
}

// TestClusterSwitch: `aviary cluster disable` turns every node into a
// lone node within 2s: users on other nodes are offline to each other
// and messages between them are stored offline. `enable` brings them
// back together with correct presence.
func TestClusterSwitch(t *testing.T) {
	c := fixture(t)
	n1, n2 := c.nodes[0], c.nodes[1]
	ua, ub := c.user(t, "salice"), c.user(t, "sbob")
	a := login(t, n1, ua, "a", 1)
	b := login(t, n2, ub, "b", 1)
	befriend(t, a, b)
	t.Cleanup(func() { c.cli(t, "enable") })

	c.cli(t, "disable")
	// Every node follows within 2s (LISTEN/NOTIFY, a Hazelcast topic and
	// a 1s poll).
	c.waitClustered(t, 2*time.Second, false)
	for _, ad := range c.admins {
		o, err := ad.Overview(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if o.ClusterEnabled {
			t.Errorf("%s reports cluster_enabled", ad.Base)
		}
	}
	// Contacts on other nodes went offline for each other.
	a.Await("bob unavailable", isPresence(bare(ub), "unavailable"))
	b.Await("alice unavailable", isPresence(bare(ua), "unavailable"))
	send(a, bare(ub), "while apart 1")
	send(a, b.JID, "while apart 2")
	c.waitOffline(t, bare(ub), 2)
	// b keeps its session but takes no offline messages (priority < 0,
	// RFC 6121 §8.5.2.1.1), so that they wait for bob's next login below:
	// otherwise node 2 may hand them to b once the cluster is back (it
	// looks at the offline queue again 2 s after b's presence goes out),
	// while the steps below read b and skip them.
	b.Send("<presence><priority>-1</priority></presence>")

	c.cli(t, "enable")
	c.waitClustered(t, 10*time.Second, true)
	// Rejoined: sessions republished and presence resent both ways.
	awaitPresences(t, a, b.JID)
	awaitPresences(t, b, a.JID)
	resend(t, a, b.JID, "together again", func() {
		b.Await("message", func(el *wire.Element) bool { return el.Name == "message" && el.From() == a.JID && !delayed(el) })
	})
	send(b, a.JID, "together again too")
	a.Await("message", isMsg("together again too"))

	b2 := login(t, c.nodes[2], ub, "later", 1)
	awaitOffline(t, b2, "while apart 1", "while apart 2")
}

// cli runs `aviary cluster <sub>` against the shared database and
// Hazelcast member, as an operator would.
func (c *cluster) cli(t testing.TB, sub string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "cluster", sub,
		"--database", c.db, "--hazelcast", c.hz.Addr(), "--hazelcast-cluster-name", c.hz.ClusterName)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aviary cluster %s: %v\n%s", sub, err, out)
	}
	return string(out)
}
