package router

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/aviary-im/aviary/wire"
)

// The nine states of RFC 6121 Appendix A.1.
var (
	stN     = subState{Sub: "none"}
	stNPo   = subState{Sub: "none", PendingOut: true}
	stNPi   = subState{Sub: "none", PendingIn: true}
	stNPoPi = subState{Sub: "none", PendingOut: true, PendingIn: true}
	stT     = subState{Sub: "to"}
	stTPi   = subState{Sub: "to", PendingIn: true}
	stF     = subState{Sub: "from"}
	stFPo   = subState{Sub: "from", PendingOut: true}
	stB     = subState{Sub: "both"}
)

var allStates = []struct {
	name string
	st   subState
}{
	{"None", stN}, {"None+PendingOut", stNPo}, {"None+PendingIn", stNPi},
	{"None+PendingOut+PendingIn", stNPoPi}, {"To", stT}, {"To+PendingIn", stTPi},
	{"From", stF}, {"From+PendingOut", stFPo}, {"Both", stB},
}

// appendixA is RFC 6121 Appendix A.2 (outbound) and A.3 (inbound): for
// each stanza type, the state after it, in the order of allStates.
var appendixA = []struct {
	in    bool
	typ   string
	after [9]subState
}{
	// A.2.1 outbound subscribe
	{outbound, "subscribe", [9]subState{stNPo, stNPo, stNPoPi, stNPoPi, stT, stTPi, stFPo, stFPo, stB}},
	// A.2.2 outbound unsubscribe
	{outbound, "unsubscribe", [9]subState{stN, stN, stNPi, stNPi, stN, stNPi, stF, stF, stF}},
	// A.2.3 outbound subscribed
	{outbound, "subscribed", [9]subState{stN, stNPo, stF, stFPo, stT, stB, stF, stFPo, stB}},
	// A.2.4 outbound unsubscribed
	{outbound, "unsubscribed", [9]subState{stN, stNPo, stN, stNPo, stT, stT, stN, stNPo, stT}},
	// A.3.1 inbound subscribe
	{inbound, "subscribe", [9]subState{stNPi, stNPoPi, stNPi, stNPoPi, stTPi, stTPi, stF, stFPo, stB}},
	// A.3.2 inbound unsubscribe
	{inbound, "unsubscribe", [9]subState{stN, stNPo, stN, stNPo, stT, stT, stN, stNPo, stT}},
	// A.3.3 inbound subscribed
	{inbound, "subscribed", [9]subState{stN, stT, stNPi, stTPi, stT, stTPi, stF, stB, stB}},
	// A.3.4 inbound unsubscribed
	{inbound, "unsubscribed", [9]subState{stN, stN, stNPi, stNPi, stN, stNPi, stF, stF, stF}},
}

func dirName(in bool) string {
	if in {
		return "inbound"
	}
	return "outbound"
}

// TestTransitionAppendixA checks the pure state machine against every row
// of RFC 6121 Appendix A.
func TestTransitionAppendixA(t *testing.T) {
	for _, tab := range appendixA {
		for i, from := range allStates {
			t.Run(fmt.Sprintf("%s/%s/%s", dirName(tab.in), tab.typ, from.name), func(t *testing.T) {
				got, changed := transition(tab.in, tab.typ, from.st)
				want := tab.after[i]
				if got != want {
					t.Fatalf("state %+v after %s %s = %+v, want %+v", from.st, dirName(tab.in), tab.typ, got, want)
				}
				if changed != (want != from.st) {
					t.Fatalf("changed = %v, want %v", changed, want != from.st)
				}
			})
		}
	}
}

// capFed is a Federation that records what it is given.
type capFed struct {
	mu  sync.Mutex
	got []*wire.Element
}

func (f *capFed) Send(ctx context.Context, el *wire.Element) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, el.Copy())
}

func (f *capFed) take() []*wire.Element {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.got
	f.got = nil
	return out
}

// TestOutboundSubscriptionRouter drives every Appendix A.2 transition
// through the router with real storage: the stored state, the roster push
// to the user's interested resources, and what is routed to the contact
// (a user of another domain, so the stanza leaves through federation
// untouched by the contact's side).
func TestOutboundSubscriptionRouter(t *testing.T) {
	t.Parallel()
	const contact = "romeo@remote.net"
	for _, tab := range appendixA {
		if tab.in {
			continue
		}
		for i, from := range allStates {
			t.Run(fmt.Sprintf("%s/%s", tab.typ, from.name), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				fed := &capFed{}
				e.r.SetFederation(fed)
				e.user("juliet")
				e.setItem("juliet@example.com", contact, from.st, true)
				s := e.online("juliet", "balcony", 0)
				fed.take() // probes of the initial presence

				e.send(s, fmt.Sprintf(`<presence type='%s' to='%s/orchard'/>`, tab.typ, contact))

				want := tab.after[i]
				it, ok := e.item("juliet@example.com", contact)
				if want.isNone() && !ok {
					// an item that is in the roster stays even when "None"
					t.Fatalf("item removed, want %+v", want)
				}
				if got := stateOf(it); got != want {
					t.Fatalf("stored state %+v, want %+v", got, want)
				}
				changed := want != from.st
				visible := want.Sub != from.st.Sub || want.PendingOut != from.st.PendingOut
				pushes := pushItems(s.take())
				if visible != (len(pushes) == 1) {
					t.Fatalf("visible change=%v but %d pushes", visible, len(pushes))
				}
				if visible {
					p := pushes[0]
					wantAsk := ""
					if want.PendingOut {
						wantAsk = "subscribe"
					}
					if p.Attr("subscription") != want.Sub || p.Attr("ask") != wantAsk || p.Attr("jid") != contact {
						t.Fatalf("push %s, want subscription=%s ask=%q", p, want.Sub, wantAsk)
					}
				}
				routed := only("presence", fed.take())
				var subs []*wire.Element
				for _, el := range routed {
					if el.Type() == tab.typ {
						subs = append(subs, el)
					}
				}
				wantRouted := tab.typ != "subscribed" || changed
				if wantRouted != (len(subs) == 1) {
					t.Fatalf("routed %q, want routed=%v", sigs(routed), wantRouted)
				}
				if wantRouted && (subs[0].From() != "juliet@example.com" || subs[0].To() != contact) {
					t.Fatalf("routed %s, want from the bare JID to the contact's bare JID", sig(subs[0]))
				}
				// Side effects toward the contact: approving sends our
				// presence; cancelling its subscription sends unavailable.
				var pres []string
				for _, el := range routed {
					if el.Type() == "" || el.Type() == "unavailable" {
						pres = append(pres, sig(el))
					}
				}
				var wantPres []string
				switch {
				case tab.typ == "subscribed" && changed:
					wantPres = []string{"presence juliet@example.com/balcony→" + contact}
				case tab.typ == "unsubscribed" && from.st.from():
					wantPres = []string{"presence unavailable juliet@example.com/balcony→" + contact}
				}
				if fmt.Sprint(pres) != fmt.Sprint(wantPres) {
					t.Fatalf("presence to contact %q, want %q", pres, wantPres)
				}
			})
		}
	}
}

// TestInboundSubscriptionRouter drives every Appendix A.3 transition: a
// subscription stanza from another domain to a local user with an
// available, interested resource.
func TestInboundSubscriptionRouter(t *testing.T) {
	t.Parallel()
	const sender = "romeo@remote.net"
	for _, tab := range appendixA {
		if !tab.in {
			continue
		}
		for i, from := range allStates {
			t.Run(fmt.Sprintf("%s/%s", tab.typ, from.name), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				fed := &capFed{}
				e.r.SetFederation(fed)
				e.user("juliet")
				e.setItem("juliet@example.com", sender, from.st, true)
				s := e.online("juliet", "balcony", 0)
				fed.take()

				e.route(fmt.Sprintf(`<presence type='%s' from='%s/orchard' to='juliet@example.com'/>`, tab.typ, sender))

				want := tab.after[i]
				it, _ := e.item("juliet@example.com", sender)
				if got := stateOf(it); got != want {
					t.Fatalf("stored state %+v, want %+v", got, want)
				}
				changed := want != from.st
				visible := want.Sub != from.st.Sub || want.PendingOut != from.st.PendingOut
				got := s.take()
				pushes := pushItems(got)
				if visible != (len(pushes) == 1) {
					t.Fatalf("visible change=%v but %d pushes", visible, len(pushes))
				}
				delivered := only("presence", got)
				autoReply := tab.typ == "subscribe" && from.st.from()
				wantDelivered := changed || (tab.typ == "subscribe" && !autoReply)
				if wantDelivered != (len(delivered) == 1) {
					t.Fatalf("delivered %q, want delivered=%v", sigs(delivered), wantDelivered)
				}
				if wantDelivered {
					if d := delivered[0]; d.Type() != tab.typ || d.From() != sender {
						t.Fatalf("delivered %s, want %s from the bare %s", sig(d), tab.typ, sender)
					}
				}
				out := fed.take()
				var wantOut []string
				switch {
				case autoReply:
					wantOut = []string{"presence subscribed juliet@example.com→" + sender}
				case tab.typ == "unsubscribe" && from.st.from():
					wantOut = []string{"presence unavailable juliet@example.com/balcony→" + sender}
				}
				if fmt.Sprint(sigs(out)) != fmt.Sprint(wantOut) {
					t.Fatalf("sent back %q, want %q", sigs(out), wantOut)
				}
			})
		}
	}
}

// TestSubscriptionPendingOnly covers items that exist only to remember an
// inbound request (RFC 6121 §3.1.3): not shown or pushed, re-delivered at
// the next initial presence, removed when refused, and added to the
// roster when approved.
func TestSubscriptionPendingOnly(t *testing.T) {
	const sender = "romeo@remote.net"
	newCase := func(t *testing.T) (*env, *capFed) {
		e := newEnv(t)
		fed := &capFed{}
		e.r.SetFederation(fed)
		e.user("juliet")
		// Nobody online: the request is kept.
		e.route(`<presence type='subscribe' from='romeo@remote.net' to='juliet@example.com'><status>hi</status></presence>`)
		it, ok := e.item("juliet@example.com", sender)
		if !ok || it.InRoster || !it.PendingIn {
			t.Fatalf("item %+v (exists %v), want pending-in only", it, ok)
		}
		return e, fed
	}
	t.Run("redelivered at initial presence, not in roster", func(t *testing.T) {
		e, _ := newCase(t)
		s := e.bind("juliet", "balcony")
		e.send(s, `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
		res := s.take()
		if len(res) != 1 || len(res[0].Child("query", wire.NSRoster).Children) != 0 {
			t.Fatalf("roster get %q, want an empty roster", sigs(res))
		}
		e.send(s, `<presence/>`)
		got := only("presence", s.take())
		var reqs []*wire.Element
		for _, el := range got {
			if el.Type() == "subscribe" {
				reqs = append(reqs, el)
			}
		}
		if len(reqs) != 1 || reqs[0].From() != sender {
			t.Fatalf("got %q, want the pending subscribe from %s", sigs(got), sender)
		}
	})
	t.Run("refused removes it", func(t *testing.T) {
		e, fed := newCase(t)
		s := e.online("juliet", "balcony", 0)
		e.send(s, `<presence type='unsubscribed' to='romeo@remote.net'/>`)
		if _, ok := e.item("juliet@example.com", sender); ok {
			t.Fatal("item still stored after refusing")
		}
		if p := pushItems(s.take()); len(p) != 0 {
			t.Fatalf("pushed %d items for an item never in the roster", len(p))
		}
		wantSigs(t, "to sender", only("presence", fed.take()), "presence unsubscribed juliet@example.com→"+sender)
	})
	t.Run("withdrawn removes it", func(t *testing.T) {
		e, _ := newCase(t)
		e.route(`<presence type='unsubscribe' from='romeo@remote.net' to='juliet@example.com'/>`)
		if _, ok := e.item("juliet@example.com", sender); ok {
			t.Fatal("item still stored after the request was withdrawn")
		}
	})
	t.Run("approved adds it", func(t *testing.T) {
		e, fed := newCase(t)
		s := e.online("juliet", "balcony", 0)
		fed.take()
		e.send(s, `<presence type='subscribed' to='romeo@remote.net'/>`)
		it, ok := e.item("juliet@example.com", sender)
		if !ok || !it.InRoster || stateOf(it) != stF {
			t.Fatalf("item %+v, want in roster with subscription from", it)
		}
		p := pushItems(s.take())
		if len(p) != 1 || p[0].Attr("subscription") != "from" {
			t.Fatalf("pushes %v, want one with subscription=from", p)
		}
		wantSigs(t, "to sender", fed.take(),
			"presence subscribed juliet@example.com→"+sender,
			"presence juliet@example.com/balcony→"+sender)
	})
}

func TestInboundSubscribeUnknownUser(t *testing.T) {
	e := newEnv(t)
	fed := &capFed{}
	e.r.SetFederation(fed)
	e.route(`<presence type='subscribe' from='romeo@remote.net' to='nobody@example.com'/>`)
	wantSigs(t, "reply", fed.take(), "presence unsubscribed nobody@example.com→romeo@remote.net")
	if _, ok := e.item("nobody@example.com", "romeo@remote.net"); ok {
		t.Fatal("stored an item for an account that does not exist")
	}
}

// TestSubscriptionLocalUsers runs the whole handshake between two users of
// the domain: request, approval, mutual presence, then unsubscribe.
func TestSubscriptionLocalUsers(t *testing.T) {
	e := newEnv(t)
	e.user("alice", "bob")
	a := e.online("alice", "home", 0)
	b := e.online("bob", "work", 0)

	e.send(a, `<presence type='subscribe' to='bob@example.com'/>`)
	if it, _ := e.item("alice@example.com", "bob@example.com"); stateOf(it) != stNPo {
		t.Fatalf("alice's item %+v, want None+PendingOut", it)
	}
	if it, _ := e.item("bob@example.com", "alice@example.com"); stateOf(it) != stNPi || it.InRoster {
		t.Fatalf("bob's item %+v, want pending-in only", it)
	}
	wantSigs(t, "bob", b.take(), "presence subscribe alice@example.com→bob@example.com")
	if p := pushItems(a.take()); len(p) != 1 || p[0].Attr("ask") != "subscribe" {
		t.Fatalf("alice's pushes %v, want ask=subscribe", p)
	}

	e.send(b, `<presence type='subscribed' to='alice@example.com'/>`)
	if it, _ := e.item("alice@example.com", "bob@example.com"); stateOf(it) != stT {
		t.Fatalf("alice's item %+v, want To", it)
	}
	if it, _ := e.item("bob@example.com", "alice@example.com"); stateOf(it) != stF || !it.InRoster {
		t.Fatalf("bob's item %+v, want From in roster", it)
	}
	ga := a.take()
	wantSigs(t, "alice presence", only("presence", ga),
		"presence subscribed bob@example.com→alice@example.com",
		"presence bob@example.com/work→alice@example.com")
	if p := pushItems(ga); len(p) != 1 || p[0].Attr("subscription") != "to" {
		t.Fatalf("alice's pushes %v, want subscription=to", p)
	}
	if p := pushItems(b.take()); len(p) != 1 || p[0].Attr("subscription") != "from" {
		t.Fatalf("bob's pushes %v, want subscription=from", p)
	}

	// Bob's presence changes reach alice now; alice's do not reach bob.
	e.send(b, `<presence><show>away</show></presence>`)
	wantSigs(t, "alice", a.take(), "presence bob@example.com/work→alice@example.com")
	wantSigs(t, "bob's own echo", b.take(), "presence bob@example.com/work→bob@example.com")
	e.send(a, `<presence><show>dnd</show></presence>`)
	wantSigs(t, "bob", b.take())

	// Alice unsubscribes: bob's resources send unavailable to her.
	a.take()
	e.send(a, `<presence type='unsubscribe' to='bob@example.com'/>`)
	if it, _ := e.item("bob@example.com", "alice@example.com"); stateOf(it) != stN {
		t.Fatalf("bob's item %+v, want None", it)
	}
	wantSigs(t, "alice presence", only("presence", a.take()), "presence unavailable bob@example.com/work→alice@example.com")
	wantSigs(t, "bob presence", only("presence", b.take()), "presence unsubscribe alice@example.com→bob@example.com")
}
