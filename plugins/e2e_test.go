package plugins_test

// End-to-end tests of the built-in plugins through a real node over TCP:
// the router, the c2s layer and the plugins.Manager the server builds from
// plugins/builtin. Table tests of each plugin live beside the plugin.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/register"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// iq sends an IQ (its id filled in from %s) and returns the answer.
func iq(c *servertest.Client, format string) *wire.Element {
	c.T.Helper()
	id := c.NextID()
	c.Send(strings.Replace(format, "%s", id, 1))
	return c.Await("answer to "+id, func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
}

func login(t *testing.T, n *server.Node, user, resource string) *servertest.Client {
	t.Helper()
	c := servertest.Dial(t, n)
	t.Cleanup(c.Close)
	c.Login(user, "pw-"+user, resource)
	return c
}

func condition(el *wire.Element) string {
	if el.Type() != "error" {
		return ""
	}
	if e := el.Child("error", ""); e != nil && len(e.Children) > 0 {
		return e.Children[0].Name
	}
	return "?"
}

type confT = conf.Config

func startNode(t *testing.T, mutate func(cfg *confT)) *server.Node {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	if mutate != nil {
		mutate(cfg)
	}
	n := servertest.RunServer(t, cfg)
	for _, u := range []string{"alice", "bob", "admin"} {
		servertest.CreateUser(t, n, u, "pw-"+u)
	}
	return n
}

func TestEndToEndServerQueries(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "home")
	me := alice.JID

	t.Run("disco#info lists every plugin's feature", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
		q := el.Child("query", "http://jabber.org/protocol/disco#info")
		if el.Type() != "result" || q == nil {
			t.Fatalf("disco#info answer %s", el)
		}
		id := q.Child("identity", "")
		if id == nil || id.Attr("category") != "server" || id.Attr("type") != "im" {
			t.Errorf("identity %v; want server/im", id)
		}
		var got []string
		for _, f := range q.ChildrenNamed("feature", "") {
			got = append(got, f.Attr("var"))
		}
		want := plugins.SortedUnique(append([]string{
			"http://jabber.org/protocol/commands", "http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
			"jabber:iq:last", "jabber:iq:private", "jabber:iq:register", "jabber:iq:version", "msgoffline",
			"urn:xmpp:blocking", "urn:xmpp:carbons:2", "urn:xmpp:ping", "vcard-temp",
		}, pep.New().DiscoFeatures()...)) // PEP's pubsub features: Smack's OMEMO and OX look there
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("features\n got %v\nwant %v", got, want)
		}
	})
	t.Run("disco#info on an account", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
		var feats strings.Builder
		for _, f := range plugins.SortedUnique(append([]string{wire.NSDiscoInfo, wire.NSDiscoItems, "jabber:iq:last", "urn:xmpp:blocking", "urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:push:0", "urn:xmpp:sid:0", "vcard-temp"}, pep.New().AccountFeatures()...)) {
			feats.WriteString(`<feature var="` + f + `"/>`)
		}
		want := fmt.Sprintf(`<iq type="result" id="%s" from="bob@localhost" to="%s"><query xmlns="http://jabber.org/protocol/disco#info"><identity category="account" type="registered"/><identity category="pubsub" type="pep"/>`+
			feats.String()+`</query></iq>`, el.ID(), me)
		if el.String() != want {
			t.Errorf("got  %s\nwant %s", el, want)
		}
	})
	t.Run("disco#info on an unknown node", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='nope'/></iq>`)
		if condition(el) != "item-not-found" {
			t.Errorf("got %s; want item-not-found", el)
		}
	})
	for _, c := range []struct{ name, to string }{{"ping to domain", " to='localhost'"}, {"ping without to", ""}} {
		t.Run(c.name, func(t *testing.T) {
			el := iq(alice, `<iq type='get' id='%s'`+c.to+`><ping xmlns='urn:xmpp:ping'/></iq>`)
			if el.Type() != "result" || len(el.Children) != 0 {
				t.Errorf("ping answer %s", el)
			}
		})
	}
	t.Run("version", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s' to='localhost'><query xmlns='jabber:iq:version'/></iq>`)
		q := el.Child("query", "jabber:iq:version")
		if q == nil || q.ChildText("name", "") != "Aviary" || q.ChildText("version", "") == "" || q.Child("os", "") != nil {
			t.Errorf("version answer %s", el)
		}
	})
	t.Run("last activity of the server", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s' to='localhost'><query xmlns='jabber:iq:last'/></iq>`)
		if q := el.Child("query", "jabber:iq:last"); q == nil || q.Attr("seconds") == "" {
			t.Errorf("last answer %s", el)
		}
	})
	t.Run("unknown namespace", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s' to='localhost'><query xmlns='urn:example:nothing'/></iq>`)
		if condition(el) != "service-unavailable" {
			t.Errorf("got %s; want service-unavailable", el)
		}
	})
}

func TestEndToEndAccountData(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "home")
	bob := login(t, n, "bob", "work")

	t.Run("vcard set own, read by another", func(t *testing.T) {
		if el := iq(alice, `<iq type='set' id='%s'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>`); el.Type() != "result" {
			t.Fatalf("set answer %s", el)
		}
		el := iq(bob, `<iq type='get' id='%s' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>`)
		if got := el.Child("vCard", "vcard-temp"); got == nil || got.String() != `<vCard xmlns="vcard-temp"><FN>Alice</FN></vCard>` {
			t.Errorf("get answer %s", el)
		}
		if el := iq(bob, `<iq type='set' id='%s' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Bob was here</FN></vCard></iq>`); condition(el) != "forbidden" {
			t.Errorf("set on other's vcard: %s", el)
		}
	})
	t.Run("private storage", func(t *testing.T) {
		if el := iq(alice, `<iq type='set' id='%s'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><color>blue</color></prefs></query></iq>`); el.Type() != "result" {
			t.Fatalf("set answer %s", el)
		}
		el := iq(alice, `<iq type='get' id='%s'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`)
		if q := el.Child("query", "jabber:iq:private"); q == nil || q.String() != `<query xmlns="jabber:iq:private"><prefs xmlns="urn:example:prefs"><color>blue</color></prefs></query>` {
			t.Errorf("get answer %s", el)
		}
		if el := iq(bob, `<iq type='get' id='%s' to='alice@localhost'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`); condition(el) != "forbidden" {
			t.Errorf("other's private storage: %s", el)
		}
	})
	t.Run("last activity needs a subscription", func(t *testing.T) {
		if el := iq(bob, `<iq type='get' id='%s' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>`); condition(el) != "forbidden" {
			t.Fatalf("unsubscribed: %s", el)
		}
		_, _, _, _, err := n.Store().UpdateRosterItem(context.Background(), "alice@localhost", "bob@localhost", storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
			it.Subscription, it.InRoster = storage.SubFrom, true
			return it, false, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		alice.Send(`<presence/>`)
		servertest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			el := iq(bob, `<iq type='get' id='%s' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>`)
			if q := el.Child("query", "jabber:iq:last"); q == nil || q.Attr("seconds") != "0" {
				return fmt.Errorf("answer %s", el)
			}
			return nil
		})
	})
}

func TestEndToEndBlocking(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "home")
	bob := login(t, n, "bob", "work")

	if el := iq(alice, `<iq type='get' id='%s'><blocklist xmlns='urn:xmpp:blocking'/></iq>`); el.Type() != "result" {
		t.Fatalf("blocklist answer %s", el)
	}
	// The push (alice fetched the list, so she gets pushes) and the result
	// may come in either order.
	alice.Send(`<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>`)
	var result, push *wire.Element
	for result == nil || push == nil {
		el := alice.Await("block result and push", func(el *wire.Element) bool { return el.Name == "iq" })
		switch {
		case el.ID() == "b1":
			result = el
		case el.Type() == "set":
			push = el
		}
	}
	if result.Type() != "result" {
		t.Fatalf("block answer %s", result)
	}
	if b := push.Child("block", "urn:xmpp:blocking"); b == nil || b.String() != `<block xmlns="urn:xmpp:blocking"><item jid="bob@localhost"/></block>` {
		t.Errorf("push %s", push)
	}
	alice.Send(fmt.Sprintf(`<iq type='result' id='%s'/>`, push.ID()))

	t.Run("blocked contact's message bounces", func(t *testing.T) {
		bob.Send(`<message to='alice@localhost/home' id='m1' type='chat'><body>hello?</body></message>`)
		el := bob.Await("bounce", func(el *wire.Element) bool { return el.Name == "message" && el.ID() == "m1" })
		if condition(el) != "service-unavailable" {
			t.Errorf("bob got %s", el)
		}
	})
	t.Run("message to blocked contact is refused", func(t *testing.T) {
		alice.Send(`<message to='bob@localhost' id='m2' type='chat'><body>hi</body></message>`)
		el := alice.Await("refusal", func(el *wire.Element) bool { return el.Name == "message" && el.ID() == "m2" })
		e := el.Child("error", "")
		if condition(el) != "not-acceptable" || e.Child("blocked", "urn:xmpp:blocking:errors") == nil {
			t.Errorf("alice got %s", el)
		}
	})
	t.Run("unblock lets messages through", func(t *testing.T) {
		if el := iq(alice, `<iq type='set' id='%s'><unblock xmlns='urn:xmpp:blocking'/></iq>`); el.Type() != "result" {
			t.Fatalf("unblock answer %s", el)
		}
		bob.Send(`<message to='alice@localhost/home' id='m3' type='chat'><body>now?</body></message>`)
		el := alice.Await("message", func(el *wire.Element) bool { return el.Name == "message" && el.ID() == "m3" })
		if el.ChildText("body", "") != "now?" {
			t.Errorf("alice got %s", el)
		}
	})
}

func TestEndToEndCarbons(t *testing.T) {
	n := startNode(t, nil)
	phone := login(t, n, "alice", "phone")
	desk := login(t, n, "alice", "desk")
	bob := login(t, n, "bob", "work")
	for _, c := range []*servertest.Client{phone, desk} {
		if el := iq(c, `<iq type='set' id='%s'><enable xmlns='urn:xmpp:carbons:2'/></iq>`); el.Type() != "result" {
			t.Fatalf("enable answer %s", el)
		}
		c.Send(`<presence/>`)
	}
	bob.Send(`<message to='alice@localhost/phone' id='c1' type='chat'><body>carbon?</body></message>`)
	el := desk.Await("carbon copy", func(el *wire.Element) bool {
		return el.Name == "message" && el.Child("received", "urn:xmpp:carbons:2") != nil
	})
	fwd := el.Child("received", "urn:xmpp:carbons:2").Child("forwarded", "urn:xmpp:forward:0")
	if fwd == nil || fwd.Child("message", "") == nil || fwd.Child("message", "").ChildText("body", "") != "carbon?" {
		t.Errorf("carbon %s", el)
	}
}

func TestEndToEndRegistration(t *testing.T) {
	n := startNode(t, func(cfg *confT) { cfg.C2S.AllowRegistration = true })
	c := servertest.Dial(t, n)
	t.Cleanup(c.Close)
	feats := c.StartTLS()
	if feats.Child("register", register.NSFeature) == nil {
		t.Fatalf("no register feature before auth: %s", feats)
	}
	el := iq(c, `<iq type='get' id='%s'><query xmlns='jabber:iq:register'/></iq>`)
	want := fmt.Sprintf(`<iq type="result" id="%s"><query xmlns="jabber:iq:register"><instructions>%s</instructions><username/><password/></query></iq>`, el.ID(), register.Instructions)
	if el.String() != want {
		t.Errorf("form\n got %s\nwant %s", el, want)
	}
	if el := iq(c, `<iq type='set' id='%s'><query xmlns='jabber:iq:register'><username>alice</username><password>x</password></query></iq>`); condition(el) != "conflict" {
		t.Errorf("taken name: %s", el)
	}
	if el := iq(c, `<iq type='set' id='%s'><query xmlns='jabber:iq:register'><username>carol</username><password>pw-carol</password></query></iq>`); el.Type() != "result" {
		t.Fatalf("register answer %s", el)
	}
	c.Close()

	carol := login(t, n, "carol", "r")
	if el := iq(carol, `<iq type='set' id='%s'><query xmlns='jabber:iq:register'><username>carol</username><password>new</password></query></iq>`); el.Type() != "result" {
		t.Fatalf("password change %s", el)
	}
	if ok, err := n.Users().CheckPassword(context.Background(), "carol", "new"); !ok || err != nil {
		t.Errorf("new password not in effect: %v %v", ok, err)
	}
	el = iq(carol, `<iq type='set' id='%s'><query xmlns='jabber:iq:register'><remove/></query></iq>`)
	if el.Type() != "result" {
		t.Fatalf("remove answer %s", el)
	}
	// The result is sent before the deletion (which closes the stream).
	servertest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if _, err := n.Store().GetUser(context.Background(), "carol"); err == nil {
			return fmt.Errorf("carol still exists")
		}
		return nil
	})
	carol.ExpectStreamError("not-authorized") // the session is closed
}

func TestEndToEndRegistrationOff(t *testing.T) {
	n := startNode(t, nil)
	c := servertest.Dial(t, n)
	t.Cleanup(c.Close)
	feats := c.StartTLS()
	if feats.Child("register", register.NSFeature) != nil {
		t.Fatalf("register feature offered while off: %s", feats)
	}
	el := iq(c, `<iq type='set' id='%s'><query xmlns='jabber:iq:register'><username>mallory</username><password>x</password></query></iq>`)
	if el.Type() != "error" {
		t.Errorf("registration while off: %s", el)
	}
	if _, err := n.Store().GetUser(context.Background(), "mallory"); err == nil {
		t.Error("account created while registration is off")
	}
}

func TestEndToEndAdminCommands(t *testing.T) {
	n := startNode(t, func(cfg *confT) { cfg.Admin.Admins = []string{"admin@localhost"} })
	admin := login(t, n, "admin", "console")
	alice := login(t, n, "alice", "home")

	el := iq(alice, `<iq type='set' id='%s' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' action='execute'/></iq>`)
	if condition(el) != "forbidden" {
		t.Errorf("non-admin: %s", el)
	}

	// As Smack's ServiceAdministrationManager.addUser does it.
	el = iq(admin, `<iq type='set' id='%s' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' action='execute'/></iq>`)
	cmd := el.Child("command", "http://jabber.org/protocol/commands")
	if cmd == nil || cmd.Attr("status") != "executing" || cmd.Child("x", "jabber:x:data") == nil {
		t.Fatalf("first stage %s", el)
	}
	sid := cmd.Attr("sessionid")
	el = iq(admin, `<iq type='set' id='%s' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' sessionid='`+sid+`' action='execute'>`+
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/admin</value></field>`+
		`<field var='accountjid'><value>dave@localhost</value></field><field var='password'><value>pw-dave</value></field><field var='password-verify'><value>pw-dave</value></field></x></command></iq>`)
	if cmd := el.Child("command", "http://jabber.org/protocol/commands"); cmd == nil || cmd.Attr("status") != "completed" {
		t.Fatalf("second stage %s", el)
	}
	login(t, n, "dave", "r") // the new account works

	el = iq(admin, `<iq type='set' id='%s' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#delete-user' action='complete'>`+
		`<x xmlns='jabber:x:data' type='submit'><field var='accountjids'><value>dave@localhost</value></field></x></command></iq>`)
	if cmd := el.Child("command", "http://jabber.org/protocol/commands"); cmd == nil || cmd.Attr("status") != "completed" {
		t.Fatalf("delete %s", el)
	}
	if _, err := n.Store().GetUser(context.Background(), "dave"); err == nil {
		t.Error("dave still exists")
	}
	el = iq(admin, `<iq type='set' id='%s' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#get-registered-users-num' action='execute'/></iq>`)
	if !strings.Contains(el.String(), `var="registeredusersnum"><value>3</value>`) {
		t.Errorf("registered users %s", el)
	}
}
