package clustertest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestAcrossNodes: users on different processes of one cluster do what
// they could on one node.
func TestAcrossNodes(t *testing.T) {
	c := fixture(t)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	t.Run("login on each node", func(t *testing.T) {
		for i, n := range c.nodes {
			u := c.user(t, "login")
			cl := login(t, n, u, "r", -1)
			if wire.BareJID(cl.JID) != bare(u) {
				t.Errorf("node %d bound %q", i+1, cl.JID)
			}
			cl.Close()
		}
	})

	t.Run("subscription, presence and messages between nodes", func(t *testing.T) {
		ua, ub := c.user(t, "alice"), c.user(t, "bob")
		a := login(t, n1, ua, "phone", 1)
		b := login(t, n2, ub, "desk", 1)
		befriend(t, a, b)
		for i := range 3 {
			body := fmt.Sprintf("a to b %d", i)
			send(a, b.JID, body)
			if m := b.Await(body, isMsg(body)); m.From() != a.JID {
				t.Errorf("from %q, want %q", m.From(), a.JID)
			}
			body = fmt.Sprintf("b to a %d", i)
			send(b, bare(ua), body)
			if m := a.Await(body, isMsg(body)); m.From() != b.JID {
				t.Errorf("from %q, want %q", m.From(), b.JID)
			}
		}
		// A presence change on one node reaches the contact on the other.
		a.Send("<presence><show>away</show><priority>1</priority></presence>")
		p := b.Await("away presence", isPresence(bare(ua), ""))
		if p.ChildText("show", "") != "away" {
			t.Errorf("presence %s", p)
		}
		a.Send("<presence type='unavailable'/>")
		b.Await("unavailable", isPresence(bare(ua), "unavailable"))
	})

	t.Run("bare JID goes to the highest priority across nodes", func(t *testing.T) {
		uc, ud := c.user(t, "carol"), c.user(t, "dave")
		low := login(t, n1, uc, "low", 5)
		high := login(t, n2, uc, "high", 10)
		d := login(t, n3, ud, "x", 1)
		befriend(t, d, low, high.JID)
		send(d, bare(uc), "to the highest")
		high.Await("bare message", isMsg("to the highest"))
		// low must not have had it: the next message it reads is a marker
		// sent to its full JID afterwards.
		send(d, low.JID, "marker 1")
		if m := low.Await("a message", func(el *wire.Element) bool { return el.Name == "message" }); m.ChildText("body", "") != "marker 1" {
			t.Errorf("low priority resource got %s", m)
		}
		// Swap the priorities: now the resource on node 1 wins.
		low.Send("<presence><priority>20</priority></presence>")
		d.Await("new priority of low", func(el *wire.Element) bool {
			return el.Name == "presence" && el.From() == low.JID && el.ChildText("priority", "") == "20"
		})
		send(d, bare(uc), "to the new highest")
		low.Await("bare message", isMsg("to the new highest"))
		send(d, high.JID, "marker 2")
		if m := high.Await("a message", func(el *wire.Element) bool { return el.Name == "message" }); m.ChildText("body", "") != "marker 2" {
			t.Errorf("now lower resource got %s", m)
		}
	})

	t.Run("carbons across nodes", func(t *testing.T) {
		ue, uf := c.user(t, "erin"), c.user(t, "frank")
		e1 := login(t, n1, ue, "one", 1)
		e2 := login(t, n2, ue, "two", 1)
		f := login(t, n3, uf, "x", 1)
		e1.Send("<iq type='set' id='carbons'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
		e2.Send("<iq type='set' id='carbons'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
		e1.Await("carbons enabled", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "carbons" && el.Type() == "result" })
		e2.Await("carbons enabled", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "carbons" && el.Type() == "result" })

		// Received: frank writes to erin/one; erin/two gets a copy. The
		// carbons flag reaches frank's node through the routing table
		// replica, which lags the link by a few milliseconds: repeat until
		// the first copy shows up, then every later message must have one.
		resend(t, f, e1.JID, "hello one", func() {
			rc := e2.Await("received carbon", func(el *wire.Element) bool {
				return el.Name == "message" && el.Child("received", wire.NSCarbons) != nil
			})
			if fw := forwarded(rc, "received"); fw == nil || !strings.HasPrefix(fw.ChildText("body", ""), "hello one") || fw.From() != f.JID {
				t.Errorf("received carbon %s", rc)
			}
		})
		send(f, e1.JID, "hello again")
		rc := e2.Await("received carbon", func(el *wire.Element) bool {
			return el.Name == "message" && el.Child("received", wire.NSCarbons) != nil && forwarded(el, "received").ChildText("body", "") == "hello again"
		})
		if fw := forwarded(rc, "received"); fw.From() != f.JID || fw.To() != e1.JID {
			t.Errorf("received carbon %s", rc)
		}
		e1.Await("direct", isMsg("hello again"))
		// Sent: erin/one writes to frank; erin/two gets a copy.
		resend(t, e1, f.JID, "from one", func() {
			e2.Await("sent carbon", func(el *wire.Element) bool {
				return el.Name == "message" && el.Child("sent", wire.NSCarbons) != nil
			})
		})
		send(e1, f.JID, "from one again")
		sc := e2.Await("sent carbon", func(el *wire.Element) bool {
			return el.Name == "message" && el.Child("sent", wire.NSCarbons) != nil && forwarded(el, "sent").ChildText("body", "") == "from one again"
		})
		if fw := forwarded(sc, "sent"); fw.To() != f.JID {
			t.Errorf("sent carbon %s", sc)
		}
		f.Await("message", isMsg("from one again"))
	})

	t.Run("IQ between full JIDs on different nodes", func(t *testing.T) {
		ug, uh := c.user(t, "gina"), c.user(t, "hal")
		g := login(t, n1, ug, "g", 1)
		h := login(t, n3, uh, "h", 1)
		// g learns h's full JID the way a client does, from its presence.
		// (A full JID bound a moment ago on another node may not be in
		// this node's route replica yet: see README "Known limits".)
		befriend(t, g, h)
		g.Send("<iq type='get' to='%s' id='q1'><query xmlns='urn:example:clustertest'/></iq>", h.JID)
		q := h.Await("iq", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "q1" })
		if q.From() != g.JID || q.Type() != "get" || q.Child("query", "urn:example:clustertest") == nil {
			t.Fatalf("iq %s", q)
		}
		h.Send("<iq type='result' to='%s' id='q1'><query xmlns='urn:example:clustertest'><v>42</v></query></iq>", g.JID)
		r := g.Await("iq result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "q1" })
		if r.Type() != "result" || r.From() != h.JID {
			t.Errorf("result %s", r)
		}
		// An IQ to a full JID that does not exist anywhere bounces.
		g.Send("<iq type='get' to='%s/nowhere' id='q2'><query xmlns='urn:example:clustertest'/></iq>", bare(uh))
		e := g.Await("iq error", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "q2" })
		if e.Type() != "error" || e.Child("error", "").Child("service-unavailable", wire.NSStanzas) == nil {
			t.Errorf("want service-unavailable, got %s", e)
		}
	})

	t.Run("offline storage delivered on another node with a delay stamp", func(t *testing.T) {
		ui, uj := c.user(t, "ivy"), c.user(t, "jack")
		i := login(t, n1, ui, "i", 1)
		// jack logs in on node 2 and leaves, so no route remains.
		j := login(t, n2, uj, "old", 1)
		j.Close()
		c.waitNoSession(t, bare(uj))
		send(i, bare(uj), "while you were away 1")
		send(i, bare(uj)+"/old", "while you were away 2")
		c.waitOffline(t, bare(uj), 2)
		j2 := login(t, n3, uj, "new", 1)
		for _, m := range awaitMessages(t, j2, "while you were away 1", "while you were away 2") {
			if !delayed(m) {
				t.Errorf("no delay stamp: %s", m)
			}
			if wire.BareJID(m.From()) != bare(ui) {
				t.Errorf("from %q", m.From())
			}
		}
		c.waitOffline(t, bare(uj), 0)
	})
}

// forwarded returns the message inside a carbon (<received>/<sent>).
func forwarded(el *wire.Element, kind string) *wire.Element {
	k := el.Child(kind, wire.NSCarbons)
	if k == nil {
		return nil
	}
	f := k.Child("forwarded", wire.NSForward)
	if f == nil {
		return nil
	}
	return f.Child("message", "")
}

// resend sends body+" #k" from cl to `to` every 100ms (up to 50 times)
// until await returns, for effects that depend on the routing table
// replica catching up.
func resend(t *testing.T, cl *servertest.Client, to, body string, await func()) {
	t.Helper()
	repeatUntil(cl, func(k int) string {
		return fmt.Sprintf("<message to='%s' type='chat' id='resend%d'><body>%s #%d</body></message>", to, k, body, k)
	}, await)
}

// repeatUntil writes stanza(k) on cl's raw connection every 100ms (up to
// 50 times, from a goroutine) until await returns.
func repeatUntil(cl *servertest.Client, stanza func(k int) string, await func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for k := 0; k < 50; k++ {
			_ = cl.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := cl.Conn.Write([]byte(stanza(k))); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-done }()
	await()
}
