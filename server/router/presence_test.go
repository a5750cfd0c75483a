package router

import (
	"context"
	"errors"
	"fmt"
	"github.com/aviary-im/aviary/plugins/last"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// sortedSigs is sigs sorted, for sets of stanzas whose order does not matter.
func sortedSigs(els []*wire.Element) []string {
	s := sigs(els)
	sort.Strings(s)
	return s
}

func wantSet(t *testing.T, what string, got []*wire.Element, want ...string) {
	t.Helper()
	sort.Strings(want)
	g := sortedSigs(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got  %q\n want %q", what, g, want)
	}
}

// presenceWorld: juliet's contacts with every subscription state, each
// online with a consistent roster of their own, plus a remote contact.
func presenceWorld(t *testing.T) (*env, *capFed, map[string]*fakeSession) {
	e := newEnv(t)
	fed := &capFed{}
	e.r.SetFederation(fed)
	e.user("juliet", "romeo", "nurse", "benvolio", "paris")
	const j = "juliet@example.com"
	e.setItem(j, "romeo@example.com", stB, true)
	e.setItem("romeo@example.com", j, stB, true)
	e.setItem(j, "nurse@example.com", stF, true) // nurse sees juliet
	e.setItem("nurse@example.com", j, stT, true)
	e.setItem(j, "benvolio@example.com", stT, true) // juliet sees benvolio
	e.setItem("benvolio@example.com", j, stF, true)
	e.setItem(j, "paris@example.com", stN, true) // nothing
	e.setItem(j, "tybalt@remote.net", stB, true)
	ss := map[string]*fakeSession{}
	for _, u := range []string{"romeo", "nurse", "benvolio", "paris"} {
		ss[u] = e.online(u, "x", 0)
	}
	for _, s := range ss {
		s.take()
	}
	fed.take()
	return e, fed, ss
}

func TestInitialPresence(t *testing.T) {
	e, fed, ss := presenceWorld(t)
	j := e.bind("juliet", "balcony")
	e.send(j, `<presence><status>here</status></presence>`)

	wantSigs(t, "romeo", ss["romeo"].take(), "presence juliet@example.com/balcony→romeo@example.com")
	wantSigs(t, "nurse", ss["nurse"].take(), "presence juliet@example.com/balcony→nurse@example.com")
	wantSigs(t, "benvolio", ss["benvolio"].take())
	wantSigs(t, "paris", ss["paris"].take())
	got := j.take()
	wantSet(t, "juliet", got,
		"presence juliet@example.com/balcony→juliet@example.com", // own resources get it too
		"presence romeo@example.com/x→juliet@example.com/balcony",
		"presence benvolio@example.com/x→juliet@example.com/balcony")
	for _, el := range got {
		if el.From() == "juliet@example.com/balcony" && el.ChildText("status", "") != "here" {
			t.Fatalf("echo lost the payload: %s", el)
		}
	}
	wantSet(t, "federation", fed.take(),
		"presence juliet@example.com/balcony→tybalt@remote.net",
		"presence probe juliet@example.com/balcony→tybalt@remote.net")

	// An update goes to subscribers only: no probes.
	e.send(j, `<presence><show>away</show></presence>`)
	wantSigs(t, "romeo", ss["romeo"].take(), "presence juliet@example.com/balcony→romeo@example.com")
	wantSigs(t, "juliet", j.take(), "presence juliet@example.com/balcony→juliet@example.com")
	wantSet(t, "federation", fed.take(), "presence juliet@example.com/balcony→tybalt@remote.net")
}

func TestOwnResourcesSeeEachOther(t *testing.T) {
	e := newEnv(t)
	e.user("juliet")
	a := e.online("juliet", "a", 0)
	b := e.bind("juliet", "b")
	e.send(b, `<presence/>`)
	wantSigs(t, "a", a.take(), "presence juliet@example.com/b→juliet@example.com")
	// b sees itself and gets a's current presence.
	wantSet(t, "b", b.take(),
		"presence juliet@example.com/b→juliet@example.com",
		"presence juliet@example.com/a→juliet@example.com/b")
}

func TestProbes(t *testing.T) {
	e, fed, _ := presenceWorld(t)
	j := e.online("juliet", "balcony", 3)
	fed.take()
	cases := []struct {
		name, probe string
		want        []string
	}{
		{"subscriber gets each resource", `<presence type='probe' from='tybalt@remote.net/x' to='juliet@example.com'/>`,
			[]string{"presence juliet@example.com/balcony→tybalt@remote.net/x"}},
		{"not subscribed gets unsubscribed", `<presence type='probe' from='mercutio@remote.net' to='juliet@example.com'/>`,
			[]string{"presence unsubscribed juliet@example.com→mercutio@remote.net"}},
		{"unknown user", `<presence type='probe' from='tybalt@remote.net' to='nobody@example.com'/>`,
			[]string{"presence unsubscribed nobody@example.com→tybalt@remote.net"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.route(tc.probe)
			got := fed.take()
			wantSigs(t, "reply", got, tc.want...)
			if len(j.take()) != 0 {
				t.Fatal("the probe reached the client")
			}
		})
	}
	t.Run("answer carries the last presence", func(t *testing.T) {
		e.send(j, `<presence><show>dnd</show><priority>3</priority></presence>`)
		fed.take()
		e.route(`<presence type='probe' from='tybalt@remote.net' to='juliet@example.com'/>`)
		got := fed.take()
		if len(got) != 1 || got[0].ChildText("show", "") != "dnd" {
			t.Fatalf("got %q", sigs(got))
		}
	})
	t.Run("nobody available: unavailable with last activity", func(t *testing.T) {
		e.r.Unbind(context.Background(), j, nil)
		fed.take()
		e.route(`<presence type='probe' from='tybalt@remote.net' to='juliet@example.com'/>`)
		got := fed.take()
		wantSigs(t, "reply", got, "presence unavailable juliet@example.com→tybalt@remote.net")
		d := got[0].Child("delay", wire.NSDelay)
		if d == nil || d.Attr("stamp") != "2026-01-02T03:04:05.000Z" {
			t.Fatalf("no last-activity stamp: %s", got[0])
		}
	})
}

func TestUnavailableOnDisconnect(t *testing.T) {
	e, fed, ss := presenceWorld(t)
	e.user("mercutio")
	merc := e.online("mercutio", "m", 0)
	j := e.online("juliet", "balcony", 0)
	j2 := e.online("juliet", "chamber", 0)
	for _, s := range ss {
		s.take()
	}
	j.take()
	fed.take()

	// Directed presence to a non-subscriber, and one withdrawn again.
	e.send(j, `<presence to='mercutio@example.com'/>`)
	e.send(j, `<presence to='paris@example.com/x'/>`)
	e.send(j, `<presence to='paris@example.com/x' type='unavailable'/>`)
	wantSigs(t, "mercutio", merc.take(), "presence juliet@example.com/balcony→mercutio@example.com")
	ss["paris"].take()

	e.r.Unbind(context.Background(), j, nil)
	want := "presence unavailable juliet@example.com/balcony→"
	wantSigs(t, "romeo", ss["romeo"].take(), want+"romeo@example.com")
	wantSigs(t, "nurse", ss["nurse"].take(), want+"nurse@example.com")
	wantSigs(t, "mercutio (directed)", merc.take(), want+"mercutio@example.com")
	wantSigs(t, "paris (withdrawn)", ss["paris"].take())
	wantSigs(t, "benvolio", ss["benvolio"].take())
	wantSigs(t, "juliet's other resource", j2.take(), want+"juliet@example.com")
	wantSigs(t, "federation", fed.take(), want+"tybalt@remote.net")

	// Another resource is still online: no last activity yet.
	if _, _, err := last.Load(context.Background(), e.store, "juliet@example.com"); err == nil {
		t.Fatal("last activity recorded while a resource is online")
	}
	e.send(j2, `<presence type='unavailable'><status>bye</status></presence>`)
	wantSigs(t, "romeo", ss["romeo"].take(), "presence unavailable juliet@example.com/chamber→romeo@example.com")
	e.r.Unbind(context.Background(), j2, nil)
	// Already unavailable: no second broadcast.
	wantSigs(t, "romeo", ss["romeo"].take())
	at, status, err := last.Load(context.Background(), e.store, "juliet@example.com")
	if err != nil || !at.Equal(e.now) || status != "bye" {
		t.Fatalf("last activity %v %q %v, want %v bye", at, status, err, e.now)
	}
}

func TestDirectedPresenceWithoutBroadcast(t *testing.T) {
	e := newEnv(t)
	fed := &capFed{}
	e.r.SetFederation(fed)
	e.user("juliet")
	s := e.bind("juliet", "b") // never sends broadcast presence
	e.send(s, `<presence to='muc@conference.remote.net/juliet'/>`)
	wantSigs(t, "directed", fed.take(), "presence juliet@example.com/b→muc@conference.remote.net/juliet")
	e.r.Unbind(context.Background(), s, nil)
	wantSigs(t, "at logout", fed.take(), "presence unavailable juliet@example.com/b→muc@conference.remote.net/juliet")
}

func TestUnavailableMakesMessagesOffline(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "o", 0)
	j := e.online("juliet", "balcony", 0)
	e.send(j, `<presence type='unavailable'/>`)
	e.send(romeo, `<message to='juliet@example.com' type='chat'><body>x</body></message>`)
	if got := only("message", j.take()); len(got) != 0 {
		t.Fatal("unavailable resource got a message to the bare JID")
	}
	if n, _ := e.store.CountOffline(context.Background(), "juliet@example.com"); n != 1 {
		t.Fatalf("%d offline, want 1", n)
	}
	// Available again: the stored message is handed over.
	e.send(j, `<presence/>`)
	if got := only("message", j.take()); len(got) != 1 {
		t.Fatalf("got %d messages after coming back", len(got))
	}
}

func TestPresenceToLocalUser(t *testing.T) {
	e := newEnv(t)
	e.user("juliet")
	a := e.online("juliet", "a", -1)
	b := e.online("juliet", "b", 2)
	c := e.bind("juliet", "c")
	for _, s := range []*fakeSession{a, b} {
		s.take()
	}
	e.route(`<presence from='x@remote.net/y' to='juliet@example.com'/>`)
	wantSigs(t, "a", a.take(), "presence x@remote.net/y→juliet@example.com")
	wantSigs(t, "b", b.take(), "presence x@remote.net/y→juliet@example.com")
	wantSigs(t, "c (not available)", c.take())
	e.route(`<presence from='x@remote.net/y' to='juliet@example.com/c'/>`)
	wantSigs(t, "c (full JID)", c.take(), "presence x@remote.net/y→juliet@example.com/c")
	e.route(`<presence from='x@remote.net/y' to='juliet@example.com/gone'/>`)
	// No such presence type: not taken for available presence (§4.7.1).
	e.route(`<presence type='bogus' from='x@remote.net/y' to='juliet@example.com'/>`)
	e.route(`<presence type='bogus' from='x@remote.net/y' to='juliet@example.com/c'/>`)
	for _, s := range []*fakeSession{a, b, c} {
		if got := s.take(); len(got) != 0 {
			t.Fatalf("got %q", sigs(got))
		}
	}
	// An error to the bare JID (the answer to a subscription request, which
	// left from the bare JID) reaches every available resource.
	e.route(`<presence type='error' from='x@remote.net' to='juliet@example.com'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`)
	wantSigs(t, "a", a.take(), "presence error x@remote.net→juliet@example.com")
	wantSigs(t, "b", b.take(), "presence error x@remote.net→juliet@example.com")
	wantSigs(t, "c (not available)", c.take())
}

// TestClientPresenceUnknownType: a client's presence with a type RFC 6121
// does not define is refused with bad-request, not passed on.
func TestClientPresenceUnknownType(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "r", 0)
	j := e.online("juliet", "a", 0)
	e.send(j, `<presence type='bogus' id='p1' to='romeo@example.com'/>`)
	got := j.take()
	if len(got) != 1 || got[0].Type() != "error" || errCond(got[0]) != "bad-request" || got[0].ID() != "p1" {
		t.Fatalf("juliet got %q, want one bad-request", sigs(got))
	}
	wantSigs(t, "romeo", romeo.take())
}

func TestBindConflict(t *testing.T) {
	t.Parallel()
	cases := []struct {
		policy string
		check  func(t *testing.T, e *env, old *fakeSession, s *fakeSession, err error)
	}{
		{"kick_old", func(t *testing.T, e *env, old, s *fakeSession, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if closed, cond := old.isClosed(); !closed || cond != "conflict" {
				t.Fatalf("old session closed=%v cond=%q", closed, cond)
			}
			if s.JID().String() != "juliet@example.com/balcony" {
				t.Fatalf("bound %s", s.JID())
			}
			// The old session's late Unbind must not remove the new one.
			e.r.Unbind(context.Background(), old, nil)
			if res, _ := e.r.Resources(context.Background(), "juliet@example.com"); len(res) != 1 {
				t.Fatalf("resources %v, want the new one", res)
			}
			if len(e.r.LocalSessions()) != 2 { // romeo and the new juliet
				t.Fatalf("%d sessions", len(e.r.LocalSessions()))
			}
			e.send(s, `<presence/>`)
			e.route(`<message from='x@remote.net' to='juliet@example.com/balcony' id='k'/>`)
			if got := only("message", s.take()); len(got) != 1 {
				t.Fatalf("new session got %d messages", len(got))
			}
		}},
		{"reject", func(t *testing.T, e *env, old, s *fakeSession, err error) {
			if !errors.Is(err, wire.ErrConflict) {
				t.Fatalf("err %v, want conflict", err)
			}
			if closed, _ := old.isClosed(); closed {
				t.Fatal("old session closed")
			}
		}},
		{"new_resource", func(t *testing.T, e *env, old, s *fakeSession, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if closed, _ := old.isClosed(); closed {
				t.Fatal("old session closed")
			}
			if r := s.JID().Resource(); r == "balcony" || !strings.HasPrefix(r, "balcony-") {
				t.Fatalf("bound %s", s.JID())
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *conf.Config) { c.C2S.ResourceConflict = tc.policy })
			e.user("juliet", "romeo")
			e.setItem("romeo@example.com", "juliet@example.com", stT, true)
			e.setItem("juliet@example.com", "romeo@example.com", stF, true)
			romeo := e.online("romeo", "o", 0)
			old := e.online("juliet", "balcony", 0)
			romeo.take()
			s := &fakeSession{}
			j, err := e.r.Bind(context.Background(), s, "juliet", "balcony")
			s.jid = j
			if tc.policy == "kick_old" {
				wantSigs(t, "romeo", romeo.take(), "presence unavailable juliet@example.com/balcony→romeo@example.com")
			}
			tc.check(t, e, old, s, err)
		})
	}
}

func TestBindGeneratesResource(t *testing.T) {
	e := newEnv(t)
	s := &fakeSession{}
	j, err := e.r.Bind(context.Background(), s, "juliet", "")
	if err != nil || j.Resource() == "" {
		t.Fatalf("Bind = %v, %v", j, err)
	}
	if _, err := e.r.Bind(context.Background(), s, "a@b", "x"); err == nil {
		t.Fatal("bound an invalid localpart")
	}
}

func TestKick(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	e.setItem("romeo@example.com", "juliet@example.com", stT, true)
	e.setItem("juliet@example.com", "romeo@example.com", stF, true)
	romeo := e.online("romeo", "o", 0)
	a := e.online("juliet", "a", 0)
	b := e.online("juliet", "b", 0)
	romeo.take()
	if n := e.r.Kick(context.Background(), "juliet@example.com", "account deleted"); n != 2 {
		t.Fatalf("Kick = %d", n)
	}
	for _, s := range []*fakeSession{a, b} {
		if closed, _ := s.isClosed(); !closed {
			t.Fatal("session not closed")
		}
	}
	if len(only("presence", romeo.take())) != 2 {
		t.Fatal("contacts did not get unavailable presence")
	}
	if res, _ := e.r.Resources(context.Background(), "juliet@example.com"); len(res) != 0 {
		t.Fatalf("resources left: %v", res)
	}
}

func TestHooks(t *testing.T) {
	st := openStore(t)
	hooks := plugins.NewHooks()
	var mu sync.Mutex
	var events []string
	for _, ev := range []plugins.Event{plugins.EventPresenceAvailable, plugins.EventRosterChanged} {
		hooks.Add(ev, 0, func(ctx context.Context, payload any) error {
			mu.Lock()
			defer mu.Unlock()
			switch p := payload.(type) {
			case *plugins.SessionEvent:
				events = append(events, string(ev)+" "+p.JID)
			case *plugins.RosterEvent:
				events = append(events, fmt.Sprintf("%s %s %s %s %v", ev, p.Owner, p.Contact, p.Subscription, p.Removed))
			}
			return nil
		})
	}
	e := &env{t: t, store: st, cfg: testConfig()}
	e.r = New(Options{Config: ConfigFrom(e.cfg), Store: st, Cluster: local.New("n"), Hooks: hooks})
	e.user("juliet")
	s := e.online("juliet", "b", 0)
	e.send(s, `<presence><show>away</show></presence>`) // an update: no event
	e.send(s, `<iq type='set' id='a'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com'/></query></iq>`)
	e.send(s, `<iq type='set' id='a'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' subscription='remove'/></query></iq>`)
	want := []string{
		"c2s.presence.available juliet@example.com/b",
		"roster.item.changed juliet@example.com nurse@example.com none false",
		"roster.item.changed juliet@example.com nurse@example.com none true",
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events %q, want %q", events, want)
	}
}
