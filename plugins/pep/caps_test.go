package pep_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// Directed presence with caps from entities that may not receive
// Juliet's events (a stranger, a room occupant, a contact she only sees)
// makes the plugin ask nothing: XEP-0163 sends events to contacts with a
// subscription from or both, and a disco#info from her account to anyone
// who sent her presence told them she was online. A subscribed contact's
// unknown caps are asked for; a stranger who becomes a subscriber is
// asked then.
func TestCapsQueriesOnlySubscribers(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	p := pep.New()
	m := h.Start(t, p)
	subscribe(t, h, juliet, romeo, storage.SubFrom)
	subscribe(t, h, juliet, nurse, storage.SubTo) // she sees the nurse; the nurse does not see her
	presence := func(from, ver string) {
		el := plugintest.Parse(t, `<presence from='`+from+`' to='`+juliet+`/balcony'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='`+ver+`'/></presence>`)
		if v, err := m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: el, Session: juliet + "/balcony"}); err != nil || v != plugins.Continue {
			t.Fatalf("presence intercepted: %v %v", v, err)
		}
	}
	presence("mallory@evil.example/x", "bWFsbG9yeQ==")
	presence("room@conference.example.com/someone", "cm9vbQ==")
	presence("nurse@example.com/kitchen", "bnVyc2U=")
	presence("romeo@example.com/orchard", "cm9tZW8=")
	got := waitRouted(t, h, 1)
	if !strings.Contains(got[0], `to="romeo@example.com/orchard"`) || !strings.Contains(got[0], "disco#info") {
		t.Fatalf("routed %s, want the caps query to Romeo", got[0])
	}

	// Mallory becomes a subscriber: now her client is asked.
	subscribe(t, h, juliet, "mallory@evil.example", storage.SubFrom)
	if err := h.Bus.Run(ctx, plugins.EventRosterChanged, &plugins.RosterEvent{Owner: juliet, Contact: "mallory@evil.example", Subscription: storage.SubFrom}); err != nil {
		t.Fatal(err)
	}
	got = waitRouted(t, h, 1)
	if !strings.Contains(got[0], `to="mallory@evil.example/x"`) {
		t.Fatalf("routed %s, want the caps query to the new subscriber", got[0])
	}

	// Stop waits for every background check: nothing else was sent.
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if rest := h.Routed(); len(rest) != 0 {
		t.Fatalf("caps queries to entities that may not receive events: %v", rest)
	}
}
