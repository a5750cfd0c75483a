package pep_test

// Raw-XML tests of XEP-0060 on PEP: max_items, XEP-0223 preconditions,
// the pubsub#errors conditions, access models, subscriptions, and the
// notifications of retract, purge and delete.

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

const (
	nsPS     = `http://jabber.org/protocol/pubsub`
	errsNS   = `xmlns="http://jabber.org/protocol/pubsub#errors"`
	stanzaNS = `xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"`
)

// randomAttrs hides what the server makes up: subids, message and item
// IDs it generates.
var randomAttrs = regexp.MustCompile(`(subid|id)="(pubsub-)?[0-9a-f]{16}"`)

func hide(s string) string { return randomAttrs.ReplaceAllString(s, `$1="${2}X"`) }

// pepHost starts PEP with Juliet, Romeo (subscription both), the nurse
// (Juliet sees her presence; she does not see Juliet's) and Tybalt (in
// Juliet's roster, group "family", subscription from).
func pepHost(t *testing.T) (*plugintest.Host, *plugins.Manager) {
	t.Helper()
	h := plugintest.NewHost(t)
	m := h.Start(t, pep.New())
	subscribe(t, h, juliet, romeo, storage.SubBoth)
	subscribe(t, h, juliet, nurse, storage.SubTo)
	_, _, _, _, err := h.St.UpdateRosterItem(context.Background(), juliet, tybalt, storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
		it.Subscription, it.InRoster, it.Groups = storage.SubFrom, true, []string{"family"}
		return it, false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, m
}

const tybalt = "tybalt@example.com"

// ask sends an IQ as given and returns the answer with random IDs hidden.
func ask(t *testing.T, h *plugintest.Host, m *plugins.Manager, in string) string {
	t.Helper()
	return hide(h.IQ(t, m, plugins.ToAccount, in))
}

// run checks a sequence of IQs and their answers, in order.
func run(t *testing.T, h *plugintest.Host, m *plugins.Manager, cases []struct{ name, in, want string }) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ask(t, h, m, c.in); got != c.want {
				t.Errorf("\ngot  %s\nwant %s", got, c.want)
			}
		})
	}
}

// publishOptions is a publish-options form.
func publishOptions(fields ...string) string {
	var b strings.Builder
	b.WriteString(`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`)
	for i := 0; i+1 < len(fields); i += 2 {
		b.WriteString(`<field var='` + fields[i] + `'><value>` + fields[i+1] + `</value></field>`)
	}
	b.WriteString(`</x></publish-options>`)
	return b.String()
}

// bookmarkOptions are what XEP-0402 clients send.
var bookmarkOptions = publishOptions("pubsub#persist_items", "true", "pubsub#max_items", "max",
	"pubsub#send_last_published_item", "never", "pubsub#access_model", "whitelist")

func bookmark(id, room string) string {
	return `<iq type='set' id='` + id + `' from='juliet@example.com/balcony'><pubsub xmlns='` + nsPS + `'><publish node='urn:xmpp:bookmarks:1'><item id='` + room + `'><conference xmlns='urn:xmpp:bookmarks:1' name='` + room + `' autojoin='true'><nick>J</nick></conference></item></publish>` + bookmarkOptions + `</pubsub></iq>`
}

func published(id, node, item string) string {
	return `<iq type="result" id="` + id + `" to="juliet@example.com/balcony"><pubsub xmlns="` + nsPS + `"><publish node="` + node + `"><item id="` + item + `"/></publish></pubsub></iq>`
}

func bookmarkItem(room string) string {
	return `<item id="` + room + `" publisher="juliet@example.com"><conference xmlns="urn:xmpp:bookmarks:1" name="` + room + `" autojoin="true"><nick>J</nick></conference></item>`
}

func tuneItem(id string) string {
	return `<item id="` + id + `" publisher="juliet@example.com"><tune xmlns="` + tune + `"><title>` + id + `</title></tune></item>`
}

func publishTune(id string) string {
	return `<iq type='set' id='p-` + id + `' from='juliet@example.com/balcony'><pubsub xmlns='` + nsPS + `'><publish node='` + tune + `'><item id='` + id + `'><tune xmlns='` + tune + `'><title>` + id + `</title></tune></item></publish></pubsub></iq>`
}

func configureForm(node string, fields ...string) string {
	var b strings.Builder
	b.WriteString(`<iq type='set' id='cfg' from='juliet@example.com/balcony'><pubsub xmlns='` + nsPS + `#owner'><configure node='` + node + `'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>`)
	for i := 0; i+1 < len(fields); i += 2 {
		b.WriteString(`<field var='` + fields[i] + `'>`)
		for _, v := range strings.Split(fields[i+1], ",") {
			b.WriteString(`<value>` + v + `</value>`)
		}
		b.WriteString(`</field>`)
	}
	b.WriteString(`</x></configure></pubsub></iq>`)
	return b.String()
}

const configured = `<iq type="result" id="cfg" to="juliet@example.com/balcony"/>`

// TestMaxItems: a node keeps as many items as pubsub#max_items says,
// "max" included (two XEP-0402 bookmarks stay two), the newest last;
// items come back all, by max_items or by ID; lowering max_items drops
// the oldest at once.
func TestMaxItems(t *testing.T) {
	h, m := pepHost(t)
	items := func(id, attrs, body string) string {
		return `<iq type='get' id='` + id + `' from='juliet@example.com/balcony'><pubsub xmlns='` + nsPS + `'><items node='` + attrs + `>` + body + `</items></pubsub></iq>`
	}
	result := func(id, node, items string) string {
		return `<iq type="result" id="` + id + `" to="juliet@example.com/balcony"><pubsub xmlns="` + nsPS + `"><items node="` + node + `">` + items + `</items></pubsub></iq>`
	}
	run(t, h, m, []struct{ name, in, want string }{
		{"first bookmark", bookmark("b1", "a@muc.example.com"), published("b1", "urn:xmpp:bookmarks:1", "a@muc.example.com")},
		{"second bookmark meets the same options", bookmark("b2", "b@muc.example.com"), published("b2", "urn:xmpp:bookmarks:1", "b@muc.example.com")},
		{"both are kept", items("i1", `urn:xmpp:bookmarks:1'`, ""),
			result("i1", "urn:xmpp:bookmarks:1", bookmarkItem("a@muc.example.com")+bookmarkItem("b@muc.example.com"))},
		{"max_items=1 is the newest", items("i2", `urn:xmpp:bookmarks:1' max_items='1'`, ""),
			result("i2", "urn:xmpp:bookmarks:1", bookmarkItem("b@muc.example.com"))},
		{"by id", items("i3", `urn:xmpp:bookmarks:1'`, `<item id='a@muc.example.com'/><item id='gone'/>`),
			result("i3", "urn:xmpp:bookmarks:1", bookmarkItem("a@muc.example.com"))},
		{"republishing an ID replaces it and makes it the newest", bookmark("b3", "a@muc.example.com"), published("b3", "urn:xmpp:bookmarks:1", "a@muc.example.com")},
		{"order after the republish", items("i4", `urn:xmpp:bookmarks:1'`, ""),
			result("i4", "urn:xmpp:bookmarks:1", bookmarkItem("b@muc.example.com")+bookmarkItem("a@muc.example.com"))},
		{"a default node keeps one: t1", publishTune("t1"), published("p-t1", tune, "t1")},
		{"a default node keeps one: t2", publishTune("t2"), published("p-t2", tune, "t2")},
		{"only t2 is left", items("i5", tune+`'`, ""), result("i5", tune, tuneItem("t2"))},
		{"raise max_items to 3", configureForm(tune, "pubsub#max_items", "3"), configured},
		{"t3", publishTune("t3"), published("p-t3", tune, "t3")},
		{"t4", publishTune("t4"), published("p-t4", tune, "t4")},
		{"three kept", items("i6", tune+`'`, ""), result("i6", tune, tuneItem("t2")+tuneItem("t3")+tuneItem("t4"))},
		{"lower max_items to 2", configureForm(tune, "pubsub#max_items", "2"), configured},
		{"the oldest went at once", items("i7", tune+`'`, ""), result("i7", tune, tuneItem("t3")+tuneItem("t4"))},
		{"max_items='0' asks for none", items("i8", tune+`' max_items='0'`, ""),
			`<iq type="result" id="i8" to="juliet@example.com/balcony"><pubsub xmlns="` + nsPS + `"><items node="` + tune + `"/></pubsub></iq>`},
	})
}

// TestPreconditions: XEP-0223 publish-options are checked against an
// existing node's configuration (booleans and max_items by meaning); a
// mismatch is conflict with <precondition-not-met/> and publishes
// nothing; on a new node they are its configuration, and a value the
// node cannot take creates nothing.
func TestPreconditions(t *testing.T) {
	h, m := pepHost(t)
	pub := func(id, item, options string) string {
		return `<iq type='set' id='` + id + `' from='juliet@example.com/balcony'><pubsub xmlns='` + nsPS + `'><publish node='urn:x'><item id='` + item + `'><x xmlns='urn:x'/></item></publish>` + options + `</pubsub></iq>`
	}
	run(t, h, m, []struct{ name, in, want string }{
		{"creates with the options", pub("p1", "1", publishOptions("pubsub#access_model", "open", "pubsub#max_items", "10", "pubsub#persist_items", "1")), published("p1", "urn:x", "1")},
		{"the same options, written differently", pub("p2", "2", publishOptions("pubsub#persist_items", "true", "pubsub#max_items", "10", "pubsub#access_model", "open")), published("p2", "urn:x", "2")},
		{"an unknown field is passed over", pub("p3", "3", publishOptions("pubsub#x-unknown", "1")), published("p3", "urn:x", "3")},
	})
	for _, c := range []struct{ name, options, text string }{
		{"another access model", publishOptions("pubsub#access_model", "presence"), "pubsub#access_model is open, not presence"},
		{"max instead of 10", publishOptions("pubsub#max_items", "max"), "pubsub#max_items is 10, not max"},
		{"not persistent", publishOptions("pubsub#persist_items", "0"), "pubsub#persist_items is true, not false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ask(t, h, m, pub("px", "x", c.options))
			want := `<error type="cancel"><conflict ` + stanzaNS + `/><text ` + stanzaNS + `>` + c.text + `</text><precondition-not-met ` + errsNS + `/></error></iq>`
			if !strings.HasSuffix(got, want) || !strings.Contains(got, `type="error"`) {
				t.Errorf("\ngot  %s\nwant …%s", got, want)
			}
		})
	}
	// None of the refused publishes stored anything.
	got := ask(t, h, m, `<iq type='get' id='g' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`'><items node='urn:x'/></pubsub></iq>`)
	if strings.Contains(got, `id="x"`) || !strings.Contains(got, `<item id="1"`) || !strings.Contains(got, `<item id="3"`) {
		t.Errorf("items after refused publishes: %s", got)
	}
	// A value a new node cannot take: nothing is created.
	got = ask(t, h, m, `<iq type='set' id='p4' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`'><publish node='urn:y'><item id='1'><y xmlns='urn:y'/></item></publish>`+publishOptions("pubsub#access_model", "authorize")+`</pubsub></iq>`)
	if !strings.Contains(got, `<conflict `+stanzaNS+`/>`) || !strings.Contains(got, `<precondition-not-met `+errsNS+`/>`) {
		t.Errorf("publish-options with authorize: %s", got)
	}
	got = ask(t, h, m, `<iq type='get' id='g2' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`'><items node='urn:y'/></pubsub></iq>`)
	if !strings.Contains(got, `<item-not-found `+stanzaNS+`/>`) {
		t.Errorf("the refused node exists: %s", got)
	}
}

// TestErrorConditions: every refusal carries the pubsub#errors element
// XEP-0060 names for it, beside its defined condition.
func TestErrorConditions(t *testing.T) {
	h, m := pepHost(t)
	ask(t, h, m, publishTune("t1"))
	ask(t, h, m, `<iq type='set' id='c' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`'><create node='transient'/><configure><x xmlns='jabber:x:data' type='submit'><field var='pubsub#persist_items'><value>0</value></field><field var='pubsub#deliver_payloads'><value>0</value></field></x></configure></pubsub></iq>`)
	cases := []struct{ name, in, typ, cond, app string }{
		{"publish without a node", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><publish><item><x xmlns='urn:x'/></item></publish></pubsub></iq>`,
			"modify", "bad-request", `<nodeid-required ` + errsNS + `/>`},
		{"two items in one publish", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><publish node='n'><item><x xmlns='urn:x'/></item><item><x xmlns='urn:x'/></item></publish></pubsub></iq>`,
			"modify", "bad-request", `<invalid-payload ` + errsNS + `/>`},
		{"a payload without namespace", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><publish node='n'><item><x xmlns=''/></item></publish></pubsub></iq>`,
			"modify", "bad-request", `<invalid-payload ` + errsNS + `/>`},
		{"an item without payload", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><publish node='n'><item id='a'/></publish></pubsub></iq>`,
			"modify", "bad-request", `<payload-required ` + errsNS + `/>`},
		{"an item on a transient notification node", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><publish node='transient'><item id='a'><x xmlns='urn:x'/></item></publish></pubsub></iq>`,
			"modify", "bad-request", `<item-forbidden ` + errsNS + `/>`},
		{"no item on a persistent node", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><publish node='` + tune + `'/></pubsub></iq>`,
			"modify", "bad-request", `<item-required ` + errsNS + `/>`},
		{"retract without an item", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><retract node='` + tune + `'/></pubsub></iq>`,
			"modify", "bad-request", `<item-required ` + errsNS + `/>`},
		{"retract without a node", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><retract><item id='t1'/></retract></pubsub></iq>`,
			"modify", "bad-request", `<nodeid-required ` + errsNS + `/>`},
		{"items without a node", `<iq type='get' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><items/></pubsub></iq>`,
			"modify", "bad-request", `<nodeid-required ` + errsNS + `/>`},
		{"subscribing someone else", `<iq type='set' id='e' from='romeo@example.com/o' to='juliet@example.com'><pubsub xmlns='` + nsPS + `'><subscribe node='` + tune + `' jid='nurse@example.com'/></pubsub></iq>`,
			"modify", "bad-request", `<invalid-jid ` + errsNS + `/>`},
		{"unsubscribing without a subscription", `<iq type='set' id='e' from='romeo@example.com/o' to='juliet@example.com'><pubsub xmlns='` + nsPS + `'><unsubscribe node='` + tune + `' jid='romeo@example.com'/></pubsub></iq>`,
			"wait", "unexpected-request", `<not-subscribed ` + errsNS + `/>`},
		{"options without a subscription", `<iq type='get' id='e' from='romeo@example.com/o' to='juliet@example.com'><pubsub xmlns='` + nsPS + `'><options node='` + tune + `' jid='romeo@example.com'/></pubsub></iq>`,
			"wait", "unexpected-request", `<not-subscribed ` + errsNS + `/>`},
		{"a stranger subscribes to a presence node", `<iq type='set' id='e' from='mercutio@example.com/x' to='juliet@example.com'><pubsub xmlns='` + nsPS + `'><subscribe node='` + tune + `' jid='mercutio@example.com'/></pubsub></iq>`,
			"auth", "not-authorized", `<presence-subscription-required ` + errsNS + `/>`},
		{"an instant node", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `'><create/></pubsub></iq>`,
			"modify", "not-acceptable", `<nodeid-required ` + errsNS + `/>`},
		{"purging a transient node", `<iq type='set' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `#owner'><purge node='transient'/></pubsub></iq>`,
			"cancel", "feature-not-implemented", `<unsupported ` + errsNS + ` feature="persistent-items"/>`},
		{"collection default configuration", `<iq type='get' id='e' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `#owner'><default type='collection'/></pubsub></iq>`,
			"cancel", "feature-not-implemented", `<unsupported ` + errsNS + ` feature="collections"/>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ask(t, h, m, c.in)
			want := `<error type="` + c.typ + `"><` + c.cond + ` ` + stanzaNS + `/>`
			if !strings.Contains(got, want) || !strings.Contains(got, c.app+`</error>`) {
				t.Errorf("\ngot  %s\nwant %s…%s</error>", got, want, c.app)
			}
		})
	}
}

// TestAccessModels: who may retrieve and subscribe under each model —
// the owner always; presence: contacts with a subscription from or both;
// roster: contacts in an allowed group; whitelist: members; open: anyone
// but outcasts.
func TestAccessModels(t *testing.T) {
	h, m := pepHost(t)
	ask(t, h, m, publishTune("t1"))
	retrieve := func(who string) string {
		got := ask(t, h, m, `<iq type='get' id='g' from='`+who+`/r' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><items node='`+tune+`'/></pubsub></iq>`)
		if strings.Contains(got, `type="result"`) {
			return "ok"
		}
		i := strings.Index(got, `<error`)
		return hide(got[i:])
	}
	sub := func(who string) string {
		got := ask(t, h, m, `<iq type='set' id='s' from='`+who+`/r' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><subscribe node='`+tune+`' jid='`+who+`'/></pubsub></iq>`)
		if strings.Contains(got, `type="result"`) {
			ask(t, h, m, `<iq type='set' id='u' from='`+who+`/r' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><unsubscribe node='`+tune+`' jid='`+who+`'/></pubsub></iq>`)
			return "ok"
		}
		i := strings.Index(got, `<error`)
		return got[i:]
	}
	presenceRequired := `<error type="auth"><not-authorized ` + stanzaNS + `/><presence-subscription-required ` + errsNS + `/></error></iq>`
	notInGroup := `<error type="auth"><not-authorized ` + stanzaNS + `/><not-in-roster-group ` + errsNS + `/></error></iq>`
	closed := `<error type="cancel"><not-allowed ` + stanzaNS + `/><closed-node ` + errsNS + `/></error></iq>`
	forbidden := `<error type="auth"><forbidden ` + stanzaNS + `/></error></iq>`
	const mercutio = "mercutio@example.com"
	check := func(model string, want map[string]string) {
		t.Helper()
		for _, who := range []string{juliet, romeo, nurse, tybalt, mercutio} {
			w := want[who]
			if got := retrieve(who); got != w {
				t.Errorf("%s: %s retrieves: %s, want %s", model, who, got, w)
			}
			if got := sub(who); got != w {
				t.Errorf("%s: %s subscribes: %s, want %s", model, who, got, w)
			}
		}
	}
	check("presence", map[string]string{juliet: "ok", romeo: "ok", tybalt: "ok", nurse: presenceRequired, mercutio: presenceRequired})
	if got := ask(t, h, m, configureForm(tune, "pubsub#access_model", "roster", "pubsub#roster_groups_allowed", "family,friends")); got != configured {
		t.Fatalf("configure roster: %s", got)
	}
	check("roster", map[string]string{juliet: "ok", romeo: notInGroup, tybalt: "ok", nurse: notInGroup, mercutio: notInGroup})
	if got := ask(t, h, m, configureForm(tune, "pubsub#access_model", "whitelist")); got != configured {
		t.Fatalf("configure whitelist: %s", got)
	}
	check("whitelist", map[string]string{juliet: "ok", romeo: closed, tybalt: closed, nurse: closed, mercutio: closed})
	// The owner whitelists Mercutio as a member.
	affs := `<iq type='set' id='a' from='juliet@example.com/b'><pubsub xmlns='` + nsPS + `#owner'><affiliations node='` + tune + `'><affiliation jid='mercutio@example.com' affiliation='member'/></affiliations></pubsub></iq>`
	if got := ask(t, h, m, affs); !strings.Contains(got, `type="result"`) {
		t.Fatalf("set affiliation: %s", got)
	}
	check("whitelist with a member", map[string]string{juliet: "ok", romeo: closed, tybalt: closed, nurse: closed, mercutio: "ok"})
	// Open: anyone but an outcast.
	if got := ask(t, h, m, configureForm(tune, "pubsub#access_model", "open")); got != configured {
		t.Fatalf("configure open: %s", got)
	}
	ask(t, h, m, strings.ReplaceAll(affs, "member", "outcast"))
	check("open", map[string]string{juliet: "ok", romeo: "ok", tybalt: "ok", nurse: "ok", mercutio: forbidden})
	// The affiliation list names the owner and the outcast.
	got := ask(t, h, m, `<iq type='get' id='al' from='juliet@example.com/b'><pubsub xmlns='`+nsPS+`#owner'><affiliations node='`+tune+`'/></pubsub></iq>`)
	want := `<affiliations node="` + tune + `"><affiliation jid="juliet@example.com" affiliation="owner"/><affiliation jid="mercutio@example.com" affiliation="outcast"/></affiliations>`
	if !strings.Contains(got, want) {
		t.Errorf("affiliations\ngot  %s\nwant …%s", got, want)
	}
	// The configuration form shows the roster's groups as options.
	if got := ask(t, h, m, `<iq type='get' id='f' from='juliet@example.com/b'><pubsub xmlns='`+nsPS+`#owner'><configure node='`+tune+`'/></pubsub></iq>`); !strings.Contains(got, `<field var="pubsub#roster_groups_allowed" type="list-multi" label="Roster groups allowed to subscribe (access model roster)"><option><value>family</value></option><option><value>friends</value></option><value>family</value><value>friends</value></field>`) {
		t.Errorf("configuration form: %s", got)
	}
}

// TestSubscriptions: an explicit subscription gets the last item at
// once and every new one; its options pause delivery; the subscriber
// and the owner list subscriptions, and the owner removes one.
func TestSubscriptions(t *testing.T) {
	h, m := pepHost(t)
	ask(t, h, m, publishTune("t1"))
	h.Routed()
	got := ask(t, h, m, `<iq type='set' id='s' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><subscribe node='`+tune+`' jid='romeo@example.com'/></pubsub></iq>`)
	want := `<iq type="result" id="s" from="juliet@example.com" to="romeo@example.com/orchard"><pubsub xmlns="` + nsPS + `"><subscription node="` + tune + `" jid="romeo@example.com" subid="X" subscription="subscribed"/></pubsub></iq>`
	if got != want {
		t.Fatalf("subscribe\ngot  %s\nwant %s", got, want)
	}
	event := func(to, body string) string {
		return `<message type="headline" from="juliet@example.com" to="` + to + `" id="pubsub-X"><event xmlns="http://jabber.org/protocol/pubsub#event">` + body + `</event></message>`
	}
	last := event("romeo@example.com", `<items node="`+tune+`">`+tuneItem("t1")+`</items>`)
	if got := hideAll(h.Routed()); !slices.Equal(got, []string{last}) {
		t.Fatalf("last item on subscription\ngot  %v\nwant %v", got, last)
	}
	ask(t, h, m, publishTune("t2"))
	if got := hideAll(h.Routed()); !slices.Equal(got, []string{event("romeo@example.com", `<items node="`+tune+`">`+tuneItem("t2")+`</items>`)}) {
		t.Fatalf("publish to a subscriber: %v", got)
	}
	// Pause delivery with pubsub#deliver.
	opts := ask(t, h, m, `<iq type='get' id='o' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><options node='`+tune+`' jid='romeo@example.com'/></pubsub></iq>`)
	if !strings.Contains(opts, `<field var="pubsub#deliver" type="boolean" label="Enable delivery"><value>true</value></field>`) {
		t.Fatalf("options: %s", opts)
	}
	set := ask(t, h, m, `<iq type='set' id='o2' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><options node='`+tune+`' jid='romeo@example.com'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field><field var='pubsub#deliver'><value>0</value></field></x></options></pubsub></iq>`)
	if !strings.Contains(set, `type="result"`) {
		t.Fatalf("set options: %s", set)
	}
	ask(t, h, m, publishTune("t3"))
	if got := h.Routed(); len(got) != 0 {
		t.Fatalf("delivered with deliver=false: %v", got)
	}
	// The subscriber's own list and the owner's.
	mine := ask(t, h, m, `<iq type='get' id='l' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><subscriptions/></pubsub></iq>`)
	if !strings.Contains(mine, `<subscriptions><subscription node="`+tune+`" jid="romeo@example.com" subid="X" subscription="subscribed"/></subscriptions>`) {
		t.Errorf("own subscriptions: %s", mine)
	}
	all := ask(t, h, m, `<iq type='get' id='l2' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`#owner'><subscriptions node='`+tune+`'/></pubsub></iq>`)
	if !strings.Contains(all, `<subscriptions node="`+tune+`"><subscription jid="romeo@example.com" subid="X" subscription="subscribed"/></subscriptions>`) {
		t.Errorf("owner's list: %s", all)
	}
	if got := ask(t, h, m, `<iq type='get' id='l3' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='`+nsPS+`#owner'><subscriptions node='`+tune+`'/></pubsub></iq>`); !strings.Contains(got, `<forbidden `+stanzaNS+`/>`) {
		t.Errorf("a subscriber read the owner's list: %s", got)
	}
	if got := ask(t, h, m, `<iq type='set' id='l4' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`#owner'><subscriptions node='`+tune+`'><subscription jid='romeo@example.com' subscription='none'/></subscriptions></pubsub></iq>`); !strings.Contains(got, `type="result"`) {
		t.Fatalf("owner removes the subscription: %s", got)
	}
	mine = ask(t, h, m, `<iq type='get' id='l5' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><subscriptions node='`+tune+`'/></pubsub></iq>`)
	if strings.Contains(mine, "<subscription ") {
		t.Errorf("still subscribed: %s", mine)
	}
}

func hideAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = hide(s)
	}
	return out
}

// TestRemovalNotifications: retract (with notify, and by the node's
// notify_retract), purge, and delete with a redirect reach explicit
// subscribers and the contacts whose caps ask for the node.
func TestRemovalNotifications(t *testing.T) {
	ctx := context.Background()
	h, m := pepHost(t)
	if got := ask(t, h, m, configureForm(tune, "pubsub#max_items", "max")); !strings.Contains(got, "item-not-found") {
		t.Fatalf("configuring a missing node: %s", got)
	}
	ask(t, h, m, publishTune("t1"))
	ask(t, h, m, configureForm(tune, "pubsub#max_items", "max"))
	ask(t, h, m, publishTune("t2"))
	ask(t, h, m, publishTune("t3"))
	// Tybalt (subscription from) subscribes explicitly with his bare JID.
	ask(t, h, m, `<iq type='set' id='s' from='tybalt@example.com/r' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><subscribe node='`+tune+`' jid='tybalt@example.com'/></pubsub></iq>`)
	// Romeo's client asks for tune notifications through its caps.
	info := plugintest.Parse(t, romeoInfo)
	ver := pep.CapsHash(info)
	el := plugintest.Parse(t, `<presence from='romeo@example.com/orchard' to='juliet@example.com'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='`+ver+`'/></presence>`)
	m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: el, Session: juliet + "/balcony"})
	q := waitRouted(t, h, 2) // Tybalt's last item and the caps query, in either order
	var id string
	for _, s := range q {
		if mm := regexp.MustCompile(`id="(pepcaps-[0-9a-f-]+)"`).FindStringSubmatch(s); mm != nil {
			id = mm[1]
		}
	}
	answer := plugintest.Parse(t, `<iq type='result' id='`+id+`' from='romeo@example.com/orchard' to='juliet@example.com'>`+strings.ReplaceAll(romeoInfo, "VER", ver)+`</iq>`)
	m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: answer})
	waitRouted(t, h, 1) // Romeo's last item
	event := func(to, body string) string {
		return `<message type="headline" from="juliet@example.com" to="` + to + `" id="pubsub-X"><event xmlns="http://jabber.org/protocol/pubsub#event">` + body + `</event></message>`
	}
	both := func(body string) []string {
		return []string{event("romeo@example.com/orchard", body), event("tybalt@example.com", body)}
	}
	expect := func(what string, want []string) {
		t.Helper()
		got := hideAll(h.Routed())
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s\ngot  %v\nwant %v", what, got, want)
		}
	}
	retract := func(id, notify string) string {
		return ask(t, h, m, `<iq type='set' id='r' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`'><retract node='`+tune+`'`+notify+`><item id='`+id+`'/></retract></pubsub></iq>`)
	}
	if got := retract("t1", ` notify='true'`); got != `<iq type="result" id="r" to="juliet@example.com/balcony"/>` {
		t.Fatalf("retract: %s", got)
	}
	expect("retract with notify", both(`<items node="`+tune+`"><retract id="t1"/></items>`))
	retract("t2", ``)
	expect("retract by notify_retract", both(`<items node="`+tune+`"><retract id="t2"/></items>`))
	retract("t3", ` notify='false'`)
	expect("retract with notify='false'", nil)
	if got := retract("t3", ``); !strings.Contains(got, "item-not-found") {
		t.Errorf("retracting a missing item: %s", got)
	}
	h.Routed()
	ask(t, h, m, publishTune("t4"))
	h.Routed()
	if got := ask(t, h, m, `<iq type='set' id='pu' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`#owner'><purge node='`+tune+`'/></pubsub></iq>`); !strings.Contains(got, `type="result"`) {
		t.Fatalf("purge: %s", got)
	}
	expect("purge", both(`<purge node="`+tune+`"/>`))
	if got := ask(t, h, m, `<iq type='get' id='g' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`'><items node='`+tune+`'/></pubsub></iq>`); strings.Contains(got, "<item ") {
		t.Errorf("items after purge: %s", got)
	}
	if got := ask(t, h, m, `<iq type='set' id='d' from='juliet@example.com/balcony'><pubsub xmlns='`+nsPS+`#owner'><delete node='`+tune+`'><redirect uri='xmpp:juliet@example.com?;node=tune2'/></delete></pubsub></iq>`); !strings.Contains(got, `type="result"`) {
		t.Fatalf("delete: %s", got)
	}
	expect("delete with redirect", both(`<delete node="`+tune+`"><redirect uri="xmpp:juliet@example.com?;node=tune2"/></delete>`))
	// The subscription went with the node: a new node of that name has none.
	ask(t, h, m, publishTune("t5"))
	expect("publish on the new node", []string{event("romeo@example.com/orchard", `<items node="`+tune+`">`+tuneItem("t5")+`</items>`)})
}

// TestLegacyRecord: a node stored by the single-item PEP (its last item
// inside the node record) keeps its item: it is moved to the items
// store on the first read, and the node then takes more.
func TestLegacyRecord(t *testing.T) {
	ctx := context.Background()
	h, m := pepHost(t)
	old := `<node xmlns="urn:xmpp:aviary:pep" access="open"><item id="old" publisher="juliet@example.com"><tune xmlns="` + tune + `"><title>old</title></tune></item></node>`
	if _, err := h.St.Map(pep.Store).Set(ctx, juliet, "", tune, []byte(old), storage.Limits{}); err != nil {
		t.Fatal(err)
	}
	got := ask(t, h, m, `<iq type='get' id='g' from='mercutio@example.com/x' to='juliet@example.com'><pubsub xmlns='`+nsPS+`'><items node='`+tune+`'/></pubsub></iq>`)
	want := `<iq type="result" id="g" from="juliet@example.com" to="mercutio@example.com/x"><pubsub xmlns="` + nsPS + `"><items node="` + tune + `">` + tuneItem("old") + `</items></pubsub></iq>`
	if got != want {
		t.Fatalf("legacy item (open access kept)\ngot  %s\nwant %s", got, want)
	}
	rec, err := h.St.Map(pep.Store).Get(ctx, juliet, "", tune)
	if err != nil || strings.Contains(string(rec.Value), "<item") || !strings.Contains(string(rec.Value), `access="open"`) {
		t.Errorf("record after the move: %s, %v", rec.Value, err)
	}
	if it, err := h.St.Map(pep.StoreItems).Get(ctx, juliet, tune, "old"); err != nil || !strings.Contains(string(it.Value), "<title>old</title>") {
		t.Errorf("moved item: %s, %v", it.Value, err)
	}
	// The node takes more items once configured for them.
	ask(t, h, m, configureForm(tune, "pubsub#max_items", "2"))
	ask(t, h, m, publishTune("new"))
	got = ask(t, h, m, `<iq type='get' id='g2' from='juliet@example.com/b'><pubsub xmlns='`+nsPS+`'><items node='`+tune+`'/></pubsub></iq>`)
	if !strings.Contains(got, tuneItem("old")+tuneItem("new")) {
		t.Errorf("items after a publish: %s", got)
	}
}

// TestDiscoItems: disco#items on the account lists the nodes the
// requester may see; on a node, its items' IDs.
func TestDiscoItems(t *testing.T) {
	ctx := context.Background()
	h, m := pepHost(t)
	ask(t, h, m, publishTune("t1"))
	ask(t, h, m, bookmark("b", "a@muc.example.com"))
	names := func(from, node string) []string {
		items, ok := m.AccountItems(ctx, from, juliet, node)
		if !ok {
			return nil
		}
		var out []string
		for _, it := range items {
			out = append(out, it.JID+"|"+it.Node+"|"+it.Name)
		}
		return out
	}
	// storage:bookmarks is the XEP-0048 copy of the bookmarks (bookmarks.go).
	if got, want := names(juliet+"/b", ""), []string{juliet + "|" + tune + "|", juliet + "|urn:xmpp:bookmarks:1|", juliet + "|storage:bookmarks|"}; !slices.Equal(got, want) {
		t.Errorf("owner's nodes %v, want %v", got, want)
	}
	if got, want := names(romeo+"/o", ""), []string{juliet + "|" + tune + "|"}; !slices.Equal(got, want) {
		t.Errorf("a contact sees %v, want %v", got, want)
	}
	if got, want := names(romeo+"/o", tune), []string{juliet + "||t1"}; !slices.Equal(got, want) {
		t.Errorf("items %v, want %v", got, want)
	}
	if _, ok := m.AccountItems(ctx, romeo+"/o", juliet, "urn:xmpp:bookmarks:1"); ok {
		t.Error("a contact listed the whitelisted bookmarks")
	}
}
