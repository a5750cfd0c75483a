package router

import (
	"context"
	"fmt"
	"testing"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// TestInitialPresenceReadsOfflineWithRoster checks the login path where the
// store reads the roster and the offline queue in one call: the
// queue is delivered in order with <delay/>, once, and the roster still
// drives presence (a subscriber gets the new presence).
func TestInitialPresenceReadsOfflineWithRoster(t *testing.T) {
	cases := []struct {
		name     string
		priority string
		messages int
		want     int
	}{
		{"no messages", "", 0, 0},
		{"two messages", "", 2, 2},
		{"explicit priority", "<priority>3</priority>", 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if _, ok := e.store.(rosterOfflineLoader); !ok {
				t.Fatal("the test store does not take the roster and offline queue in one call")
			}
			e.user("juliet", "romeo")
			e.setItem("juliet@example.com", "romeo@example.com", subState{Sub: storage.SubBoth}, true)
			e.setItem("romeo@example.com", "juliet@example.com", subState{Sub: storage.SubBoth}, true)
			romeo := e.online("romeo", "orchard", 0)
			romeo.take()
			for i := range tc.messages {
				e.send(romeo, fmt.Sprintf(`<message to='juliet@example.com' type='chat' id='o%d'><body>%d</body></message>`, i, i))
			}
			if n, _ := e.store.CountOffline(context.Background(), "juliet@example.com"); n != tc.messages {
				t.Fatalf("%d stored, want %d", n, tc.messages)
			}
			juliet := e.bind("juliet", "balcony")
			e.send(juliet, `<presence>`+tc.priority+`</presence>`)
			msgs := only("message", juliet.take())
			if len(msgs) != tc.want {
				t.Fatalf("got %d offline messages, want %d", len(msgs), tc.want)
			}
			for i, m := range msgs {
				if m.ID() != fmt.Sprintf("o%d", i) {
					t.Fatalf("message %d is %s: out of order", i, m.ID())
				}
				if d := m.Child("delay", wire.NSDelay); d == nil || d.Attr("from") != domain {
					t.Fatalf("message without delay from the domain: %s", m)
				}
			}
			e.waitOffline("juliet@example.com", 0) // deleted once delivered (no buddy node here)
			if got := only("presence", romeo.take()); len(got) == 0 {
				t.Fatal("subscriber romeo got no presence from juliet's initial presence")
			}
		})
	}
}
