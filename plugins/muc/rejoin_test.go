package muc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

// TestRejoinRightAfterTheRoomEmptied is Smack's mucLeaveTest in a loop:
// a user leaves a temporary room, which empties it (the room is dropped
// and placement forgets the key), and joins it again at once: the moment
// the leave is confirmed, as Smack does, and also right behind the leave,
// before it is handled (both wait in the key's queue together). Every
// join must get its self-presence, with 201 (the room was created again,
// so it really was dropped in between), whether the room is hosted on
// the user's node or on another one.
func TestRejoinRightAfterTheRoomEmptied(t *testing.T) {
	t.Run("one node", func(t *testing.T) {
		f := newFixture(t)
		leaveAndRejoin(t, f, "leave")
	})
	t.Run("hosted on another node", func(t *testing.T) {
		_, fa, _, room := twoNodes(t, false)
		leaveAndRejoin(t, fa, room)
	})
}

func leaveAndRejoin(t *testing.T, f *fixture, room string) {
	const rounds = 500
	const user = "alice@example.com/a"
	nick := room + "@" + svc + "/nick-one"
	leave := fmt.Sprintf(`<presence type='unavailable' from='%s' to='%s'/>`, user, nick)
	selfPresence := []string{`<presence`, `from="` + nick + `"`, `to="` + user + `"`, `code="110"`}
	left := append([]string{`type="unavailable"`}, selfPresence...)
	var q routedQueue
	// joined waits for the join's self-presence: the room created again
	// (201) with its creator as owner, not a room rebuilt around an
	// occupant some node still listed.
	joined := func(what string) {
		t.Helper()
		s := q.expect(t, f, what, selfPresence...)
		if strings.Contains(s, `type="unavailable"`) || !strings.Contains(s, `code="201"`) || !strings.Contains(s, `affiliation="owner"`) {
			t.Fatalf("%s: want a new room's self-presence (201, owner), got %s", what, s)
		}
	}
	f.send(join(room, user, "nick-one"))
	joined("the first join")
	for i := range rounds {
		f.send(leave)
		q.expect(t, f, fmt.Sprintf("leave %d", i), left...)
		f.send(join(room, user, "nick-one"))
		joined(fmt.Sprintf("join %d after the leave was confirmed", i))
		f.send(leave)
		f.send(join(room, user, "nick-one"))
		q.expect(t, f, fmt.Sprintf("leave %d, followed at once by a join", i), left...)
		joined(fmt.Sprintf("join %d right behind the leave", i))
	}
}

// send hands one stanza to the service, as the router would.
func (f *fixture) send(xml string) {
	f.t.Helper()
	svcH, ok := f.m.Service(svc)
	if !ok {
		f.t.Fatal("no conference service")
	}
	if err := svcH.Handle(context.Background(), plugintest.Parse(f.t, xml)); err != nil {
		f.t.Fatalf("service refused %s: %v", xml, err)
	}
}

// routedQueue reads what a fixture's host routed, in order.
type routedQueue struct{ pending []string }

// expect waits for the next stanza that has every one of the parts,
// passing over the others (the subject after a join), and fails at an
// error stanza: a join or leave must be answered, never bounced.
func (q *routedQueue) expect(t *testing.T, f *fixture, what string, parts ...string) string {
	t.Helper()
	var passed []string
	var found string
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		q.pending = append(q.pending, f.h.Routed()...)
		for len(q.pending) > 0 {
			s := q.pending[0]
			q.pending = q.pending[1:]
			if strings.Contains(s, `type="error"`) {
				t.Fatalf("%s: bounced: %s", what, s)
			}
			if hasAll(s, parts) {
				found = s
				return nil
			}
			passed = append(passed, s)
		}
		return errors.New(what + ": no stanza with " + strings.Join(parts, " ") + "; passed over " + strings.Join(passed, "\n"))
	})
	return found
}

func hasAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
