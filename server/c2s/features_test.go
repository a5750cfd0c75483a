package c2s_test

import (
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// rosterGet sends a roster get (with ver when withVer) and returns the
// result.
func rosterGet(t *testing.T, c *servertest.Client, withVer bool, ver string) *wire.Element {
	t.Helper()
	id := c.NextID()
	q := "<query xmlns='jabber:iq:roster'/>"
	if withVer {
		q = "<query xmlns='jabber:iq:roster' ver='" + ver + "'/>"
	}
	c.Send("<iq type='get' id='%s'>%s</iq>", id, q)
	r := c.Await("roster result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
	if r.Type() != "result" {
		t.Fatalf("roster get: %s", r)
	}
	return r
}

// XEP-0237: the authenticated stream offers roster versioning (after RFC
// 6120 SASL and after SASL2), and a client holding the current version
// gets an empty result instead of the roster; a stale version gets the
// whole roster with the new version.
func TestRosterVersioningOffered(t *testing.T) {
	n := startServer(t, "alice", "bob")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "phone")
	if c.Features.Child("ver", wire.NSRosterVer) == nil {
		t.Fatalf("features after authentication = %s, want <ver xmlns='%s'/>", c.Features, wire.NSRosterVer)
	}

	first := rosterGet(t, c, true, "")
	v0 := first.Child("query", wire.NSRoster).Attr("ver")
	if v0 == "" {
		t.Fatalf("a versioned roster get answered %s, want a ver", first)
	}
	if r := rosterGet(t, c, true, v0); len(r.Children) != 0 {
		t.Fatalf("roster get with the current ver answered %s, want an empty result", r)
	}

	id := c.NextID()
	c.Send("<iq type='set' id='%s'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query></iq>", id)
	push := c.Await("roster push", func(el *wire.Element) bool {
		return el.Name == "iq" && el.Type() == "set" && el.Child("query", wire.NSRoster) != nil
	})
	v1 := push.Child("query", wire.NSRoster).Attr("ver")
	if v1 == "" || v1 == v0 {
		t.Fatalf("push %s, want a new ver", push)
	}
	c.Await("roster set result", func(el *wire.Element) bool { return el.ID() == id })

	stale := rosterGet(t, c, true, v0)
	q := stale.Child("query", wire.NSRoster)
	if q == nil || q.Attr("ver") != v1 || q.Child("item", "") == nil || q.Child("item", "").Attr("jid") != "bob@localhost" {
		t.Fatalf("roster get with a stale ver answered %s, want the roster with ver %s", stale, v1)
	}
	if r := rosterGet(t, c, true, v1); len(r.Children) != 0 {
		t.Fatalf("roster get with the new ver answered %s, want an empty result", r)
	}

	// SASL2: the features that follow <success/> offer it too.
	c2 := servertest.DialTLS(t, n)
	el := sasl2Login(t, c2, "bob", "bobpw", "<bind xmlns='urn:xmpp:bind:0'/>")
	if el.Name != "success" {
		t.Fatalf("SASL2 login: %s", el)
	}
	if f := c2.ExpectName("stream:features"); f.Child("ver", wire.NSRosterVer) == nil {
		t.Fatalf("features after SASL2 = %s, want roster versioning", f)
	}
}
