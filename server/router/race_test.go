package router

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentTraffic runs sessions of two nodes in parallel: messages,
// presence changes, roster requests, carbons switches and sessions coming
// and going. Under -race it finds unguarded state; it also checks that
// every message to a bare JID ended somewhere (a session or storage).
func TestConcurrentTraffic(t *testing.T) {
	e1, e2, _ := twoNodes(t)
	envs := []*env{e1, e2}
	users := []string{"alice", "bob", "juliet", "romeo"}
	for _, u := range users {
		for _, o := range users {
			if u != o {
				e1.setItem(u+"@example.com", o+"@example.com", stB, true)
			}
		}
	}
	const perUser = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	rounds := 0
	seen := map[string]bool{}
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := envs[i%2]
			for round := range perUser {
				s := &fakeSession{}
				j, err := e.r.Bind(context.Background(), s, u, fmt.Sprintf("r%d", round%3))
				if err != nil {
					t.Errorf("Bind: %v", err)
					return
				}
				s.mu.Lock()
				s.jid = j
				s.mu.Unlock()
				e.send(s, `<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`)
				e.send(s, fmt.Sprintf(`<presence><priority>%d</priority></presence>`, round%4))
				_ = e.r.SetCarbons(context.Background(), j.String(), round%2 == 0)
				to := users[(i+1+round)%len(users)]
				e.send(s, fmt.Sprintf(`<message to='%s@example.com' type='chat' id='m-%s-%d'><body>x</body></message>`, to, u, round))
				e.send(s, `<presence><show>away</show></presence>`)
				// Closed first: a delivery racing with Unbind is refused and
				// falls back to storage instead of vanishing from our view.
				s.Close("", "")
				e.r.Unbind(context.Background(), s, nil)
				mu.Lock()
				rounds++
				for _, el := range only("message", s.take()) {
					if el.ID() != "" {
						seen[el.ID()] = true
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if rounds != perUser*len(users) {
		t.Fatalf("%d rounds done", rounds)
	}
	for _, u := range users {
		stored, err := e1.store.TakeOffline(context.Background(), u+"@example.com")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range stored {
			seen[mustParse(t, string(m.Stanza)).ID()] = true
		}
	}
	for _, u := range users {
		for round := range perUser {
			if id := fmt.Sprintf("m-%s-%d", u, round); !seen[id] {
				t.Errorf("message %s was lost", id)
			}
		}
	}
	for _, e := range envs {
		if n := len(e.r.LocalSessions()); n != 0 {
			t.Fatalf("%d sessions left", n)
		}
	}
	for _, u := range users {
		if res, _ := e1.r.Resources(context.Background(), u+"@example.com"); len(res) != 0 {
			t.Fatalf("%s still has routes %v", u, res)
		}
	}
}
