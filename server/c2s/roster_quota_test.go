package c2s_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// stanzaErr returns an error stanza's condition and text.
func stanzaErr(el *wire.Element) (cond, text string) {
	e := el.Child("error", "")
	if e == nil {
		return "", ""
	}
	for _, c := range e.Children {
		if c.Name == "text" {
			text = c.AllText()
		} else if cond == "" {
			cond = c.Name
		}
	}
	return cond, text
}

// rosterSet sends a roster set and returns the answer.
func rosterSet(c *servertest.Client, item string) *wire.Element {
	id := c.NextID()
	c.Send("<iq type='set' id='%s'><query xmlns='jabber:iq:roster'>%s</query></iq>", id, item)
	return c.Await("roster set answer", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
}

// TestPendingSubscriptionFloodCapped replays issue 16's subscription
// flood: 4,500 requests from JIDs with 1,000-character localparts (4.8 MB,
// replayed at every login) from a federated server. Only
// c2s.roster_max_pending are kept; a request past it is refused with
// resource-constraint; the victim's login gets the ones kept without a
// stream error and the account stays usable.
func TestPendingSubscriptionFloodCapped(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "mallory", "mallorypw")
	ctx := context.Background()
	long := strings.Repeat("m", 1000)
	for i := range 4500 {
		el, err := wire.Parse(fmt.Appendf(nil, "<presence xmlns='jabber:client' type='subscribe' from='%s%04d@evil.example' to='alice@localhost'/>", long, i), wire.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		n.Router().FromRemote(ctx, el)
	}
	items, _, err := n.Store().GetRoster(ctx, "alice@localhost")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != cfg.C2S.RosterMaxPending {
		t.Fatalf("%d subscription requests kept, want c2s.roster_max_pending = %d", len(items), cfg.C2S.RosterMaxPending)
	}

	// A local contact asking now is told why (on its available
	// resources: the request left from its bare JID).
	m := servertest.DialTLS(t, n)
	m.Login("mallory", "mallorypw", "r")
	m.Send("<presence/>")
	m.Send("<presence to='alice@localhost' type='subscribe'/>")
	e := m.Await("the refused request", func(el *wire.Element) bool { return el.Name == "presence" && el.Type() == "error" })
	if cond, text := stanzaErr(e); cond != "resource-constraint" || !strings.Contains(text, "waiting for an answer") {
		t.Fatalf("request past the cap answered %s", e)
	}

	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "phone")
	a.Send("<presence/>")
	got := 0
	for got < cfg.C2S.RosterMaxPending {
		el := a.MustNext()
		if el.Name == "stream:error" {
			t.Fatalf("after %d subscription requests the login ended with %s", got, el)
		}
		if el.Name == "presence" && el.Type() == "subscribe" {
			got++
		}
	}
	usable(t, a, m, "alice@localhost/phone", "mallory@localhost/r")
	// Answering a request makes room for another.
	a.Send("<presence to='%s0000@evil.example' type='unsubscribed'/>", long)
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		items, _, err := n.Store().GetRoster(ctx, "alice@localhost")
		if err != nil || len(items) != cfg.C2S.RosterMaxPending-1 {
			return fmt.Errorf("%d requests kept (%v)", len(items), err)
		}
		return nil
	})
	m.Send("<presence to='alice@localhost' type='subscribe'/>")
	a.Await("mallory's request", func(el *wire.Element) bool {
		return el.Name == "presence" && el.Type() == "subscribe" && el.From() == "mallory@localhost"
	})
}

// TestRosterQuota: a roster holds at most c2s.roster_max_items contacts
// and each at most c2s.roster_max_item_bytes, checked on roster sets and
// on the user's own subscription requests; a roster at the limit (here
// about 2 MB, the most the limits allow) is still fetched in one result
// with no stream error, and the session goes on.
func TestRosterQuota(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.RosterMaxItems = 100
	cfg.C2S.RosterMaxItemBytes = 20000
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "bob", "bobpw")
	a := servertest.DialTLS(t, n)
	a.Login("alice", "alicepw", "phone")

	name := strings.Repeat("n", 19000)
	too := rosterSet(a, fmt.Sprintf("<item jid='big@example.net' name='%s'><group>%s</group></item>", name, strings.Repeat("g", 1000)))
	if cond, text := stanzaErr(too); too.Type() != "error" || cond != "not-acceptable" || !strings.Contains(text, "20000 bytes") {
		t.Fatalf("an item over roster_max_item_bytes answered %s", too)
	}
	for i := range cfg.C2S.RosterMaxItems {
		if res := rosterSet(a, fmt.Sprintf("<item jid='c%03d@example.net' name='%s'/>", i, name)); res.Type() != "result" {
			t.Fatalf("roster set %d answered %s", i, res)
		}
	}
	full := rosterSet(a, "<item jid='one-more@example.net'/>")
	if cond, text := stanzaErr(full); full.Type() != "error" || cond != "not-allowed" || !strings.Contains(text, "at most 100 contacts") {
		t.Fatalf("an item past roster_max_items answered %s", full)
	}
	a.Send("<presence to='bob@localhost' type='subscribe'/>")
	e := a.Await("the refused subscription", func(el *wire.Element) bool { return el.Name == "presence" && el.Type() == "error" })
	if cond, _ := stanzaErr(e); cond != "not-allowed" {
		t.Fatalf("a subscription adding a contact past the limit answered %s", e)
	}

	// A new session fetches the full roster in one result.
	a2 := servertest.DialTLS(t, n)
	a2.Login("alice", "alicepw", "laptop")
	a2.Send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
	for {
		el := a2.MustNext()
		if el.Name == "stream:error" {
			t.Fatalf("fetching the full roster ended the stream: %s", el)
		}
		if el.Name == "iq" && el.ID() == "r1" {
			if got := len(el.FirstChild().ChildrenNamed("item", "")); got != cfg.C2S.RosterMaxItems {
				t.Fatalf("roster result has %d items, want %d", got, cfg.C2S.RosterMaxItems)
			}
			break
		}
	}
	b := servertest.DialTLS(t, n)
	b.Login("bob", "bobpw", "r")
	usable(t, a2, b, "alice@localhost/laptop", "bob@localhost/r")
}
