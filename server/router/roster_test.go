package router

import (
	"strings"
	"testing"

	"github.com/aviary-im/aviary/wire"
)

func rosterQuery(t *testing.T, el *wire.Element) *wire.Element {
	t.Helper()
	if el.Name != "iq" || el.Type() != "result" {
		t.Fatalf("got %s, want an iq result", el)
	}
	return el.Child("query", wire.NSRoster)
}

func TestRosterSetGetRemove(t *testing.T) {
	e := newEnv(t)
	e.user("juliet")
	s1 := e.online("juliet", "balcony", 0)
	s2 := e.online("juliet", "chamber", 0)
	quiet := e.bind("juliet", "notinterested") // never asks for the roster
	s1.take()

	e.send(s1, `<iq type='set' id='set1'><query xmlns='jabber:iq:roster'><item jid='Nurse@Example.com' name='Nurse'><group>Servants</group></item></query></iq>`)
	got := s1.take()
	wantSigs(t, "s1", got,
		"iq set juliet@example.com→juliet@example.com/balcony",
		"iq result →juliet@example.com/balcony")
	push := pushItems(got)[0]
	if push.Attr("jid") != "nurse@example.com" || push.Attr("name") != "Nurse" || push.Attr("subscription") != "none" || push.ChildText("group", "") != "Servants" {
		t.Fatalf("push item %s", push)
	}
	if got[0].Child("query", wire.NSRoster).Attr("ver") == "" {
		t.Fatalf("push without ver: %s", got[0])
	}
	if got[1].ID() != "set1" {
		t.Fatalf("result id %q", got[1].ID())
	}
	wantSigs(t, "s2 (interested)", s2.take(), "iq set juliet@example.com→juliet@example.com/chamber")
	wantSigs(t, "not interested", quiet.take())

	e.send(s1, `<iq type='get' id='get1'><query xmlns='jabber:iq:roster'/></iq>`)
	q := rosterQuery(t, s1.take()[0])
	items := q.ChildrenNamed("item", "")
	if len(items) != 1 || items[0].Attr("jid") != "nurse@example.com" || q.HasAttr("ver") {
		t.Fatalf("roster %s (no ver requested, none expected)", q)
	}

	// Update: name and groups change, subscription is kept.
	e.send(s1, `<iq type='set' id='set2'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' name='Angelica'><group>Friends</group><group>Servants</group></item></query></iq>`)
	push = pushItems(s1.take())[0]
	if push.Attr("name") != "Angelica" || len(push.ChildrenNamed("group", "")) != 2 {
		t.Fatalf("update push %s", push)
	}
	s2.take()

	// Setting the same thing again changes nothing and pushes nothing.
	e.send(s1, `<iq type='set' id='set3'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' name='Angelica'><group>Friends</group><group>Servants</group></item></query></iq>`)
	wantSigs(t, "unchanged set", s1.take(), "iq result →juliet@example.com/balcony")

	e.send(s1, `<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' subscription='remove'/></query></iq>`)
	got = s1.take()
	if p := pushItems(got); len(p) != 1 || p[0].Attr("subscription") != "remove" {
		t.Fatalf("remove push %q", sigs(got))
	}
	if _, ok := e.item("juliet@example.com", "nurse@example.com"); ok {
		t.Fatal("item still stored")
	}
	e.send(s1, `<iq type='set' id='rm2'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' subscription='remove'/></query></iq>`)
	if got := s1.take(); len(got) != 1 || errCond(got[0]) != "item-not-found" {
		t.Fatalf("removing a missing item: %q", sigs(got))
	}
}

func TestRosterSetValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, query, cond string
	}{
		{"two items", `<item jid='a@x.net'/><item jid='b@x.net'/>`, "bad-request"},
		{"no item", ``, "bad-request"},
		{"missing jid", `<item name='x'/>`, "jid-malformed"},
		{"bad jid", `<item jid='a@b@c/'/>`, "jid-malformed"},
		{"empty group", `<item jid='a@x.net'><group></group></item>`, "not-acceptable"},
		{"duplicate group", `<item jid='a@x.net'><group>g</group><group>g</group></item>`, "bad-request"},
		{"self", `<item jid='juliet@example.com'/>`, "not-allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user("juliet")
			s := e.online("juliet", "balcony", 0)
			e.send(s, `<iq type='set' id='v'><query xmlns='jabber:iq:roster'>`+tc.query+`</query></iq>`)
			got := s.take()
			if len(got) != 1 || got[0].Type() != "error" || errCond(got[0]) != tc.cond {
				t.Fatalf("got %q, want one error %s", sigs(got), tc.cond)
			}
			if got[0].ID() != "v" {
				t.Fatalf("error id %q", got[0].ID())
			}
			items, _, _ := e.store.GetRoster(t.Context(), "juliet@example.com")
			if len(items) != 0 {
				t.Fatalf("stored %v after a refused set", items)
			}
		})
	}
}

func TestRosterVersioning(t *testing.T) {
	e := newEnv(t)
	e.user("juliet")
	s := e.online("juliet", "balcony", 0)
	e.send(s, `<iq type='set' id='a'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com'/></query></iq>`)
	got := s.take()
	ver := got[0].Child("query", wire.NSRoster).Attr("ver")
	if ver == "" {
		t.Fatalf("push without ver: %s", got[0])
	}

	cases := []struct {
		name      string
		ver       string // attribute as sent; "-" for none
		wantEmpty bool
		wantVer   string
	}{
		{"no ver attribute: full roster, no ver", "-", false, ""},
		{"empty ver: full roster with ver", "", false, ver},
		{"stale ver: full roster with ver", "0", false, ver},
		{"current ver: empty result", ver, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := `<query xmlns='jabber:iq:roster'/>`
			if tc.ver != "-" {
				q = `<query xmlns='jabber:iq:roster' ver='` + tc.ver + `'/>`
			}
			e.send(s, `<iq type='get' id='g'>`+q+`</iq>`)
			got := s.take()
			if len(got) != 1 || got[0].Type() != "result" {
				t.Fatalf("got %q", sigs(got))
			}
			rq := got[0].Child("query", wire.NSRoster)
			if tc.wantEmpty {
				if rq != nil {
					t.Fatalf("want an empty result, got %s", got[0])
				}
				return
			}
			if rq == nil || len(rq.ChildrenNamed("item", "")) != 1 {
				t.Fatalf("want the full roster, got %s", got[0])
			}
			if rq.Attr("ver") != tc.wantVer {
				t.Fatalf("ver %q, want %q", rq.Attr("ver"), tc.wantVer)
			}
		})
	}

	// A change bumps the version.
	e.send(s, `<iq type='set' id='b'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' name='N'/></query></iq>`)
	nv := s.take()[0].Child("query", wire.NSRoster).Attr("ver")
	if nv == ver || nv == "" {
		t.Fatalf("version %q after a change, was %q", nv, ver)
	}
}

func TestRosterRemoveCancelsSubscriptions(t *testing.T) {
	t.Parallel()
	const contact = "romeo@remote.net"
	cases := []struct {
		name string
		st   subState
		want []string
	}{
		{"none", stN, nil},
		{"pending out", stNPo, []string{"presence unsubscribe juliet@example.com→" + contact}},
		{"pending in", stNPi, []string{"presence unsubscribed juliet@example.com→" + contact}},
		{"to", stT, []string{"presence unsubscribe juliet@example.com→" + contact}},
		{"from", stF, []string{
			"presence unsubscribed juliet@example.com→" + contact,
			"presence unavailable juliet@example.com/balcony→" + contact}},
		{"both", stB, []string{
			"presence unsubscribe juliet@example.com→" + contact,
			"presence unsubscribed juliet@example.com→" + contact,
			"presence unavailable juliet@example.com/balcony→" + contact}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			fed := &capFed{}
			e.r.SetFederation(fed)
			e.user("juliet")
			e.setItem("juliet@example.com", contact, tc.st, true)
			s := e.online("juliet", "balcony", 0)
			fed.take()
			e.send(s, `<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='romeo@remote.net' subscription='remove'/></query></iq>`)
			wantSigs(t, "sent to contact", fed.take(), tc.want...)
			got := s.take()
			if p := pushItems(got); len(p) != 1 || p[0].Attr("subscription") != "remove" {
				t.Fatalf("pushes %q", sigs(got))
			}
		})
	}
}

func TestRosterOnlyForOwner(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	s := e.online("romeo", "r", 0)
	e.send(s, `<iq type='get' id='x' to='juliet@example.com'><query xmlns='jabber:iq:roster'/></iq>`)
	got := s.take()
	if len(got) != 1 || errCond(got[0]) != "service-unavailable" {
		t.Fatalf("got %q", sigs(got))
	}
	// To one's own bare JID explicitly works like no 'to'.
	e.send(s, `<iq type='get' id='y' to='romeo@example.com'><query xmlns='jabber:iq:roster'/></iq>`)
	got = s.take()
	if len(got) != 1 || got[0].Type() != "result" || !strings.HasPrefix(got[0].To(), "romeo@example.com/") {
		t.Fatalf("got %q", sigs(got))
	}
}

// TestRosterSetIgnoresSubscription: RFC 6121 §2.1.5, the server ignores a
// 'subscription' other than "remove" (and 'ask') in a roster set: the
// item is added or updated as if they were absent, and the stored state
// stays what presence made it.
func TestRosterSetIgnoresSubscription(t *testing.T) {
	cases := []struct {
		name, attrs string
		stored      subState // before the set; zero for no item
		want        string   // subscription pushed and stored
	}{
		{"new item claims both", `subscription='both'`, subState{}, "none"},
		{"new item claims from, asks", `subscription='from' ask='subscribe'`, subState{}, "none"},
		{"echo of to", `subscription='to'`, stT, "to"},
		{"claims both over from", `subscription='both'`, stF, "from"},
		{"bogus value", `subscription='everything'`, stN, "none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.user("juliet")
			if tc.stored != (subState{}) {
				e.setItem("juliet@example.com", "nurse@example.com", tc.stored, true)
			}
			// Interested in pushes, not available (no probes to answer).
			s := e.bind("juliet", "balcony")
			e.send(s, `<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`)
			s.take()
			e.send(s, `<iq type='set' id='v'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' name='Angelica' `+tc.attrs+`/></query></iq>`)
			got := s.take()
			if !hasResult(got, "v") {
				t.Fatalf("set refused: %q", sigs(got))
			}
			p := pushItems(got)
			if len(p) != 1 || p[0].Attr("subscription") != tc.want || p[0].Attr("name") != "Angelica" || p[0].Attr("ask") != "" {
				t.Fatalf("push %v, want subscription %s", p, tc.want)
			}
			it, ok := e.item("juliet@example.com", "nurse@example.com")
			if !ok || it.Subscription != tc.want || it.PendingOut || it.Name != "Angelica" {
				t.Fatalf("stored %+v, want subscription %s", it, tc.want)
			}
		})
	}
}
