package blocking_test

import (
	"context"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/blocking"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

var pushID = regexp.MustCompile(`id="push-[0-9a-f]+"`)

func normPush(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = pushID.ReplaceAllString(s, `id="push"`)
	}
	return out
}

func TestBlockingIQ(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	h.Cfg.Cluster.NodeName = "test"
	m := h.Start(t, blocking.New())
	// b fetches the list on this node; c never does; d is on another node,
	// where this node cannot know whether it fetched the list.
	h.SetResources("juliet@example.com",
		plugins.Resource{JID: "juliet@example.com/b", Node: "test", Available: true},
		plugins.Resource{JID: "juliet@example.com/c", Node: "test", Available: true},
		plugins.Resource{JID: "juliet@example.com/d", Node: "other", Available: true})
	_, _, _, _, err := h.St.UpdateRosterItem(ctx, "juliet@example.com", "romeo@example.com", storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
		it.Subscription, it.InRoster = storage.SubBoth, true
		return it, false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		target plugins.Target
		in     string
		want   string
		routed []string
	}{
		{"empty list", plugins.ToServer,
			`<iq type='get' id='b1' from='juliet@example.com/b'><blocklist xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq type="result" id="b1" to="juliet@example.com/b"><blocklist xmlns="urn:xmpp:blocking"/></iq>`, nil},
		{"block two", plugins.ToServer,
			`<iq type='set' id='b2' from='juliet@example.com/b'><block xmlns='urn:xmpp:blocking'><item jid='romeo@example.com'/><item jid='spam.org'/></block></iq>`,
			`<iq type="result" id="b2" to="juliet@example.com/b"/>`,
			[]string{
				`<presence type="unavailable" from="juliet@example.com/b" to="romeo@example.com"/>`,
				`<presence type="unavailable" from="juliet@example.com/c" to="romeo@example.com"/>`,
				`<presence type="unavailable" from="juliet@example.com/d" to="romeo@example.com"/>`,
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/b"><block xmlns="urn:xmpp:blocking"><item jid="romeo@example.com"/><item jid="spam.org"/></block></iq>`,
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/d"><block xmlns="urn:xmpp:blocking"><item jid="romeo@example.com"/><item jid="spam.org"/></block></iq>`,
			}},
		{"list", plugins.ToAccount,
			`<iq type='get' id='b3' from='juliet@example.com/b' to='juliet@example.com'><blocklist xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq type="result" id="b3" from="juliet@example.com" to="juliet@example.com/b"><blocklist xmlns="urn:xmpp:blocking"><item jid="romeo@example.com"/><item jid="spam.org"/></blocklist></iq>`, nil},
		{"unblock one", plugins.ToServer,
			`<iq type='set' id='b4' from='juliet@example.com/c'><unblock xmlns='urn:xmpp:blocking'><item jid='spam.org'/></unblock></iq>`,
			`<iq type="result" id="b4" to="juliet@example.com/c"/>`,
			[]string{
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/b"><unblock xmlns="urn:xmpp:blocking"><item jid="spam.org"/></unblock></iq>`,
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/d"><unblock xmlns="urn:xmpp:blocking"><item jid="spam.org"/></unblock></iq>`,
			}},
		{"list after unblock", plugins.ToServer,
			`<iq type='get' id='b5' from='juliet@example.com/b'><blocklist xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq type="result" id="b5" to="juliet@example.com/b"><blocklist xmlns="urn:xmpp:blocking"><item jid="romeo@example.com"/></blocklist></iq>`, nil},
		{"unblock all", plugins.ToServer,
			`<iq type='set' id='b6' from='juliet@example.com/b'><unblock xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq type="result" id="b6" to="juliet@example.com/b"/>`,
			[]string{
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/b"><unblock xmlns="urn:xmpp:blocking"/></iq>`,
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/d"><unblock xmlns="urn:xmpp:blocking"/></iq>`,
			}},
		{"list empty again", plugins.ToServer,
			`<iq type='get' id='b7' from='juliet@example.com/b'><blocklist xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq type="result" id="b7" to="juliet@example.com/b"><blocklist xmlns="urn:xmpp:blocking"/></iq>`, nil},
		{"block without items", plugins.ToServer,
			`<iq type='set' id='b8' from='juliet@example.com/b'><block xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq id="b8" to="juliet@example.com/b" type="error"><block xmlns="urn:xmpp:blocking"/><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, nil},
		{"malformed jid", plugins.ToServer,
			`<iq type='set' id='b9' from='juliet@example.com/b'><block xmlns='urn:xmpp:blocking'><item jid='@bad@'/></block></iq>`,
			`<iq id="b9" to="juliet@example.com/b" type="error"><block xmlns="urn:xmpp:blocking"><item jid="@bad@"/></block><error type="modify"><jid-malformed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, nil},
		{"c fetches the list too", plugins.ToServer,
			`<iq type='get' id='b11' from='juliet@example.com/c'><blocklist xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq type="result" id="b11" to="juliet@example.com/c"><blocklist xmlns="urn:xmpp:blocking"/></iq>`, nil},
		{"now c gets pushes", plugins.ToServer,
			`<iq type='set' id='b12' from='juliet@example.com/b'><unblock xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq type="result" id="b12" to="juliet@example.com/b"/>`,
			[]string{
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/b"><unblock xmlns="urn:xmpp:blocking"/></iq>`,
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/c"><unblock xmlns="urn:xmpp:blocking"/></iq>`,
				`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/d"><unblock xmlns="urn:xmpp:blocking"/></iq>`,
			}},
		{"someone else's list", plugins.ToAccount,
			`<iq type='get' id='b10' from='romeo@example.com/a' to='juliet@example.com'><blocklist xmlns='urn:xmpp:blocking'/></iq>`,
			`<iq id="b10" from="juliet@example.com" to="romeo@example.com/a" type="error"><blocklist xmlns="urn:xmpp:blocking"/><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, c.target, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
			if got := normPush(h.Routed()); !reflect.DeepEqual(got, c.routed) && !(len(got) == 0 && len(c.routed) == 0) {
				t.Errorf("routed\n got %q\nwant %q", got, c.routed)
			}
		})
	}
	t.Run("a closed session loses its interest", func(t *testing.T) {
		if err := h.Bus.Run(ctx, plugins.EventSessionClosed, &plugins.SessionEvent{JID: "juliet@example.com/c"}); err != nil {
			t.Fatal(err)
		}
		h.IQ(t, m, plugins.ToServer, `<iq type='set' id='b13' from='juliet@example.com/b'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
		want := []string{
			`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/b"><unblock xmlns="urn:xmpp:blocking"/></iq>`,
			`<iq type="set" id="push" from="juliet@example.com" to="juliet@example.com/d"><unblock xmlns="urn:xmpp:blocking"/></iq>`,
		}
		if got := normPush(h.Routed()); !reflect.DeepEqual(got, want) {
			t.Errorf("routed\n got %q\nwant %q", got, want)
		}
	})
}

func TestBlockingEnforcement(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	p := blocking.New()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.SetClock(func() time.Time { return now })
	m := h.Start(t, p)
	if err := h.St.Block(ctx, "juliet@example.com", []string{"romeo@example.com", "spam.org", "tybalt@capulet.net/sword", "evil.net/bot"}); err != nil {
		t.Fatal(err)
	}
	const blockedErr = `<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><blocked xmlns="urn:xmpp:blocking:errors"/></error>`
	const unavailable = `<error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`
	cases := []struct {
		name    string
		point   plugins.Point
		session string
		in      string
		verdict plugins.Verdict
		routed  []string
	}{
		// The user sends to blocked JIDs.
		{"message to blocked bare", plugins.PointInbound, "juliet@example.com/b",
			`<message from='juliet@example.com/b' to='romeo@example.com' id='m1' type='chat'><body>hi</body></message>`, plugins.Handled,
			[]string{`<message id="m1" from="romeo@example.com" to="juliet@example.com/b" type="error"><body>hi</body>` + blockedErr + `</message>`}},
		{"message to resource of blocked bare", plugins.PointInbound, "juliet@example.com/b",
			`<message from='juliet@example.com/b' to='romeo@example.com/phone' id='m2'><body>hi</body></message>`, plugins.Handled,
			[]string{`<message id="m2" from="romeo@example.com/phone" to="juliet@example.com/b" type="error"><body>hi</body>` + blockedErr + `</message>`}},
		{"iq to blocked domain user", plugins.PointInbound, "juliet@example.com/b",
			`<iq from='juliet@example.com/b' to='anyone@spam.org/x' id='i1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`, plugins.Handled,
			[]string{`<iq id="i1" from="anyone@spam.org/x" to="juliet@example.com/b" type="error"><ping xmlns="urn:xmpp:ping"/>` + blockedErr + `</iq>`}},
		{"presence to blocked", plugins.PointInbound, "juliet@example.com/b",
			`<presence from='juliet@example.com/b' to='romeo@example.com'/>`, plugins.Drop, nil},
		{"iq result to blocked", plugins.PointInbound, "juliet@example.com/b",
			`<iq from='juliet@example.com/b' to='romeo@example.com/a' id='i2' type='result'/>`, plugins.Drop, nil},
		{"message to unblocked", plugins.PointInbound, "juliet@example.com/b",
			`<message from='juliet@example.com/b' to='nurse@example.com'><body>hi</body></message>`, plugins.Continue, nil},
		{"other resource of full-JID item", plugins.PointInbound, "juliet@example.com/b",
			`<message from='juliet@example.com/b' to='tybalt@capulet.net/home'><body>hi</body></message>`, plugins.Continue, nil},
		{"exact full-JID item", plugins.PointInbound, "juliet@example.com/b",
			`<presence from='juliet@example.com/b' to='tybalt@capulet.net/sword'/>`, plugins.Drop, nil},
		{"domain/resource item", plugins.PointInbound, "juliet@example.com/b",
			`<presence from='juliet@example.com/b' to='evil.net/bot'/>`, plugins.Drop, nil},
		{"user with domain/resource item's resource", plugins.PointInbound, "juliet@example.com/b",
			`<presence from='juliet@example.com/b' to='someone@evil.net/bot'/>`, plugins.Drop, nil},
		{"other resource at domain/resource item's domain", plugins.PointInbound, "juliet@example.com/b",
			`<presence from='juliet@example.com/b' to='someone@evil.net/human'/>`, plugins.Continue, nil},
		{"to server", plugins.PointInbound, "juliet@example.com/b",
			`<iq from='juliet@example.com/b' to='example.com' id='i3' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`, plugins.Continue, nil},
		{"broadcast presence", plugins.PointInbound, "juliet@example.com/b",
			`<presence from='juliet@example.com/b'/>`, plugins.Continue, nil},
		{"other user not affected", plugins.PointInbound, "nurse@example.com/x",
			`<message from='nurse@example.com/x' to='romeo@example.com'><body>hi</body></message>`, plugins.Continue, nil},

		// Blocked JIDs send to the user.
		{"message from blocked", plugins.PointDeliver, "juliet@example.com/b",
			`<message from='romeo@example.com/a' to='juliet@example.com' id='d1' type='chat'><body>hi</body></message>`, plugins.Handled,
			[]string{`<message id="d1" from="juliet@example.com" to="romeo@example.com/a" type="error"><body>hi</body>` + unavailable + `</message>`}},
		{"iq from blocked", plugins.PointDeliver, "juliet@example.com/b",
			`<iq from='romeo@example.com/a' to='juliet@example.com/b' id='d2' type='get'><query xmlns='jabber:iq:version'/></iq>`, plugins.Handled,
			[]string{`<iq id="d2" from="juliet@example.com/b" to="romeo@example.com/a" type="error"><query xmlns="jabber:iq:version"/>` + unavailable + `</iq>`}},
		{"presence from blocked", plugins.PointDeliver, "juliet@example.com/b",
			`<presence from='romeo@example.com/a' to='juliet@example.com'/>`, plugins.Drop, nil},
		{"subscription request from blocked domain", plugins.PointDeliver, "juliet@example.com/b",
			`<presence from='bot@spam.org' to='juliet@example.com' type='subscribe'/>`, plugins.Drop, nil},
		{"iq result from blocked", plugins.PointDeliver, "juliet@example.com/b",
			`<iq from='romeo@example.com/a' to='juliet@example.com/b' id='d3' type='result'/>`, plugins.Drop, nil},
		{"error from blocked", plugins.PointDeliver, "juliet@example.com/b",
			`<message from='romeo@example.com/a' to='juliet@example.com/b' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, plugins.Drop, nil},
		{"our blocked error passes", plugins.PointDeliver, "juliet@example.com/b",
			`<message id="m1" from="romeo@example.com" to="juliet@example.com/b" type="error"><body>hi</body>` + blockedErr + `</message>`, plugins.Continue, nil},
		{"message from unblocked", plugins.PointDeliver, "juliet@example.com/b",
			`<message from='nurse@example.com/x' to='juliet@example.com'><body>hi</body></message>`, plugins.Continue, nil},
		{"offline message from blocked", plugins.PointOffline, "",
			`<message from='romeo@example.com/a' to='juliet@example.com' id='o1'><body>hi</body></message>`, plugins.Handled,
			[]string{`<message id="o1" from="juliet@example.com" to="romeo@example.com/a" type="error"><body>hi</body>` + unavailable + `</message>`}},
		{"from own server", plugins.PointDeliver, "juliet@example.com/b",
			`<message from='example.com' to='juliet@example.com'><body>motd</body></message>`, plugins.Continue, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &plugins.Stanza{El: plugintest.Parse(t, c.in), Session: c.session}
			v, err := m.Intercept(ctx, c.point, st)
			if err != nil || v != c.verdict {
				t.Errorf("verdict %v, %v; want %v", v, err, c.verdict)
			}
			if got := h.Routed(); !reflect.DeepEqual(got, c.routed) && !(len(got) == 0 && len(c.routed) == 0) {
				t.Errorf("routed\n got %q\nwant %q", got, c.routed)
			}
		})
	}

	t.Run("one bounce for a message delivered to two resources", func(t *testing.T) {
		for _, res := range []string{"juliet@example.com/b", "juliet@example.com/c"} {
			st := &plugins.Stanza{El: plugintest.Parse(t, `<message from='romeo@example.com/a' to='juliet@example.com' id='twice'><body>hi</body></message>`), Session: res}
			if v, err := m.Intercept(ctx, plugins.PointDeliver, st); v != plugins.Handled || err != nil {
				t.Fatalf("verdict %v, %v", v, err)
			}
		}
		if got := h.Routed(); len(got) != 1 {
			t.Errorf("routed %q; want one error", got)
		}
	})

	t.Run("user's broadcast presence does not reach a blocked local contact", func(t *testing.T) {
		// Juliet's presence on its way to Romeo's session (Romeo has not
		// blocked her, she blocked him).
		st := &plugins.Stanza{El: plugintest.Parse(t, `<presence from='juliet@example.com/b' to='romeo@example.com'/>`), Session: "romeo@example.com/a"}
		if v, err := m.Intercept(ctx, plugins.PointDeliver, st); v != plugins.Drop || err != nil {
			t.Errorf("verdict %v, %v; want Drop", v, err)
		}
		msg := &plugins.Stanza{El: plugintest.Parse(t, `<presence from='juliet@example.com/b' to='nurse@example.com'/>`), Session: "nurse@example.com/x"}
		if v, err := m.Intercept(ctx, plugins.PointDeliver, msg); v != plugins.Continue || err != nil {
			t.Errorf("verdict to the nurse %v, %v; want Continue", v, err)
		}
	})

	t.Run("a change no event announced shows after refresh_interval", func(t *testing.T) {
		msg := `<message from='nurse@example.com/x' to='juliet@example.com'><body>hi</body></message>`
		deliver := func() plugins.Verdict {
			v, _ := m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: plugintest.Parse(t, msg), Session: "juliet@example.com/b"})
			return v
		}
		// The store changes behind the plugin's back (a node that could
		// not tell this one): the list in memory holds until it is due.
		if err := h.St.Block(ctx, "juliet@example.com", []string{"nurse@example.com"}); err != nil {
			t.Fatal(err)
		}
		if v := deliver(); v != plugins.Continue {
			t.Fatalf("before refresh_interval verdict %v; want the known list's Continue", v)
		}
		now = now.Add(blocking.DefaultRefresh)
		// Due: the next use starts a background read and is decided by
		// the list as known; a later one sees the new list.
		checkFor(t, func() bool { return deliver() == plugins.Handled })
		h.Routed()
	})

	t.Run("change through this node applies at once", func(t *testing.T) {
		got := h.IQ(t, m, plugins.ToServer, `<iq type='set' id='u1' from='juliet@example.com/b'><unblock xmlns='urn:xmpp:blocking'><item jid='romeo@example.com'/></unblock></iq>`)
		if got != `<iq type="result" id="u1" to="juliet@example.com/b"/>` {
			t.Fatalf("unblock reply %s", got)
		}
		v, _ := m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: plugintest.Parse(t, `<presence from='romeo@example.com/a' to='juliet@example.com'/>`), Session: "juliet@example.com/b"})
		if v != plugins.Continue {
			t.Fatalf("verdict %v after unblock; want Continue", v)
		}
	})
}

func BenchmarkDeliverCached(b *testing.B) {
	ctx := context.Background()
	h := plugintest.NewHost(b)
	m := h.Start(b, blocking.New())
	_ = h.St.Block(ctx, "juliet@example.com", []string{"romeo@example.com", "spam.org"})
	st := &plugins.Stanza{El: plugintest.Parse(b, `<message from='nurse@example.com/x' to='juliet@example.com'><body>hi</body></message>`), Session: "juliet@example.com/b"}
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := m.Intercept(ctx, plugins.PointDeliver, st); v != plugins.Continue {
			b.Fatal(v)
		}
	}
}
