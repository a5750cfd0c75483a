package push_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/push"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

const (
	enable = `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='yxs32uqsflafdk3iuqo'>` +
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
		`<field var='secret'><value>eruio234vzxc2kla-91</value></field>%s</x></enable></iq>`
	result = `<iq type="result" id="e1" to="juliet@example.com/phone"/>`
)

func start(t *testing.T, settings map[string]any) (*plugintest.Host, *plugins.Manager, *push.Plugin) {
	t.Helper()
	h := plugintest.NewHost(t)
	if settings != nil {
		h.Cfg.Plugins.Settings = map[string]map[string]any{push.ID: settings}
	}
	p := push.New()
	return h, h.Start(t, p), p
}

func offline(t *testing.T, h *plugintest.Host, m *plugins.Manager, msg string) {
	t.Helper()
	v, err := m.Intercept(context.Background(), plugins.PointOffline, &plugins.Stanza{El: plugintest.Parse(t, msg)})
	if err != nil || v != plugins.Continue {
		t.Fatalf("intercept: %v %v, want continue", v, err)
	}
}

const chat = `<message from='romeo@example.net/orchard' to='juliet@example.com' type='chat'><body>Wherefore art thou?</body></message>`

// TestNotifiesEachRegistration: an offline message produces one
// notification per registered node, with the summary form, the client's
// publish-options, and no body by default.
func TestNotifiesEachRegistration(t *testing.T) {
	h, m, p := start(t, nil)
	if got := h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", "", 1)); got != result {
		t.Fatalf("enable: %s", got)
	}
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='second'/></iq>`); got != result {
		t.Fatalf("second enable: %s", got)
	}
	offline(t, h, m, chat)
	routed := h.Routed()
	if len(routed) != 2 {
		t.Fatalf("routed %d stanzas, want 2: %q", len(routed), routed)
	}
	first := plugintest.Parse(t, routed[0])
	if first.From() != p.Domain() || first.To() != "push.app.example" || first.Type() != "set" {
		t.Fatalf("notification addressing: %s", routed[0])
	}
	for _, want := range []string{
		`<publish node="yxs32uqsflafdk3iuqo"><item><notification xmlns="urn:xmpp:push:0"><x xmlns="jabber:x:data" type="submit">`,
		`<field var="FORM_TYPE" type="hidden"><value>urn:xmpp:push:summary</value></field>`,
		`<field var="message-count"><value>1</value></field>`,
		`<field var="last-message-sender"><value>romeo@example.net/orchard</value></field>`,
		`<publish-options><x xmlns="jabber:x:data" type="submit">`,
		`<field var="secret"><value>eruio234vzxc2kla-91</value></field>`,
	} {
		if !strings.Contains(routed[0], want) {
			t.Errorf("notification lacks %s:\n%s", want, routed[0])
		}
	}
	if strings.Contains(routed[0], "Wherefore") {
		t.Errorf("the body left the server without being allowed: %s", routed[0])
	}
	if !strings.Contains(routed[1], `<publish node="second">`) || strings.Contains(routed[1], "publish-options") {
		t.Errorf("second registration's notification: %s", routed[1])
	}

	// The count goes up until the user comes back.
	offline(t, h, m, chat)
	if r := h.Routed(); len(r) != 2 || !strings.Contains(r[0], `<field var="message-count"><value>2</value></field>`) {
		t.Fatalf("second message: %q", r)
	}
	if err := h.Bus.Run(context.Background(), plugins.EventPresenceAvailable, &plugins.SessionEvent{JID: "juliet@example.com/phone"}); err != nil {
		t.Fatal(err)
	}
	offline(t, h, m, chat)
	if r := h.Routed(); len(r) != 2 || !strings.Contains(r[0], `<field var="message-count"><value>1</value></field>`) {
		t.Fatalf("after coming online: %q", r)
	}
}

// TestNothingWorthNotifying: chat states and receipts notify nobody;
// encrypted payloads do.
func TestNothingWorthNotifying(t *testing.T) {
	h, m, _ := start(t, nil)
	h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", "", 1))
	offline(t, h, m, `<message from='romeo@example.net/o' to='juliet@example.com' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	if r := h.Routed(); len(r) != 0 {
		t.Fatalf("a chat state notified: %q", r)
	}
	offline(t, h, m, `<message from='romeo@example.net/o' to='juliet@example.com' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted></message>`)
	if r := h.Routed(); len(r) != 1 {
		t.Fatalf("an OMEMO message: %q, want one notification", r)
	}
	// Another account's messages notify nobody.
	offline(t, h, m, `<message from='romeo@example.net/o' to='nurse@example.com' type='chat'><body>hi</body></message>`)
	if r := h.Routed(); len(r) != 0 {
		t.Fatalf("another account's message notified: %q", r)
	}
}

// TestBodyOnlyWhenBothAllow: the body goes out only when the server's
// include_body and the client's include-body option both say so.
func TestBodyOnlyWhenBothAllow(t *testing.T) {
	optIn := `<field var='include-body'><value>true</value></field>`
	cases := []struct {
		name     string
		settings map[string]any
		field    string
		want     bool
	}{
		{"server off, client asks", nil, optIn, false},
		{"server on, client silent", map[string]any{"include_body": true}, "", false},
		{"server on, client asks", map[string]any{"include_body": true}, optIn, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, m, _ := start(t, c.settings)
			h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", c.field, 1))
			offline(t, h, m, chat)
			r := h.Routed()
			if len(r) != 1 {
				t.Fatalf("routed %q", r)
			}
			if got := strings.Contains(r[0], `<field var="last-message-body"><value>Wherefore art thou?</value></field>`); got != c.want {
				t.Fatalf("body included %v, want %v: %s", got, c.want, r[0])
			}
			if strings.Contains(r[0], "include-body") {
				t.Fatalf("the server's own option was forwarded to the app server: %s", r[0])
			}
		})
	}
}

// TestDisable: disable with a node removes that node, without one every
// node of that app server.
func TestDisable(t *testing.T) {
	h, m, _ := start(t, nil)
	for _, node := range []string{"a", "b", "c"} {
		h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='`+node+`'/></iq>`)
	}
	h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='other.app.example' node='x'/></iq>`)
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><disable xmlns='urn:xmpp:push:0' jid='push.app.example' node='b'/></iq>`); got != result {
		t.Fatalf("disable one: %s", got)
	}
	offline(t, h, m, chat)
	if r := h.Routed(); len(r) != 3 || strings.Contains(strings.Join(r, ""), `node="b"`) {
		t.Fatalf("after disabling node b: %q", r)
	}
	h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><disable xmlns='urn:xmpp:push:0' jid='push.app.example'/></iq>`)
	offline(t, h, m, chat)
	if r := h.Routed(); len(r) != 1 || !strings.Contains(r[0], `to="other.app.example"`) {
		t.Fatalf("after disabling the app server: %q", r)
	}
}

// TestBadRequests: what the server refuses, and why.
func TestBadRequests(t *testing.T) {
	h, m, _ := start(t, map[string]any{"max_registrations": 1})
	cases := []struct{ name, in, cond string }{
		{"no jid", `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' node='n'/></iq>`, "bad-request"},
		{"no node", `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example'/></iq>`, "bad-request"},
		{"get", `<iq type='get' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='n'/></iq>`, "bad-request"},
		{"someone else's account", `<iq type='set' id='e1' from='romeo@example.net/o' to='juliet@example.com'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='n'/></iq>`, "forbidden"},
	}
	for _, c := range cases {
		if got := h.IQ(t, m, plugins.ToAccount, c.in); !strings.Contains(got, "<"+c.cond+" ") {
			t.Errorf("%s: %s, want %s", c.name, got, c.cond)
		}
	}
	h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='n'/></iq>`)
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='n2'/></iq>`); !strings.Contains(got, "resource-constraint") {
		t.Errorf("past max_registrations: %s", got)
	}
	// Enabling the same node again replaces it: no quota error.
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><enable xmlns='urn:xmpp:push:0' jid='push.app.example' node='n'/></iq>`); got != result {
		t.Errorf("re-enabling the same node: %s", got)
	}
}

// TestGoneRegistrationIsDisabled: an error answer that says the
// registration is gone removes it; a transient one, or one from another
// entity, does not.
func TestGoneRegistrationIsDisabled(t *testing.T) {
	h, m, p := start(t, nil)
	h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", "", 1))
	notify := func() *wire.Element {
		t.Helper()
		offline(t, h, m, chat)
		r := h.Routed()
		if len(r) != 1 {
			t.Fatalf("routed %q, want one notification", r)
		}
		return plugintest.Parse(t, r[0])
	}
	answer := func(n *wire.Element, from, cond, typ string) {
		t.Helper()
		xml := `<iq type='error' id='` + n.ID() + `' from='` + from + `' to='` + p.Domain() + `'><error type='` + typ + `'><` + cond + ` xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`
		if err := h.ToService(t, m, xml); err != nil {
			t.Fatalf("answer: %v", err)
		}
	}
	answer(notify(), "push.app.example", "remote-server-timeout", "wait")
	answer(notify(), "evil.example", "item-not-found", "cancel")
	answer(notify(), "push.app.example", "item-not-found", "cancel")
	offline(t, h, m, chat)
	if r := h.Routed(); len(r) != 0 {
		t.Fatalf("after item-not-found the registration still notifies: %q", r)
	}
}

// TestAccountFeature: the account advertises urn:xmpp:push:0.
func TestAccountFeature(t *testing.T) {
	_, m, _ := start(t, nil)
	if f := m.AccountFeatures(); !strings.Contains(strings.Join(f, " "), push.NS) {
		t.Fatalf("account features %q lack %s", f, push.NS)
	}
}

// TestQuietSessions: a message queued on a detached or inactive session
// notifies the app servers that session registered, once per
// registration, whatever the account's other sessions do; nothing while
// the session is active, nothing for a session that enabled no push.
func TestQuietSessions(t *testing.T) {
	h, m, _ := start(t, nil)
	h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", "", 1)) // from the phone
	phone, tablet := "juliet@example.com/phone", "juliet@example.com/tablet"
	h.SetResources("juliet@example.com",
		plugins.Resource{JID: phone, Node: "test", Available: true},
		plugins.Resource{JID: tablet, Node: "test", Available: true})
	fire := func(ev plugins.Event, full string) {
		t.Helper()
		if err := h.Bus.Run(context.Background(), ev, &plugins.SessionEvent{JID: full}); err != nil {
			t.Fatal(err)
		}
	}
	// deliver queues a copy on each session and returns the notifications.
	deliver := func(sessions ...string) []string {
		t.Helper()
		for _, s := range sessions {
			if _, err := m.Intercept(context.Background(), plugins.PointDeliver, &plugins.Stanza{El: plugintest.Parse(t, chat), Session: s}); err != nil {
				t.Fatal(err)
			}
		}
		return h.Routed()
	}
	if n := deliver(phone, tablet); len(n) != 0 {
		t.Fatalf("active sessions: %q", n)
	}
	fire(plugins.EventClientInactive, tablet)
	if n := deliver(phone, tablet); len(n) != 0 {
		t.Fatalf("the tablet, which enabled no push, inactive: %q", n)
	}
	fire(plugins.EventSessionDetached, phone)
	if n := deliver(phone, tablet); len(n) != 1 || !strings.Contains(n[0], `node="yxs32uqsflafdk3iuqo"`) {
		t.Fatalf("phone detached: %q, want one notification", n)
	}
	fire(plugins.EventSessionResumed, phone)
	if n := deliver(phone, tablet); len(n) != 0 {
		t.Fatalf("phone resumed: %q", n)
	}
	fire(plugins.EventClientInactive, phone)
	// The tablet registers too: each registration hears once.
	h.IQ(t, m, plugins.ToServer, `<iq type='set' id='e2' from='`+tablet+`'><enable xmlns='urn:xmpp:push:0' jid='tablet.app.example' node='t'/></iq>`)
	if n := deliver(phone, tablet); len(n) != 2 || !strings.Contains(n[0]+n[1], `to="push.app.example"`) || !strings.Contains(n[0]+n[1], `to="tablet.app.example"`) {
		t.Fatalf("both inactive, both registered: %q, want one to each app server", n)
	}
	fire(plugins.EventClientActive, phone)
	fire(plugins.EventSessionClosed, tablet)
	if n := deliver(phone, tablet); len(n) != 0 {
		t.Fatalf("phone active, tablet gone: %q", n)
	}
}

// TestNotifiedOnceWhenUnackedGoOffline: a message notified while queued
// on a detached session does not notify again when the session ends
// unresumed and the router stores it offline (the same element); another
// message does.
func TestNotifiedOnceWhenUnackedGoOffline(t *testing.T) {
	h, m, _ := start(t, nil)
	h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", "", 1))
	phone := "juliet@example.com/phone"
	h.SetResources("juliet@example.com", plugins.Resource{JID: phone, Node: "test", Available: true})
	if err := h.Bus.Run(context.Background(), plugins.EventSessionDetached, &plugins.SessionEvent{JID: phone}); err != nil {
		t.Fatal(err)
	}
	queued := plugintest.Parse(t, chat)
	if _, err := m.Intercept(context.Background(), plugins.PointDeliver, &plugins.Stanza{El: queued, Session: phone}); err != nil {
		t.Fatal(err)
	}
	if r := h.Routed(); len(r) != 1 {
		t.Fatalf("queued on the detached session: %q, want one notification", r)
	}
	// The session expires: the router stores what it held offline.
	h.SetResources("juliet@example.com")
	if _, err := m.Intercept(context.Background(), plugins.PointOffline, &plugins.Stanza{El: queued}); err != nil {
		t.Fatal(err)
	}
	if r := h.Routed(); len(r) != 0 {
		t.Fatalf("the same message stored offline notified again: %q", r)
	}
	offline(t, h, m, chat) // a new message
	if r := h.Routed(); len(r) != 1 || !strings.Contains(r[0], `<field var="message-count"><value>2</value></field>`) {
		t.Fatalf("a new offline message: %q", r)
	}
	// The session ends while a message is being queued on it: the router
	// stores that one offline after the close event (a private copy of
	// the top level went to PointDeliver; offline storage gets the
	// original, with the same children). Not notified again...
	defer push.SetClosedGrace(50 * time.Millisecond)()
	racing := plugintest.Parse(t, strings.Replace(chat, "<body>", "<body>racing ", 1))
	copyForSession := &wire.Element{Name: racing.Name, Attrs: racing.Attrs, Children: append([]*wire.Element(nil), racing.Children...)}
	if _, err := m.Intercept(context.Background(), plugins.PointDeliver, &plugins.Stanza{El: copyForSession, Session: phone}); err != nil {
		t.Fatal(err)
	}
	h.Routed()
	if err := h.Bus.Run(context.Background(), plugins.EventSessionClosed, &plugins.SessionEvent{JID: phone}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Intercept(context.Background(), plugins.PointOffline, &plugins.Stanza{El: racing}); err != nil {
		t.Fatal(err)
	}
	if r := h.Routed(); len(r) != 0 {
		t.Fatalf("a message refused by the closing session and stored offline notified again: %q", r)
	}
	// ...and forgotten closedGrace after the close: memory stays bounded.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if _, err := m.Intercept(context.Background(), plugins.PointOffline, &plugins.Stanza{El: queued}); err != nil {
			return err
		}
		if r := h.Routed(); len(r) != 1 {
			return fmt.Errorf("after the session ended and the grace passed: %q", r)
		}
		return nil
	})
}

// TestServiceDomainAnswers: push.DOMAIN answers disco#info and #items
// (clients walk the domain's items) and refuses anything else.
func TestServiceDomainAnswers(t *testing.T) {
	h, m, p := start(t, nil)
	if err := h.ToService(t, m, `<iq type='get' id='d1' from='juliet@example.com/phone' to='`+p.Domain()+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`); err != nil {
		t.Fatal(err)
	}
	if err := h.ToService(t, m, `<iq type='get' id='d2' from='juliet@example.com/phone' to='`+p.Domain()+`'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`); err != nil {
		t.Fatal(err)
	}
	r := h.Routed()
	if len(r) != 2 || !strings.Contains(r[0], `<identity category="component" type="generic" name="Push notifications"/>`) ||
		!strings.Contains(r[0], `id="d1" from="`+p.Domain()+`" to="juliet@example.com/phone"`) || !strings.Contains(r[1], `id="d2"`) {
		t.Fatalf("disco answers: %q", r)
	}
	if err := h.ToService(t, m, `<iq type='set' id='d3' from='juliet@example.com/phone' to='`+p.Domain()+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'/></iq>`); err != wire.ErrServiceUnavailable {
		t.Fatalf("a set to the service: %v, want service-unavailable", err)
	}
}

// downStore fails the push registrations' reads while down, and counts
// the reads made with a context marked as the message's path.
type downStore struct {
	storage.Store
	down     atomic.Bool
	pathRead atomic.Int32
}

type onMessagePath struct{}

func (s *downStore) Map(name string) storage.Map { return downMap{s.Store.Map(name), s} }

type downMap struct {
	storage.Map
	s *downStore
}

func (m downMap) List(ctx context.Context, owner, collection string, q storage.MapQuery) ([]storage.MapItem, error) {
	if ctx.Value(onMessagePath{}) != nil {
		m.s.pathRead.Add(1)
	}
	if m.s.down.Load() {
		return nil, errors.New("database did not answer")
	}
	return m.Map.List(ctx, owner, collection, q)
}

// TestNotificationsWaitForTheDatabase: while the registrations cannot be
// read, the first message pays one failed read and every later one
// queues behind it without touching the store (each used to wait
// database.timeout on the message's path, and was never notified); once
// the database answers, every notification goes out, in order.
func TestNotificationsWaitForTheDatabase(t *testing.T) {
	defer push.SetDeferBackoff(5*time.Millisecond, 20*time.Millisecond)()
	base := plugintest.NewHost(t)
	st := &downStore{Store: base.St}
	h := plugintest.NewHostWithStore(t, st)
	p := push.New()
	m := h.Start(t, p)
	if got := h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", "", 1)); got != result {
		t.Fatalf("enable: %s", got)
	}
	st.down.Store(true)
	ctx := context.WithValue(context.Background(), onMessagePath{}, true)
	for range 3 {
		if _, err := m.Intercept(ctx, plugins.PointOffline, &plugins.Stanza{El: plugintest.Parse(t, chat)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.pathRead.Load(); n != 1 {
		t.Errorf("%d registration reads on the messages' path while the database is down, want 1", n)
	}
	if r := h.Routed(); len(r) != 0 {
		t.Fatalf("notified without registrations: %q", r)
	}
	if n := p.Deferred(); n != 3 {
		t.Fatalf("%d deferred, want 3", n)
	}
	st.down.Store(false)
	var got []string
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		got = append(got, h.Routed()...)
		if len(got) < 3 {
			return fmt.Errorf("%d notifications", len(got))
		}
		return nil
	})
	for i, n := range got {
		if !strings.Contains(n, fmt.Sprintf(`<field var="message-count"><value>%d</value></field>`, i+1)) {
			t.Errorf("notification %d: %s", i, n)
		}
	}
	if n := p.Deferred(); n != 0 {
		t.Errorf("%d still deferred", n)
	}
	// Back to normal: notified at once, on the message's path.
	offline(t, h, m, chat)
	if r := h.Routed(); len(r) != 1 {
		t.Fatalf("after the database came back: %q", r)
	}
}
