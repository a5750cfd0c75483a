package pubsub_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/builtin"
	"github.com/aviary-im/aviary/plugins/disco"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/pubsub"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
	"github.com/aviary-im/aviary/wire"
)

const (
	service = "pubsub." + plugintest.Domain
	alice   = "alice@example.com/phone"
	bob     = "bob@example.com/laptop"
	carol   = "carol@remote.example.net/desk" // a user of another server
	admin   = "root@example.com/console"
)

// node is one server of a test: a fake host running the service (and
// disco), with what it routed collected for the test to pick from.
type node struct {
	t *testing.T
	h *plugintest.Host
	m *plugins.Manager

	mu  sync.Mutex
	out []*wire.Element
}

// start runs the service on h with the given settings.
func start(t *testing.T, h *plugintest.Host, settings map[string]any) *node {
	t.Helper()
	h.Admin["root@example.com"] = true
	if settings != nil {
		h.Cfg.Plugins.Settings = map[string]map[string]any{pubsub.ID: settings}
	}
	return &node{t: t, h: h, m: h.Start(t, disco.New(), pubsub.New())}
}

func newNode(t *testing.T, settings map[string]any) *node {
	return start(t, plugintest.NewHost(t), settings)
}

// send hands a stanza to the service as the router would.
func (n *node) send(xml string) error {
	n.t.Helper()
	return n.h.ToService(n.t, n.m, xml)
}

// collect moves what the host routed into n.out.
func (n *node) collect() {
	for _, s := range n.h.Routed() {
		el := plugintest.Parse(n.t, s)
		n.mu.Lock()
		n.out = append(n.out, el)
		n.mu.Unlock()
	}
}

// take removes and returns the routed stanzas match accepts.
func (n *node) take(match func(*wire.Element) bool) []*wire.Element {
	n.collect()
	n.mu.Lock()
	defer n.mu.Unlock()
	var got, rest []*wire.Element
	for _, el := range n.out {
		if match(el) {
			got = append(got, el)
		} else {
			rest = append(rest, el)
		}
	}
	n.out = rest
	return got
}

// iq sends an IQ from one of n's clients and waits for its answer on
// the node that routes it (the owner of the pubsub node it names).
func (n *node) iq(xml string, on ...*node) *wire.Element {
	n.t.Helper()
	if err := n.send(xml); err != nil {
		n.t.Fatalf("%s: %v", xml, err)
	}
	return answer(n.t, plugintest.Parse(n.t, xml).ID(), append(on, n)...)
}

// answer waits for the IQ answer with id on any of the nodes.
func answer(t *testing.T, id string, nodes ...*node) *wire.Element {
	t.Helper()
	var got *wire.Element
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, n := range nodes {
			if l := n.take(func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id }); len(l) > 0 {
				got = l[0]
				return nil
			}
		}
		return fmt.Errorf("no answer to %s", id)
	})
	return got
}

// ok fails unless the answer is a result.
func ok(t *testing.T, el *wire.Element) *wire.Element {
	t.Helper()
	if el.Type() != "result" {
		t.Fatalf("want a result, got %s", el)
	}
	return el
}

// refused fails unless the answer is an error with the condition (and
// the pubsub#errors condition app, when given).
func refused(t *testing.T, el *wire.Element, condition, app string) {
	t.Helper()
	e := el.Child("error", "")
	if el.Type() != "error" || e == nil || e.Child(condition, wire.NSStanzas) == nil {
		t.Fatalf("want %s, got %s", condition, el)
	}
	if app != "" && e.Child(app, "http://jabber.org/protocol/pubsub#errors") == nil {
		t.Fatalf("want pubsub#errors %s, got %s", app, el)
	}
}

// events removes the notifications routed to to, in order.
func events(n *node, to string) []*wire.Element {
	return n.take(func(el *wire.Element) bool {
		return el.Name == "message" && el.To() == to && el.Child("event", "http://jabber.org/protocol/pubsub#event") != nil
	})
}

const configForm = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>%s</x>`

func field(name, value string) string {
	return fmt.Sprintf("<field var='%s'><value>%s</value></field>", name, value)
}

func create(from, node, fields string) string {
	return fmt.Sprintf(`<iq type='set' id='c-%s' from='%s' to='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='%s'/><configure>%s</configure></pubsub></iq>`,
		node, from, service, node, fmt.Sprintf(configForm, fields))
}

func publish(from, node, id, text string) string {
	return fmt.Sprintf(`<iq type='set' id='p-%s' from='%s' to='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='%s'><item id='%s'><entry xmlns='urn:example:news'>%s</entry></item></publish></pubsub></iq>`,
		id, from, service, node, id, text)
}

func subscribe(from, node string) string {
	return fmt.Sprintf(`<iq type='set' id='s-%s-%s' from='%s' to='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='%s' jid='%s'/></pubsub></iq>`,
		node, from, from, service, node, from)
}

func itemIDs(el *wire.Element) []string {
	var ids []string
	ps := el.Child("pubsub", "http://jabber.org/protocol/pubsub")
	if ps == nil {
		return nil
	}
	for _, it := range ps.Child("items", "").ChildrenNamed("item", "") {
		ids = append(ids, it.Attr("id"))
	}
	return ids
}

func TestServiceInDisco(t *testing.T) {
	n := newNode(t, nil)
	items := plugintest.Parse(t, n.h.IQ(t, n.m, plugins.ToServer,
		`<iq type='get' id='i1' from='`+alice+`' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`))
	q := items.Child("query", wire.NSDiscoItems)
	if q == nil || len(q.ChildrenNamed("item", "")) != 1 || q.Children[0].Attr("jid") != service || q.Children[0].Attr("name") != "Publish-Subscribe" {
		t.Fatalf("the domain's disco#items: %s", items)
	}

	info := ok(t, n.iq(`<iq type='get' id='d1' from='`+alice+`' to='`+service+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`))
	q = info.Child("query", wire.NSDiscoInfo)
	id := q.Child("identity", "")
	if id.Attr("category") != "pubsub" || id.Attr("type") != "service" {
		t.Fatalf("identity: %s", info)
	}
	var feats []string
	for _, f := range q.ChildrenNamed("feature", "") {
		feats = append(feats, f.Attr("var"))
	}
	for _, want := range []string{"http://jabber.org/protocol/pubsub#create-nodes", "http://jabber.org/protocol/pubsub#instant-nodes", "http://jabber.org/protocol/pubsub#publish-options", wire.NSDiscoItems} {
		if !slices.Contains(feats, want) {
			t.Errorf("features lack %s: %v", want, feats)
		}
	}
	refused(t, n.iq(`<iq type='get' id='d2' from='`+alice+`' to='`+service+`'><query xmlns='http://jabber.org/protocol/disco#info' node='nothing'/></iq>`), "item-not-found", "")
}

func TestServiceNamedAndOff(t *testing.T) {
	n := newNode(t, map[string]any{"domain": "news.example.com", "name": "News"})
	items := plugintest.Parse(t, n.h.IQ(t, n.m, plugins.ToServer,
		`<iq type='get' id='i1' from='`+alice+`' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`))
	if it := items.Child("query", wire.NSDiscoItems).Child("item", ""); it == nil || it.Attr("jid") != "news.example.com" || it.Attr("name") != "News" {
		t.Fatalf("the domain's disco#items: %s", items)
	}
	if _, claimed := n.m.Service(service); claimed {
		t.Error("the default domain is claimed too")
	}

	// plugins.disabled turns the service off: it is not built.
	cfg := &conf.Config{Domain: plugintest.Domain}
	cfg.Plugins.Disabled = []string{pubsub.ID}
	for _, p := range builtin.New(cfg) {
		if p.ID() == pubsub.ID {
			t.Fatal("disabled, yet built")
		}
	}
}

func TestSettingsChecked(t *testing.T) {
	cfg := &conf.Config{Domain: plugintest.Domain}
	cfg.Plugins.Settings = map[string]map[string]any{pubsub.ID: {"create": "everyone"}}
	errs := plugins.ValidateSettings(cfg, []plugins.Plugin{pubsub.New()})
	if len(errs) != 1 || !strings.Contains(errs.Error(), "plugins.settings.xep0060.pubsub.create") || !strings.Contains(errs.Error(), "local, admins, anyone") {
		t.Fatalf("create: everyone: %v", errs)
	}

	// A domain that is not a subdomain of the server's fails the start,
	// naming the setting.
	h := plugintest.NewHost(t)
	h.Cfg.Plugins.Settings = map[string]map[string]any{pubsub.ID: {"domain": "pubsub.elsewhere.org"}}
	m := plugins.NewManager(h, h.Log, nil)
	h.UseManager(m)
	p := pubsub.New()
	err := p.Start(context.Background(), m.HostFor(p))
	if err == nil || !strings.Contains(err.Error(), "plugins.settings.xep0060.pubsub.domain") {
		t.Fatalf("start with a foreign domain: %v", err)
	}
	_ = p.Stop(context.Background())
}

func TestNodeLifecycle(t *testing.T) {
	n := newNode(t, nil)
	ok(t, n.iq(create(alice, "news", field("pubsub#max_items", "2"))))
	ok(t, n.iq(subscribe(bob, "news")))

	for i := 1; i <= 3; i++ {
		ok(t, n.iq(publish(alice, "news", fmt.Sprint("n", i), fmt.Sprint("story ", i))))
	}
	got := events(n, bob)
	if len(got) != 3 {
		t.Fatalf("bob got %d notifications, want 3: %v", len(got), got)
	}
	for i, m := range got {
		it := m.Child("event", "").Child("items", "").Child("item", "")
		if m.From() != service || it.Attr("id") != fmt.Sprint("n", i+1) || it.Child("entry", "urn:example:news") == nil {
			t.Errorf("notification %d: %s", i, m)
		}
	}

	// max_items 2: the oldest went.
	items := ok(t, n.iq(`<iq type='get' id='g1' from='`+bob+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='news'/></pubsub></iq>`))
	if ids := itemIDs(items); !slices.Equal(ids, []string{"n2", "n3"}) {
		t.Fatalf("items: %v", ids)
	}
	di := ok(t, n.iq(`<iq type='get' id='g2' from='`+bob+`' to='`+service+`'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`))
	if it := di.Child("query", "").Child("item", ""); it == nil || it.Attr("node") != "news" || it.Attr("jid") != service {
		t.Fatalf("disco#items: %s", di)
	}

	// Only publishers publish; bob is not one.
	refused(t, n.iq(publish(bob, "news", "b1", "mine")), "forbidden", "")
	// A publish to a node that does not exist does not create one.
	refused(t, n.iq(publish(alice, "nothing", "x", "x")), "item-not-found", "")

	ok(t, n.iq(`<iq type='set' id='r1' from='`+alice+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='news' notify='true'><item id='n2'/></retract></pubsub></iq>`))
	if got := events(n, bob); len(got) != 1 || got[0].Child("event", "").Child("items", "").Child("retract", "").Attr("id") != "n2" {
		t.Fatalf("retract notification: %v", got)
	}
	ok(t, n.iq(`<iq type='set' id='u1' from='`+alice+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='news'/></pubsub></iq>`))
	if got := events(n, bob); len(got) != 1 || got[0].Child("event", "").Child("purge", "") == nil {
		t.Fatalf("purge notification: %v", got)
	}
	refused(t, n.iq(`<iq type='set' id='x1' from='`+bob+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='news'/></pubsub></iq>`), "forbidden", "")
	ok(t, n.iq(`<iq type='set' id='x2' from='`+alice+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='news'/></pubsub></iq>`))
	if got := events(n, bob); len(got) != 1 || got[0].Child("event", "").Child("delete", "").Attr("node") != "news" {
		t.Fatalf("delete notification: %v", got)
	}
	refused(t, n.iq(`<iq type='get' id='g3' from='`+bob+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='news'/></pubsub></iq>`), "item-not-found", "")
}

func TestLastItemOnSubscribe(t *testing.T) {
	n := newNode(t, nil)
	ok(t, n.iq(create(alice, "weather", "")))
	ok(t, n.iq(publish(alice, "weather", "w1", "rain")))
	ok(t, n.iq(publish(alice, "weather", "w2", "sun")))
	ok(t, n.iq(subscribe(carol, "weather"))) // a remote user: the node is open
	got := events(n, carol)
	if len(got) != 1 || got[0].Child("event", "").Child("items", "").Child("item", "").Attr("id") != "w2" {
		t.Fatalf("on subscribing: %v", got)
	}
}

func TestWhoCreates(t *testing.T) {
	cases := []struct {
		create  string
		allowed []string
	}{
		{"", []string{alice, admin}}, // the default: local users
		{"local", []string{alice, admin}},
		{"admins", []string{admin}},
		{"anyone", []string{alice, admin, carol}},
	}
	for _, c := range cases {
		t.Run("create="+c.create, func(t *testing.T) {
			var settings map[string]any
			if c.create != "" {
				settings = map[string]any{"create": c.create}
			}
			n := newNode(t, settings)
			for i, who := range []string{alice, admin, carol} {
				res := n.iq(create(who, fmt.Sprint("node", i), ""))
				if slices.Contains(c.allowed, who) {
					ok(t, res)
				} else {
					refused(t, res, "forbidden", "")
				}
			}
		})
	}
}

func TestInstantNodeAndOwnership(t *testing.T) {
	n := newNode(t, nil)
	res := ok(t, n.iq(`<iq type='set' id='c1' from='`+alice+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create/></pubsub></iq>`))
	name := res.Child("pubsub", "").Child("create", "").Attr("node")
	if name == "" {
		t.Fatalf("instant node: %s", res)
	}
	affs := ok(t, n.iq(`<iq type='get' id='a1' from='`+alice+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><affiliations/></pubsub></iq>`))
	a := affs.Child("pubsub", "").Child("affiliations", "").Child("affiliation", "")
	if a == nil || a.Attr("node") != name || a.Attr("affiliation") != "owner" {
		t.Fatalf("alice's affiliations: %s", affs)
	}
	// The administrator owns every node: it may configure alice's.
	ok(t, n.iq(`<iq type='get' id='a2' from='`+admin+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='`+name+`'/></pubsub></iq>`))
	// A node keeps an owner.
	refused(t, n.iq(`<iq type='set' id='a3' from='`+alice+`' to='`+service+`'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='`+name+`'><affiliation jid='alice@example.com' affiliation='none'/></affiliations></pubsub></iq>`), "not-acceptable", "")
	// Creating it again is a conflict.
	refused(t, n.iq(create(bob, name, "")), "conflict", "")
}

func TestNobodyLivesAtTheService(t *testing.T) {
	n := newNode(t, nil)
	for _, c := range []struct{ xml, want string }{
		{`<message from='` + alice + `' to='someone@` + service + `'><body>hi</body></message>`, "service-unavailable"},
		{`<message from='` + alice + `' to='` + service + `'><body>hi</body></message>`, "service-unavailable"},
		{`<iq type='get' id='v1' from='` + alice + `' to='` + service + `'><query xmlns='jabber:iq:version'/></iq>`, "service-unavailable"},
		{`<presence from='` + alice + `' to='` + service + `'/>`, ""},
		{`<message type='error' from='` + alice + `' to='` + service + `'/>`, ""},
	} {
		err := n.send(c.xml)
		se, _ := err.(*wire.StanzaError)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.xml, err)
		case c.want != "" && (se == nil || se.Condition != c.want):
			t.Errorf("%s: got %v, want %s", c.xml, err, c.want)
		}
	}
}

// twoServiceNodes runs the service on nodes "a" and "b" of one
// in-memory cluster, over one store.
func twoServiceNodes(t *testing.T) (a, b *node) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "aviary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	nodes := map[string]*node{}
	for _, name := range []string{"a", "b"} {
		h := plugintest.NewHostWithStore(t, storage.Store(st))
		h.Node = net.Join(name)
		nodes[name] = start(t, h, nil)
	}
	return nodes["a"], nodes["b"]
}

// TestRequestsRunOnTheNodesOwner runs the service on two nodes of one
// (in-memory) cluster over one store: a request arriving on either is
// answered by the owner of the pubsub node it names, and each
// notification leaves once, from there.
func TestRequestsRunOnTheNodesOwner(t *testing.T) {
	a, b := twoServiceNodes(t)
	// A pubsub node owned by b, asked through a.
	var name string
	for i := 0; name == ""; i++ {
		if k := fmt.Sprint("topic", i); a.h.Cluster().Owner(k) == "b" {
			name = k
		}
	}
	ok(t, a.iq(create(alice, name, ""), b))
	if got := a.take(func(*wire.Element) bool { return true }); len(got) != 0 {
		t.Fatalf("a routed %v; b owns the node", got)
	}
	ok(t, b.iq(subscribe(bob, name)))
	for i := 0; i < 5; i++ {
		from := a
		if i%2 == 1 {
			from = b
		}
		ok(t, from.iq(publish(alice, name, fmt.Sprint("i", i), "x"), a, b))
	}
	if got := len(events(a, bob)); got != 0 {
		t.Errorf("a sent %d notifications; the owner sends them", got)
	}
	if got := len(events(b, bob)); got != 5 {
		t.Errorf("bob got %d notifications from b, want 5 (one per publish)", got)
	}
}

// TestConcurrentCreatesOneWins: many users create the same node at once,
// through both nodes of a cluster. The requests for one pubsub node run
// one at a time on its owner, so exactly one creates it and owns it, and
// every other gets conflict (handled side by side, two could both see
// no node and the later would take it over).
func TestConcurrentCreatesOneWins(t *testing.T) {
	a, b := twoServiceNodes(t)
	const rounds, users = 5, 8
	for r := 0; r < rounds; r++ {
		name := fmt.Sprint("contested-", r)
		var wg sync.WaitGroup
		for u := 0; u < users; u++ {
			on := a
			if u%2 == 1 {
				on = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := on.send(fmt.Sprintf(`<iq type='set' id='c-%s-%d' from='user%d@example.com/x' to='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='%s'/></pubsub></iq>`, name, u, u, service, name)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		winners := 0
		for u := 0; u < users; u++ {
			res := answer(t, fmt.Sprintf("c-%s-%d", name, u), a, b)
			if res.Type() == "result" {
				winners++
				continue
			}
			refused(t, res, "conflict", "")
		}
		if winners != 1 {
			t.Fatalf("%s: %d creates succeeded, want 1", name, winners)
		}
	}
}
