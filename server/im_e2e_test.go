package server_test

import (
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// These tests drive one real node over TCP+TLS as clients would, for the
// RFC 6121 behaviour the router tests check in-process: roster pushes to
// every resource, the subscription handshake in both directions with its
// roster states, probes, directed presence, unavailable on disconnect,
// delivery by priority, carbons and entity-caps pass-through.

const nsCaps = "http://jabber.org/protocol/caps"

type pred struct {
	what  string
	match func(*wire.Element) bool
}

// push matches a roster push about jid with this subscription and ask.
func push(jid, sub, ask string) pred {
	return pred{"roster push " + jid + " " + sub + "/" + ask, func(el *wire.Element) bool {
		if el.Name != "iq" || el.Type() != "set" {
			return false
		}
		it := el.Child("query", wire.NSRoster).Child("item", "")
		return it != nil && it.Attr("jid") == jid && it.Attr("subscription") == sub && it.Attr("ask") == ask
	}}
}

func pres(from, typ string) pred {
	return pred{"presence " + typ + " from " + from, func(el *wire.Element) bool {
		return el.Name == "presence" && el.From() == from && el.Type() == typ
	}}
}

func result(id string) pred {
	return pred{"result " + id, func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id && el.Type() == "result" }}
}

func body(b string) pred {
	return pred{"message " + b, func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == b }}
}

// all reads until every pred has matched an element, in any order, and
// returns the matching elements in pred order.
func all(t *testing.T, c *servertest.Client, ps ...pred) []*wire.Element {
	t.Helper()
	got := make([]*wire.Element, len(ps))
	left := len(ps)
	what := ""
	for _, p := range ps {
		what += p.what + "; "
	}
	c.Await(what, func(el *wire.Element) bool {
		for i, p := range ps {
			if got[i] == nil && p.match(el) {
				got[i] = el
				left--
				break
			}
		}
		return left == 0
	})
	return got
}

func TestIMOverTCP(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	for _, u := range []string{"alice", "bob", "carol"} {
		servertest.CreateUser(t, n, u, u+"pw")
	}
	login := func(user, res, presence string) *servertest.Client {
		c := servertest.DialTLS(t, n)
		c.Login(user, user+"pw", res)
		// Request the roster: only "interested" resources get pushes (RFC 6121 §2.1.6).
		c.Send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
		all(t, c, result("roster"))
		if presence != "" {
			c.Send("%s", presence)
		}
		return c
	}
	a1 := login("alice", "a1", "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>")
	a2 := login("alice", "a2", "<presence><priority>1</priority></presence>")
	b1 := login("bob", "b1", "<presence/>")

	{ // roster set pushes to every resource
		a1.Send("<iq type='set' id='rs1'><query xmlns='jabber:iq:roster'><item jid='carol@localhost' name='Carol'><group>Friends</group></item></query></iq>")
		all(t, a1, push("carol@localhost", "none", ""), result("rs1"))
		all(t, a2, push("carol@localhost", "none", ""))
		a1.Send("<iq type='set' id='rs2'><query xmlns='jabber:iq:roster'><item jid='carol@localhost' subscription='remove'/></query></iq>")
		all(t, a1, push("carol@localhost", "remove", ""), result("rs2"))
		all(t, a2, push("carol@localhost", "remove", ""))
	}

	{ // subscription handshake
		// alice → bob: subscribe (none + pending out), bob approves (to / from).
		a1.Send("<presence to='bob@localhost' type='subscribe'/>")
		all(t, a2, push("bob@localhost", "none", "subscribe"))
		if req := all(t, b1, pres("alice@localhost", "subscribe"))[0]; req.To() != "bob@localhost" {
			t.Errorf("subscription request addressed to %q", req.To())
		}
		b1.Send("<presence to='alice@localhost' type='subscribed'/>")
		all(t, b1, push("alice@localhost", "from", ""))
		// bob's current presence follows the approval (RFC 6121 §3.1.6).
		all(t, a1, pres("bob@localhost", "subscribed"), push("bob@localhost", "to", ""), pres("bob@localhost/b1", ""))
		all(t, a2, push("bob@localhost", "to", ""), pres("bob@localhost/b1", ""))
		// And the other way: both.
		b1.Send("<presence to='alice@localhost' type='subscribe'/>")
		all(t, b1, push("alice@localhost", "from", "subscribe"))
		all(t, a1, pres("bob@localhost", "subscribe"))
		a1.Send("<presence to='bob@localhost' type='subscribed'/>")
		all(t, a2, push("bob@localhost", "both", ""))
		// bob now sees alice's resources, caps included (pass-through).
		got := all(t, b1, pres("alice@localhost", "subscribed"), push("alice@localhost", "both", ""),
			pres("alice@localhost/a1", ""), pres("alice@localhost/a2", ""))
		if c := got[2].Child("c", nsCaps); c == nil || c.Attr("ver") != "QgayPKawpkPSDYmwT/WM94uAlu0=" {
			t.Errorf("entity caps not passed through: %s", got[2])
		}
	}

	{ // probe on login and broadcast
		b2 := login("bob", "b2", "<presence><priority>5</priority></presence>")
		all(t, b2, pres("alice@localhost/a1", ""), pres("alice@localhost/a2", ""))
		all(t, a1, pres("bob@localhost/b2", ""))

		{ // bare JID goes to the highest priority
			a1.Send("<message to='bob@localhost' type='chat' id='m1'><body>to bare</body></message>")
			all(t, b2, body("to bare"))
			// b1 (priority 0) must not get it: the next message body it
			// sees is the full-JID one.
			a1.Send("<message to='bob@localhost/b1' type='chat' id='m2'><body>to b1</body></message>")
			if m := b1.Await("a message", func(el *wire.Element) bool { return el.Name == "message" && el.Child("body", "") != nil }); m.ChildText("body", "") != "to b1" {
				t.Errorf("b1 got %s", m)
			}
		}
		{ // chat to an offline resource goes to the bare JID
			a1.Send("<message to='bob@localhost/gone' type='chat'><body>to gone</body></message>")
			all(t, b2, body("to gone"))
		}
		{ // carbons
			b1.Send("<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
			all(t, b1, result("cb"))
			a1.Send("<message to='bob@localhost/b2' type='chat'><body>carbon me</body></message>")
			all(t, b2, body("carbon me"))
			cp := b1.Await("carbon", func(el *wire.Element) bool {
				return el.Name == "message" && el.Child("received", "urn:xmpp:carbons:2") != nil
			})
			if fw := cp.Child("received", "urn:xmpp:carbons:2").Child("forwarded", ""); fw == nil || fw.Child("message", "").ChildText("body", "") != "carbon me" {
				t.Errorf("carbon = %s", cp)
			}
		}
		{ // directed presence and unavailable on disconnect
			c1 := login("carol", "c1", "<presence/>")
			a2.Send("<presence to='carol@localhost/c1'/>")
			all(t, c1, pres("alice@localhost/a2", ""))
			a2.Close()
			all(t, b2, pres("alice@localhost/a2", "unavailable"))
			all(t, c1, pres("alice@localhost/a2", "unavailable"))
		}
		{ // unsubscribe
			a1.Send("<presence to='bob@localhost' type='unsubscribe'/>")
			// alice no longer gets bob's presence (§3.3.3: his resources
			// go unavailable for her); bob still gets alice's.
			all(t, a1, push("bob@localhost", "from", ""), pres("bob@localhost/b1", "unavailable"), pres("bob@localhost/b2", "unavailable"))
			all(t, b1, pres("alice@localhost", "unsubscribe"), push("alice@localhost", "to", ""))
			a1.Send("<presence><status>still here</status></presence>")
			b2.Await("alice's update", func(el *wire.Element) bool {
				return el.Name == "presence" && el.From() == "alice@localhost/a1" && el.ChildText("status", "") == "still here"
			})
		}
	}
}

// TestDiscoListsEveryPluginFeature: the server's disco#info over TCP has
// the server/im identity and exactly the features the running plugins
// declare (so a new plugin cannot forget to show up in disco).
func TestDiscoListsEveryPluginFeature(t *testing.T) {
	n := servertest.RunServer(t, servertest.DefaultConfig(t))
	servertest.CreateUser(t, n, "alice", "alicepw")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	c.Send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	q := all(t, c, result("d1"))[0].Child("query", "http://jabber.org/protocol/disco#info")
	if q == nil {
		t.Fatal("no disco#info query in the result")
	}
	server := false
	for _, id := range q.ChildrenNamed("identity", "") {
		if id.Attr("category") == "server" && id.Attr("type") == "im" {
			server = true
		}
	}
	if !server {
		t.Errorf("no server/im identity: %s", q)
	}
	got := map[string]bool{}
	for _, f := range q.ChildrenNamed("feature", "") {
		got[f.Attr("var")] = true
	}
	declared := n.Plugins().DiscoFeatures()
	if len(declared) < 8 {
		t.Fatalf("only %d features declared by plugins: %v", len(declared), declared)
	}
	for _, f := range declared {
		if !got[f] {
			t.Errorf("feature %s declared by a plugin but not in disco#info", f)
		}
	}
	for _, ns := range []string{"urn:xmpp:ping", "jabber:iq:version", "jabber:iq:last", "vcard-temp", "jabber:iq:private", "urn:xmpp:blocking", "urn:xmpp:carbons:2"} {
		if !got[ns] {
			t.Errorf("disco#info lacks %s", ns)
		}
	}
}
