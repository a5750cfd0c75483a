package router

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

type res struct {
	name string
	prio int
	// available: sent initial presence; otherwise only bound.
	available bool
}

// TestMessageDelivery is RFC 6121 §8.5.2 and §8.5.3 for every message
// type, bare and full JIDs, priorities, and the offline cases. The sender
// is a local user, so errors come back to its session.
func TestMessageDelivery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		res      []res
		to       string // juliet@example.com + this
		typ      string
		want     []string // resources that get it
		offline  bool     // stored for later
		errorCnd string   // error back to the sender
	}{
		{"chat bare one", []res{{"a", 0, true}}, "", "chat", []string{"a"}, false, ""},
		{"chat bare highest priority", []res{{"a", 1, true}, {"b", 5, true}}, "", "chat", []string{"b"}, false, ""},
		{"chat bare tie goes to all", []res{{"a", 5, true}, {"b", 5, true}, {"c", 1, true}}, "", "chat", []string{"a", "b"}, false, ""},
		{"normal bare highest priority", []res{{"a", 1, true}, {"b", 5, true}}, "", "", []string{"b"}, false, ""},
		{"normal explicit type", []res{{"a", 1, true}}, "", "normal", []string{"a"}, false, ""},
		{"chat bare only negative priority", []res{{"a", -1, true}}, "", "chat", nil, true, ""},
		{"chat bare nobody online", nil, "", "chat", nil, true, ""},
		{"chat bare bound but not available", []res{{"a", 0, false}}, "", "chat", nil, true, ""},
		{"headline bare all non-negative", []res{{"a", 5, true}, {"b", 1, true}, {"c", -1, true}}, "", "headline", []string{"a", "b"}, false, ""},
		{"headline bare nobody", nil, "", "headline", nil, false, ""},
		{"groupchat bare", []res{{"a", 0, true}}, "", "groupchat", nil, false, "service-unavailable"},
		{"error bare", []res{{"a", 0, true}}, "", "error", nil, false, ""},
		{"chat full online lower priority", []res{{"a", 1, true}, {"b", 5, true}}, "/a", "chat", []string{"a"}, false, ""},
		{"chat full bound not available", []res{{"a", 0, false}}, "/a", "chat", []string{"a"}, false, ""},
		{"chat full negative priority", []res{{"a", -5, true}}, "/a", "chat", []string{"a"}, false, ""},
		{"chat full gone, other available", []res{{"b", 0, true}}, "/a", "chat", []string{"b"}, false, ""},
		{"normal full gone, nobody", nil, "/a", "", nil, true, ""},
		{"headline full online", []res{{"a", 0, true}}, "/a", "headline", []string{"a"}, false, ""},
		{"headline full gone", []res{{"b", 0, true}}, "/a", "headline", nil, false, ""},
		{"groupchat full online", []res{{"a", 0, true}}, "/a", "groupchat", []string{"a"}, false, ""},
		{"groupchat full gone", []res{{"b", 0, true}}, "/a", "groupchat", nil, false, "service-unavailable"},
		{"error full online", []res{{"a", 0, true}}, "/a", "error", []string{"a"}, false, ""},
		{"error full gone", []res{{"b", 0, true}}, "/a", "error", nil, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user("juliet", "romeo")
			romeo := e.online("romeo", "orchard", 0)
			sessions := map[string]*fakeSession{}
			for _, r := range tc.res {
				if r.available {
					sessions[r.name] = e.online("juliet", r.name, r.prio)
				} else {
					sessions[r.name] = e.bind("juliet", r.name)
				}
			}
			for _, s := range sessions {
				s.take()
			}
			typ := ""
			if tc.typ != "" {
				typ = " type='" + tc.typ + "'"
			}
			e.send(romeo, fmt.Sprintf(`<message to='juliet@example.com%s'%s id='m1'><body>hi</body></message>`, tc.to, typ))

			var got []string
			for _, r := range tc.res {
				for _, el := range sessions[r.name].take() {
					if el.Name == "message" && el.ID() == "m1" {
						got = append(got, r.name)
					}
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("delivered to %v, want %v", got, tc.want)
			}
			n, err := e.store.CountOffline(context.Background(), "juliet@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if (n == 1) != tc.offline || n > 1 {
				t.Fatalf("%d offline, want stored=%v", n, tc.offline)
			}
			back := romeo.take()
			switch {
			case tc.errorCnd == "" && len(back) != 0:
				t.Fatalf("sender got %q, want nothing", sigs(back))
			case tc.errorCnd != "":
				if len(back) != 1 || back[0].Type() != "error" || errCond(back[0]) != tc.errorCnd || back[0].ID() != "m1" {
					t.Fatalf("sender got %q, want error %s", sigs(back), tc.errorCnd)
				}
			}
		})
	}
}

func TestOfflineStorageHints(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, payload string
		stored        bool
	}{
		{"body", `<body>x</body>`, true},
		{"receipt only", `<received xmlns='urn:xmpp:receipts' id='a'/>`, true},
		{"chat state only", `<composing xmlns='http://jabber.org/protocol/chatstates'/>`, false},
		{"chat state with body", `<active xmlns='http://jabber.org/protocol/chatstates'/><body>x</body>`, true},
		{"chat state with store hint", `<gone xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/>`, true},
		{"no-store hint", `<body>x</body><no-store xmlns='urn:xmpp:hints'/>`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user("juliet", "romeo")
			romeo := e.online("romeo", "o", 0)
			e.send(romeo, `<message to='juliet@example.com' type='chat' id='h'>`+tc.payload+`</message>`)
			n, _ := e.store.CountOffline(context.Background(), "juliet@example.com")
			if (n == 1) != tc.stored {
				t.Fatalf("%d stored, want stored=%v", n, tc.stored)
			}
			if back := romeo.take(); len(back) != 0 {
				t.Fatalf("sender got %q", sigs(back))
			}
		})
	}
}

func TestMessageToUnknownUser(t *testing.T) {
	e := newEnv(t)
	e.user("romeo")
	romeo := e.online("romeo", "orchard", 0)
	e.send(romeo, `<message to='nobody@example.com' type='chat' id='m'><body>x</body></message>`)
	back := romeo.take()
	if len(back) != 1 || errCond(back[0]) != "service-unavailable" || back[0].From() != "nobody@example.com" {
		t.Fatalf("got %q", sigs(back))
	}
}

func TestMessageNoTo(t *testing.T) {
	e := newEnv(t)
	e.user("romeo")
	a := e.online("romeo", "a", 0)
	b := e.online("romeo", "b", 0)
	a.take()
	e.send(a, `<message type='chat' id='self'><body>note</body></message>`)
	ga, gb := a.take(), b.take()
	if len(ga)+len(gb) != 2 {
		t.Fatalf("got a=%q b=%q, want the message on both equal-priority resources", sigs(ga), sigs(gb))
	}
}

func TestOfflineStorageAndDelivery(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "orchard", 0)
	for i := range 3 {
		e.send(romeo, fmt.Sprintf(`<message to='juliet@example.com' type='chat' id='o%d'><body>%d</body></message>`, i, i))
	}
	if n, _ := e.store.CountOffline(context.Background(), "juliet@example.com"); n != 3 {
		t.Fatalf("%d stored, want 3", n)
	}

	// Negative priority: not delivered.
	neg := e.bind("juliet", "neg")
	e.send(neg, `<presence><priority>-1</priority></presence>`)
	if got := only("message", neg.take()); len(got) != 0 {
		t.Fatalf("negative-priority resource got %d offline messages", len(got))
	}

	// Raising the priority to non-negative hands the queue over.
	e.send(neg, `<presence><priority>0</priority></presence>`)
	msgs := only("message", neg.take())
	if len(msgs) != 3 {
		t.Fatalf("got %d messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.ID() != fmt.Sprintf("o%d", i) {
			t.Fatalf("message %d is %s: out of order", i, m.ID())
		}
		d := m.Child("delay", wire.NSDelay)
		if d == nil || d.Attr("from") != domain {
			t.Fatalf("message without delay from the domain: %s", m)
		}
		if _, err := time.Parse(time.RFC3339, d.Attr("stamp")); err != nil || !strings.HasSuffix(d.Attr("stamp"), "Z") {
			t.Fatalf("stamp %q: %v", d.Attr("stamp"), err)
		}
		if m.ChildText("body", "") != fmt.Sprint(i) {
			t.Fatalf("body %q", m.ChildText("body", ""))
		}
	}
	// The rows go once the messages are safe: at once here (no buddy),
	// on the hold's own goroutine.
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n, _ := e.store.CountOffline(context.Background(), "juliet@example.com"); n != 0 {
			return fmt.Errorf("%d still stored after delivery", n)
		}
		return nil
	})
	// A presence update does not deliver anything again, nor does another
	// resource's initial presence.
	e.send(neg, `<presence><show>away</show></presence>`)
	s := e.bind("juliet", "balcony")
	e.send(s, `<presence/>`)
	if got := append(only("message", s.take()), only("message", neg.take())...); len(got) != 0 {
		t.Fatalf("update delivered %d messages", len(got))
	}
}

func TestOfflineQuota(t *testing.T) {
	e := newEnv(t, func(c *conf.Config) { c.C2S.OfflineLimit = 2 })
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "orchard", 0)
	for i := range 3 {
		e.send(romeo, fmt.Sprintf(`<message to='juliet@example.com' id='q%d'><body>x</body></message>`, i))
	}
	back := romeo.take()
	if len(back) != 1 || back[0].ID() != "q2" || errCond(back[0]) != "service-unavailable" {
		t.Fatalf("sender got %q, want service-unavailable for the third", sigs(back))
	}
	if n, _ := e.store.CountOffline(context.Background(), "juliet@example.com"); n != 2 {
		t.Fatalf("%d stored, want 2", n)
	}
}

// TestUnbindReroutesUnsent: what a closing session had not written goes
// to another resource or offline storage.
func TestUnbindReroutesUnsent(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "o", 0)
	s := e.online("juliet", "balcony", 0)
	romeo.take()
	pending := []*wire.Element{
		mustParse(t, `<message from='romeo@example.com/o' to='juliet@example.com/balcony' type='chat' id='u1'><body>1</body></message>`),
		mustParse(t, `<message from='romeo@example.com/o' to='juliet@example.com' type='chat' id='u2'><body>2</body></message>`),
		mustParse(t, `<presence from='romeo@example.com/o' to='juliet@example.com/balcony'/>`),
		mustParse(t, `<message from='juliet@example.com' to='juliet@example.com/balcony' type='chat'><received xmlns='urn:xmpp:carbons:2'/></message>`),
		mustParse(t, `<iq from='juliet@example.com' to='juliet@example.com/balcony' type='set' id='push'><query xmlns='jabber:iq:roster'/></iq>`),
		mustParse(t, `<iq from='romeo@example.com/o' to='juliet@example.com/balcony' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>`),
	}
	e.r.Unbind(context.Background(), s, unsentOf(pending))
	msgs, err := e.store.TakeOffline(context.Background(), "juliet@example.com")
	if err != nil || len(msgs) != 2 {
		t.Fatalf("offline %d (%v), want the two messages (not the carbon)", len(msgs), err)
	}
	back := romeo.take()
	var iqs []*wire.Element
	for _, el := range back {
		if el.Name == "iq" {
			iqs = append(iqs, el)
		}
	}
	if len(iqs) != 1 || iqs[0].ID() != "q" || errCond(iqs[0]) != "service-unavailable" {
		t.Fatalf("romeo got %q, want the ping answered service-unavailable", sigs(back))
	}
}

func TestIQRouting(t *testing.T) {
	t.Parallel()
	pl := &fakePlugin{
		ns: map[string]plugins.Target{
			"urn:test:server":  plugins.ToServer,
			"urn:test:account": plugins.ToAccount,
		},
		handle: func(iq *plugins.IQ) (*wire.Element, error) {
			if iq.Payload().Name == "fail" {
				return nil, wire.ErrNotAllowed
			}
			return wire.NewNS("answer", iq.Payload().NS()).SetText(iq.To), nil
		},
	}
	cases := []struct {
		name   string
		stanza string
		want   string // sig of the reply to romeo ("" for none)
		cond   string
		answer string // text of <answer/>
	}{
		{"get to offline full JID", `<iq type='get' id='i' to='juliet@example.com/gone'><ping xmlns='urn:xmpp:ping'/></iq>`, "iq error juliet@example.com/gone→romeo@example.com/orchard", "service-unavailable", ""},
		{"result to offline full JID", `<iq type='result' id='i' to='juliet@example.com/gone'/>`, "", "", ""},
		{"error to offline full JID", `<iq type='error' id='i' to='juliet@example.com/gone'/>`, "", "", ""},
		{"bare JID unknown namespace", `<iq type='get' id='i' to='juliet@example.com'><x xmlns='urn:test:nobody'/></iq>`, "iq error juliet@example.com→romeo@example.com/orchard", "service-unavailable", ""},
		{"bare JID of no account", `<iq type='get' id='i' to='nobody@example.com'><q xmlns='urn:test:account'/></iq>`, "iq error nobody@example.com→romeo@example.com/orchard", "service-unavailable", ""},
		{"bare JID account plugin", `<iq type='get' id='i' to='juliet@example.com'><q xmlns='urn:test:account'/></iq>`, "iq result juliet@example.com→romeo@example.com/orchard", "", "juliet@example.com"},
		{"bare JID server-only namespace", `<iq type='get' id='i' to='juliet@example.com'><q xmlns='urn:test:server'/></iq>`, "iq error juliet@example.com→romeo@example.com/orchard", "service-unavailable", ""},
		{"bare JID plugin error", `<iq type='set' id='i' to='juliet@example.com'><fail xmlns='urn:test:account'/></iq>`, "iq error juliet@example.com→romeo@example.com/orchard", "not-allowed", ""},
		{"server unknown namespace", `<iq type='get' id='i' to='example.com'><x xmlns='urn:test:nobody'/></iq>`, "iq error example.com→romeo@example.com/orchard", "service-unavailable", ""},
		{"server plugin", `<iq type='get' id='i' to='example.com'><q xmlns='urn:test:server'/></iq>`, "iq result example.com→romeo@example.com/orchard", "", "example.com"},
		{"server resource", `<iq type='get' id='i' to='example.com/x'><q xmlns='urn:test:server'/></iq>`, "iq result example.com/x→romeo@example.com/orchard", "", "example.com"},
		{"server result dropped", `<iq type='result' id='i' to='example.com'/>`, "", "", ""},
		{"server error dropped", `<iq type='error' id='i' to='example.com'/>`, "", "", ""},
		{"no to: account plugin first", `<iq type='get' id='i'><q xmlns='urn:test:account'/></iq>`, "iq result →romeo@example.com/orchard", "", "romeo@example.com"},
		{"no to: then server plugin", `<iq type='get' id='i'><q xmlns='urn:test:server'/></iq>`, "iq result →romeo@example.com/orchard", "", "example.com"},
		{"no to: unknown", `<iq type='get' id='i'><q xmlns='urn:test:nobody'/></iq>`, "iq error →romeo@example.com/orchard", "service-unavailable", ""},
		{"no payload", `<iq type='get' id='i' to='example.com'/>`, "iq error example.com→romeo@example.com/orchard", "service-unavailable", ""},
		{"remote domain without s2s", `<iq type='get' id='i' to='x@elsewhere.net'><q xmlns='urn:test:server'/></iq>`, "iq error x@elsewhere.net→romeo@example.com/orchard", "remote-server-not-found", ""},
		{"malformed to", `<iq type='get' id='i' to='a@b@c'><q xmlns='urn:test:server'/></iq>`, "iq error a@b@c→romeo@example.com/orchard", "jid-malformed", ""},
		{"message to server", `<message to='example.com' id='i'><body>x</body></message>`, "message error example.com→romeo@example.com/orchard", "service-unavailable", ""},
		{"error message to server", `<message to='example.com' type='error' id='i'/>`, "", "", ""},
		{"presence to server", `<presence to='example.com'/>`, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.r.SetPlugins(plugins.NewManager(nil, e.r.log, []plugins.Plugin{pl}))
			e.user("juliet", "romeo")
			romeo := e.online("romeo", "orchard", 0)
			e.send(romeo, tc.stanza)
			back := romeo.take()
			if tc.want == "" {
				if len(back) != 0 {
					t.Fatalf("got %q, want nothing", sigs(back))
				}
				return
			}
			wantSigs(t, "reply", back, tc.want)
			if back[0].ID() != "i" {
				t.Fatalf("reply id %q", back[0].ID())
			}
			if errCond(back[0]) != tc.cond {
				t.Fatalf("error %q, want %q", errCond(back[0]), tc.cond)
			}
			if tc.answer != "" && back[0].FirstChild().Text != tc.answer {
				t.Fatalf("answer %s, want %q", back[0], tc.answer)
			}
		})
	}
}

func TestIQToOnlineResource(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "orchard", 0)
	juliet := e.bind("juliet", "balcony") // connected, not available: IQs still reach it
	e.send(romeo, `<iq type='get' id='v' to='juliet@example.com/balcony'><query xmlns='jabber:iq:version'/></iq>`)
	wantSigs(t, "juliet", juliet.take(), "iq get romeo@example.com/orchard→juliet@example.com/balcony")
	e.send(juliet, `<iq type='result' id='v' to='romeo@example.com/orchard'/>`)
	wantSigs(t, "romeo", romeo.take(), "iq result juliet@example.com/balcony→romeo@example.com/orchard")
}

func TestFederation(t *testing.T) {
	e := newEnv(t)
	fed := &capFed{}
	e.r.SetFederation(fed)
	e.user("romeo")
	romeo := e.online("romeo", "orchard", 0)
	e.send(romeo, `<message to='mercutio@verona.lit' type='chat'><body>x</body></message>`)
	wantSigs(t, "federation", fed.take(), "message chat romeo@example.com/orchard→mercutio@verona.lit")
	// From s2s to a local user.
	e.r.FromRemote(context.Background(), mustParse(t, `<message from='mercutio@verona.lit/x' to='romeo@example.com' type='chat'><body>y</body></message>`))
	wantSigs(t, "romeo", romeo.take(), "message chat mercutio@verona.lit/x→romeo@example.com")
	// No relaying: s2s stanzas for a third domain are dropped.
	e.r.FromRemote(context.Background(), mustParse(t, `<message from='mercutio@verona.lit/x' to='tybalt@capulet.lit' type='chat'><body>y</body></message>`))
	wantSigs(t, "federation", fed.take())
}

// TestOfflineHandOverRefused: a session that stops taking stanzas during
// the hand-over leaves the queue in storage, the very rows (not deleted,
// so not stored again: their XEP-0203 stamp is added at delivery).
func TestOfflineHandOverRefused(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "o", 0)
	for i := range 2 {
		e.send(romeo, fmt.Sprintf(`<message to='juliet@example.com' id='r%d'><body>x</body></message>`, i))
	}
	s := e.bind("juliet", "closing")
	s.Close("", "") // refuses every stanza from now on
	e.send(s, `<presence/>`)
	msgs, err := e.store.TakeOffline(context.Background(), "juliet@example.com")
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d messages kept (%v), want 2", len(msgs), err)
	}
	for i, m := range msgs {
		if el := mustParse(t, string(m.Stanza)); el.ID() != fmt.Sprintf("r%d", i) || el.Child("delay", wire.NSDelay) != nil {
			t.Fatalf("kept %s", m.Stanza)
		}
	}
}
