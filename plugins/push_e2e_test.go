package plugins_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/push"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

const (
	appDomain = "app.localhost"
	appSecret = "app secret"
)

// sessionEvents returns a channel that gets the full JID of every session
// event ev of the node, so a test waits for the server's own view.
func sessionEvents(t *testing.T, n *server.Node, ev plugins.Event) <-chan string {
	ch := make(chan string, 16)
	rm := n.Hooks().Add(ev, -100, func(ctx context.Context, payload any) error {
		if se, ok := payload.(*plugins.SessionEvent); ok {
			ch <- se.JID
		}
		return nil
	})
	t.Cleanup(rm)
	return ch
}

func awaitEvent(t *testing.T, ch <-chan string, want, what string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", what, want)
		}
	}
}

// TestEndToEndPushNotifications: the app server is a real XEP-0114
// component connected to the node. It gets exactly one notification per
// message alice does not see live: while she is offline, while her only
// session is detached awaiting resumption (unacknowledged), while it is
// CSI inactive; none while she is connected and active. Each notification
// carries its message's body (the server and client both allowed it), so
// the component reading them strictly in order proves none was missing,
// extra or duplicated. An item-not-found answer disables the registration.
func TestEndToEndPushNotifications(t *testing.T) {
	compAddr := servertest.FreeAddr(t)
	n := startNode(t, func(cfg *confT) {
		cfg.Components.Listen = compAddr
		cfg.Components.Secrets = map[string]string{appDomain: appSecret}
		cfg.Plugins.Settings = map[string]map[string]any{push.ID: {"include_body": true}}
	})
	detached := sessionEvents(t, n, plugins.EventSessionDetached)
	closed := sessionEvents(t, n, plugins.EventSessionClosed)
	app := servertest.DialComponent(t, compAddr, appDomain, appSecret)

	alice := login(t, n, "alice", "phone")
	if got := iq(alice, enablePush); got.Type() != "result" {
		t.Fatalf("enable: %s", got)
	}
	if got := iq(alice, `<iq type='get' id='%s' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`); !hasFeature(got, push.NS) {
		t.Fatalf("the account does not advertise %s: %s", push.NS, got)
	}
	alice.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	enabled := alice.Await("<enabled/>", func(el *wire.Element) bool { return el.Name == "enabled" })
	alice.Send("<presence/>")
	alice.Await("own presence", func(el *wire.Element) bool { return el.Name == "presence" })

	bob := login(t, n, "bob", "desk")
	send := func(body string) {
		t.Helper()
		bob.Send("<message to='alice@localhost' type='chat'><body>%s</body></message>", body)
	}
	seen := func(c *servertest.Client, body string) {
		t.Helper()
		c.Await("message "+body, func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == body })
	}
	send("active 1") // connected and active: no notification
	seen(alice, "active 1")

	_ = alice.Conn.Close() // the phone loses its connection without a word
	awaitEvent(t, detached, "alice@localhost/phone", "detached")
	send("detached 1")
	expectPush(t, app, "detached 1", 1, "") // first thing the app server sees: none for "active 1"
	send("detached 2")
	expectPush(t, app, "detached 2", 2, "")

	// The phone comes back and resumes: it gets what it missed, and is
	// active again.
	phone := servertest.Dial(t, n)
	t.Cleanup(phone.Close)
	if phone.Features.Child("starttls", wire.NSTLS) != nil {
		phone.StartTLS()
	}
	if err := phone.AuthSCRAM("SCRAM-SHA-256", "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	// handled counts the stanzas the phone got on this stream, for its
	// acknowledgement (XEP-0198): the resumption re-sends all since <enabled/>.
	handled := 0
	read := func(what string, match func(*wire.Element) bool) {
		t.Helper()
		for {
			el := phone.MustNext()
			switch el.Name {
			case "message", "presence", "iq":
				handled++
			}
			if match(el) {
				return
			}
		}
	}
	got := func(body string) {
		t.Helper()
		read("message "+body, func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == body })
	}
	ping := func() {
		t.Helper()
		phone.Send("<iq type='get' id='ping-%d'><ping xmlns='urn:xmpp:ping'/></iq>", handled)
		id := fmt.Sprintf("ping-%d", handled)
		read("ping answer", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
	}
	phone.Send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", enabled.Attr("id"))
	phone.ExpectName("resumed")
	got("detached 1")
	got("detached 2")
	send("active 2")
	got("active 2")

	// CSI inactive: the phone is in the background.
	phone.Send("<inactive xmlns='urn:xmpp:csi:0'/>")
	ping() // the server has read <inactive/>
	send("inactive 1")
	expectPush(t, app, "inactive 1", 3, "") // none for "active 2"
	got("inactive 1")
	phone.Send("<active xmlns='urn:xmpp:csi:0'/>")
	ping()
	send("active 3")
	got("active 3")

	// Offline: the phone acknowledges what it got and closes its stream.
	phone.Send("<a xmlns='urn:xmpp:sm:3' h='%d'/>", handled)
	phone.Close()
	awaitEvent(t, closed, "alice@localhost/phone", "closed")
	send("offline 1")
	expectPush(t, app, "offline 1", 4, "") // none for "active 3"
	send("offline 2")
	expectPush(t, app, "offline 2", 5, "item-not-found") // the app server forgot the registration

	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		items, err := n.Store().Map(push.Store).List(context.Background(), "alice@localhost", "", storage.MapQuery{})
		if err != nil || len(items) != 0 {
			return fmt.Errorf("registrations after item-not-found: %d (%v)", len(items), err)
		}
		return nil
	})
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got, want := pushMetrics(t, n), "sent 5 errors 1 disabled 1"; got != want {
			return fmt.Errorf("metrics %q, want %q", got, want)
		}
		return nil
	})
}

// pushMetrics reads the node's push counters.
func pushMetrics(t *testing.T, n *server.Node) string {
	t.Helper()
	mfs, err := n.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v[mf.GetName()] += m.GetCounter().GetValue()
		}
	}
	return fmt.Sprintf("sent %v errors %v disabled %v", v["aviary_push_notifications_total"], v["aviary_push_errors_total"], v["aviary_push_disabled_total"])
}

func hasFeature(info *wire.Element, feature string) bool {
	q := info.Child("query", wire.NSDiscoInfo)
	if q == nil {
		return false
	}
	for _, f := range q.ChildrenNamed("feature", "") {
		if f.Attr("var") == feature {
			return true
		}
	}
	return false
}

// expectPush reads the app server's (a component's) next stanza: the
// notification of body, with count, for alice's node alice-node; it
// answers it with the error condition answer ("" for a result).
func expectPush(t *testing.T, app *servertest.Client, body string, count int, answer string) {
	t.Helper()
	el := app.ExpectName("iq")
	ps := el.Child("pubsub", push.NSPubSub)
	if ps == nil || ps.Child("publish", "") == nil {
		t.Fatalf("not a publish: %s", el)
	}
	form := ps.Child("publish", "").Child("item", "").Child("notification", push.NS).Child("x", push.NSData)
	fields := map[string]string{}
	for _, f := range form.ChildrenNamed("field", "") {
		fields[f.Attr("var")] = f.ChildText("value", "")
	}
	want := map[string]string{"FORM_TYPE": push.NSSummary, "message-count": fmt.Sprint(count),
		"last-message-sender": "bob@localhost/desk", "last-message-body": body}
	if fmt.Sprint(fields) != fmt.Sprint(want) || el.To() != appDomain || el.Type() != "set" {
		t.Fatalf("notification for %q: %s", body, el)
	}
	if ps.Child("publish", "").Attr("node") != "alice-node" || ps.Child("publish-options", "") == nil {
		t.Fatalf("notification node or publish-options: %s", el)
	}
	if answer == "" {
		app.Send("<iq type='result' id='%s' from='%s' to='%s'/>", el.ID(), appDomain, el.From())
	} else {
		app.Send("<iq type='error' id='%s' from='%s' to='%s'><error type='cancel'><%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", el.ID(), appDomain, el.From(), answer)
	}
}

const enablePush = `<iq type='set' id='%s'><enable xmlns='urn:xmpp:push:0' jid='` + appDomain + `' node='alice-node'>` +
	`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
	`<field var='secret'><value>s3cr3t</value></field><field var='include-body'><value>true</value></field></x></enable></iq>`

// TestPushNotificationsInCluster: two real nodes (PostgreSQL and
// Hazelcast); the app server, a component, is connected to node-a, where
// Bob sends from; Alice's sessions are on node-b. Offline, node-a (which
// stores the message) notifies; with her session detached on node-b,
// node-b (where it is queued) notifies; each message exactly once (the
// component reads them strictly in order). The app server's
// item-not-found, arriving on node-a, removes the registration node-b
// registered.
func TestPushNotificationsInCluster(t *testing.T) {
	comp := map[string]string{"node-a": servertest.FreeAddr(t), "node-b": servertest.FreeAddr(t)}
	a, b := twoNodesWith(t, "push", func(name string, cfg *conf.Config) {
		cfg.Components.Listen = comp[name]
		cfg.Components.Secrets = map[string]string{appDomain: appSecret}
		cfg.Plugins.Settings = map[string]map[string]any{push.ID: {"include_body": true}}
	}, "alice", "bob")
	detached := sessionEvents(t, b, plugins.EventSessionDetached)
	closed := sessionEvents(t, b, plugins.EventSessionClosed)
	app := servertest.DialComponent(t, comp["node-a"], appDomain, appSecret)

	alice := login(t, b, "alice", "phone")
	if got := iq(alice, enablePush); got.Type() != "result" {
		t.Fatalf("enable: %s", got)
	}
	alice.Close()
	awaitEvent(t, closed, "alice@localhost/phone", "closed")

	bob := login(t, a, "bob", "desk")
	send := func(body string) {
		t.Helper()
		bob.Send("<message to='alice@localhost' type='chat'><body>%s</body></message>", body)
	}
	send("offline 1")
	expectPush(t, app, "offline 1", 1, "")
	send("offline 2")
	expectPush(t, app, "offline 2", 2, "")

	phone := login(t, b, "alice", "phone")
	phone.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	phone.Await("<enabled/>", func(el *wire.Element) bool { return el.Name == "enabled" })
	phone.Send("<presence/>") // a new count starts
	phone.Await("offline 2", func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == "offline 2" })
	send("active 1")
	phone.Await("active 1", func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == "active 1" })

	_ = phone.Conn.Close()
	awaitEvent(t, detached, "alice@localhost/phone", "detached")
	send("detached 1")
	expectPush(t, app, "detached 1", 1, "") // none for "active 1"
	send("detached 2")
	expectPush(t, app, "detached 2", 2, "item-not-found")

	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		items, err := b.Store().Map(push.Store).List(context.Background(), "alice@localhost", "", storage.MapQuery{})
		if err != nil || len(items) != 0 {
			return fmt.Errorf("registrations after item-not-found: %d (%v)", len(items), err)
		}
		return nil
	})
}

// TestPushNotUnackedTwice: a message notified while queued on a detached
// session is stored offline when the session ends unresumed (here: the
// account is kicked), and is not notified a second time; the next
// offline message is.
func TestPushNotUnackedTwice(t *testing.T) {
	compAddr := servertest.FreeAddr(t)
	n := startNode(t, func(cfg *confT) {
		cfg.Components.Listen = compAddr
		cfg.Components.Secrets = map[string]string{appDomain: appSecret}
		cfg.Plugins.Settings = map[string]map[string]any{push.ID: {"include_body": true}}
	})
	detached := sessionEvents(t, n, plugins.EventSessionDetached)
	closed := sessionEvents(t, n, plugins.EventSessionClosed)
	app := servertest.DialComponent(t, compAddr, appDomain, appSecret)

	alice := login(t, n, "alice", "phone")
	if got := iq(alice, enablePush); got.Type() != "result" {
		t.Fatalf("enable: %s", got)
	}
	alice.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	alice.Await("<enabled/>", func(el *wire.Element) bool { return el.Name == "enabled" })
	alice.Send("<presence/>")
	alice.Await("own presence", func(el *wire.Element) bool { return el.Name == "presence" })
	_ = alice.Conn.Close()
	awaitEvent(t, detached, "alice@localhost/phone", "detached")

	bob := login(t, n, "bob", "desk")
	bob.Send("<message to='alice@localhost' type='chat'><body>detached 1</body></message>")
	expectPush(t, app, "detached 1", 1, "")

	if kicked := n.PluginHost().Users().Kick(context.Background(), "alice@localhost", "test"); kicked != 1 {
		t.Fatalf("kicked %d sessions, want 1", kicked)
	}
	awaitEvent(t, closed, "alice@localhost/phone", "closed")
	// The push went out at delivery; the message may reach the session's
	// queue only after the kick closed it, and the router (on bob's
	// reader) then stores it offline itself: not before the closed event.
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		stored, err := n.Store().PeekOffline(context.Background(), "alice@localhost", 10)
		if err != nil || len(stored) != 1 || !strings.Contains(string(stored[0].Stanza), "detached 1") {
			return fmt.Errorf("offline after the kick: %d messages (%v), want detached 1", len(stored), err)
		}
		return nil
	})
	bob.Send("<message to='alice@localhost' type='chat'><body>offline 1</body></message>")
	expectPush(t, app, "offline 1", 2, "") // first: none for "detached 1" stored offline
}
