package last_test

import (
	"context"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/last"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

func TestLast(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := last.New()
	p.SetClock(func() time.Time { return now })
	m := h.Start(t, p)
	now = now.Add(90 * time.Second) // uptime 90s

	st := h.St
	for _, u := range []string{"juliet", "romeo", "nurse"} {
		if err := st.CreateUser(ctx, storage.User{Username: u}); err != nil {
			t.Fatal(err)
		}
	}
	sub := func(owner, contact, s string) {
		_, _, _, _, err := st.UpdateRosterItem(ctx, owner, contact, storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
			it.Subscription, it.InRoster = s, true
			return it, false, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sub("juliet@example.com", "romeo@example.com", storage.SubBoth)
	sub("juliet@example.com", "nurse@example.com", storage.SubTo)
	if err := last.Save(ctx, st, "juliet@example.com", now.Add(-903*time.Second), "Heading home"); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		online bool
		target plugins.Target
		in     string
		want   string
	}{
		{"server uptime", false, plugins.ToServer,
			`<iq type='get' id='l1' from='romeo@example.com/a' to='example.com'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq type="result" id="l1" from="example.com" to="romeo@example.com/a"><query xmlns="jabber:iq:last" seconds="90"/></iq>`},
		{"server uptime no to", false, plugins.ToServer,
			`<iq type='get' id='l2' from='romeo@example.com/a'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq type="result" id="l2" to="romeo@example.com/a"><query xmlns="jabber:iq:last" seconds="90"/></iq>`},
		{"subscribed contact, user offline", false, plugins.ToAccount,
			`<iq type='get' id='l3' from='romeo@example.com/a' to='juliet@example.com'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq type="result" id="l3" from="juliet@example.com" to="romeo@example.com/a"><query xmlns="jabber:iq:last" seconds="903">Heading home</query></iq>`},
		{"subscribed contact, user online", true, plugins.ToAccount,
			`<iq type='get' id='l4' from='romeo@example.com/a' to='juliet@example.com'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq type="result" id="l4" from="juliet@example.com" to="romeo@example.com/a"><query xmlns="jabber:iq:last" seconds="0"/></iq>`},
		{"contact without from subscription", false, plugins.ToAccount,
			`<iq type='get' id='l5' from='nurse@example.com/a' to='juliet@example.com'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq id="l5" from="juliet@example.com" to="nurse@example.com/a" type="error"><query xmlns="jabber:iq:last"/><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"stranger", false, plugins.ToAccount,
			`<iq type='get' id='l6' from='tybalt@other.org/a' to='juliet@example.com'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq id="l6" from="juliet@example.com" to="tybalt@other.org/a" type="error"><query xmlns="jabber:iq:last"/><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"self, never logged out", false, plugins.ToAccount,
			`<iq type='get' id='l7' from='romeo@example.com/a' to='romeo@example.com'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq id="l7" from="romeo@example.com" to="romeo@example.com/a" type="error"><query xmlns="jabber:iq:last"/><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"set is bad request", false, plugins.ToServer,
			`<iq type='set' id='l8' from='romeo@example.com/a'><query xmlns='jabber:iq:last'/></iq>`,
			`<iq id="l8" to="romeo@example.com/a" type="error"><query xmlns="jabber:iq:last"/><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.online {
				h.SetOnline("juliet@example.com", "juliet@example.com/balcony")
			} else {
				h.SetOnline("juliet@example.com")
			}
			if got := h.IQ(t, m, c.target, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}

}
