package muc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/muc"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

// refusedCreation is the whole answer to a join that would create a
// room past muc.max_rooms_per_user (2 in these tests): XEP-0045 §10.1.1's
// not-allowed, from the nick's address.
func refusedCreation(room, to, nick string) string {
	return `<presence from="` + room + `@` + svc + `/` + nick + `" type="error" to="` + to + `">` +
		`<x xmlns="http://jabber.org/protocol/muc"/>` +
		`<error type="cancel"><not-allowed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>` +
		`<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">you own 2 rooms already, the most one user may own here (muc.max_rooms_per_user)</text>` +
		`</error></presence>`
}

// expectRefused checks that got is exactly the refusal of creating room.
func expectRefused(t *testing.T, got []string, room, to, nick string) {
	t.Helper()
	want := refusedCreation(room, to, nick)
	if len(got) != 1 || got[0] != want {
		t.Fatalf("creating %s past the limit:\n got %q\nwant %q", room, got, want)
	}
}

func created(t *testing.T, got []string, room, to string) {
	t.Helper()
	mustFind(t, got, `from="`+room+`@`+svc+`/`, `to="`+to+`"`, `code="110"`, `code="201"`)
}

// TestRoomsPerUser: a user who owns muc.max_rooms_per_user rooms is
// refused a third with not-allowed, and nothing else changes: the user's
// rooms work, others still create theirs. Destroying a room, or a
// temporary room emptying, frees a slot; administrators are exempt.
func TestRoomsPerUser(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.MUC.MaxRoomsPerUser = 2
	h.Admin["boss@example.com"] = true
	f := &fixture{t: t, h: h, m: h.Start(t, muc.New())}
	f.instant("keep")
	// A join without the MUC element: an instant temporary room.
	created(t, f.do("temp", `<presence from='alice@example.com/a' to='temp@`+svc+`/alice'/>`), "temp", "alice@example.com/a")

	expectRefused(t, f.do("third", join("third", "alice@example.com/a", "alice")), "third", "alice@example.com/a", "alice")
	// The refused room does not exist: bob creates it.
	created(t, f.do("third", join("third", "bob@example.com/b", "bob")), "third", "bob@example.com/b")
	// Alice's rooms go on: another of her sessions joins, she talks.
	got := f.do("keep", join("keep", "alice@example.com/phone", "alice"),
		`<message type='groupchat' from='alice@example.com/a' to='keep@`+svc+`'><body>still here</body></message>`)
	mustFind(t, got, `to="alice@example.com/phone"`, `code="110"`)
	mustFind(t, got, `to="alice@example.com/phone"`, `<body>still here</body>`)

	// The temporary room empties and is gone: a slot is free.
	f.do("temp", `<presence type='unavailable' from='alice@example.com/a' to='temp@`+svc+`/alice'/>`)
	created(t, f.do("fourth", join("fourth", "alice@example.com/a", "alice")), "fourth", "alice@example.com/a")
	f.do("fourth", `<iq type='set' id='cfg' from='alice@example.com/a' to='fourth@`+svc+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	expectRefused(t, f.do("fifth", join("fifth", "alice@example.com/a", "alice")), "fifth", "alice@example.com/a", "alice")

	// Destroying a room frees its slot.
	got = f.do("keep", `<iq type='set' id='d1' from='alice@example.com/a' to='keep@`+svc+`'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>`)
	mustFind(t, got, `id="d1"`, `type="result"`)
	created(t, f.do("fifth", join("fifth", "alice@example.com/a", "alice")), "fifth", "alice@example.com/a")

	// An administrator owns as many as they like.
	for i := range 3 {
		room := fmt.Sprintf("boss%d", i)
		created(t, f.do(room, `<presence from='boss@example.com/x' to='`+room+`@`+svc+`/boss'/>`), room, "boss@example.com/x")
	}
}

// TestRoomsPerUserAcrossTheCluster: rooms created through two nodes and
// hosted by both count together, whichever node the next creation
// arrives at and whichever hosts the new room.
func TestRoomsPerUserAcrossTheCluster(t *testing.T) {
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	limit := func(h *plugintest.Host) { h.Cfg.MUC.MaxRoomsPerUser = 2 }
	fa := startNodeWith(t, net, nil, "a", false, limit)
	fb := startNodeWith(t, net, fa.h.St, "b", false, limit)
	two := []plugins.Member{{Name: "a"}, {Name: "b"}}
	hostedBy := map[string][]string{}
	for i := 0; len(hostedBy["a"]) < 2 || len(hostedBy["b"]) < 2; i++ {
		room := fmt.Sprintf("room%d", i)
		node := plugins.Rendezvous(room, two)
		hostedBy[node] = append(hostedBy[node], room)
	}
	onA, onB := hostedBy["a"][0], hostedBy["b"][0]
	// One room hosted by each node, each asked for through the other.
	created(t, fb.do(onA, `<presence from='alice@example.com/a' to='`+onA+`@`+svc+`/alice'/>`), onA, "alice@example.com/a")
	created(t, fa.do(onB, `<presence from='alice@example.com/a' to='`+onB+`@`+svc+`/alice'/>`), onB, "alice@example.com/a")
	if !strings.Contains(strings.Join(fa.m.Plugin(muc.ID).(*muc.Plugin).Hosted(), " "), onA) {
		t.Fatalf("a does not host %s", onA)
	}
	// A third is refused on either node, for a room either hosts.
	for _, c := range []struct {
		f    *fixture
		room string
	}{{fa, hostedBy["a"][1]}, {fa, hostedBy["b"][1]}, {fb, hostedBy["a"][1]}, {fb, hostedBy["b"][1]}} {
		expectRefused(t, c.f.sendUntil(join(c.room, "alice@example.com/a", "alice"), `to="alice@example.com/a"`), c.room, "alice@example.com/a", "alice")
	}
}

// sendUntil hands a stanza to this node's service and returns what the
// node routed until a stanza with every one of the parts. (do's ping
// cannot mark the end here: a room that does not exist answers it from
// its host, another node.)
func (f *fixture) sendUntil(xml string, parts ...string) []string {
	f.t.Helper()
	svcH, _ := f.m.Service(svc)
	if err := svcH.Handle(context.Background(), plugintest.Parse(f.t, xml)); err != nil {
		f.t.Fatalf("service: %v", err)
	}
	var got []string
	for deadline := time.Now().Add(10 * time.Second); len(find(got, parts...)) == 0; {
		if time.Now().After(deadline) {
			f.t.Fatalf("nothing with %q; got %q", parts, got)
		}
		time.Sleep(5 * time.Millisecond) // polling what the fake node recorded
		got = append(got, f.h.Routed()...)
	}
	return got
}
