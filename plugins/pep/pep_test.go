package pep_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

const (
	juliet = "juliet@example.com"
	romeo  = "romeo@example.com"
	nurse  = "nurse@example.com"
	tune   = "http://jabber.org/protocol/tune"
)

var randomIDs = regexp.MustCompile(`id="(pubsub|pepcaps)-[0-9a-f-]+"`)

func norm(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = randomIDs.ReplaceAllString(s, `id="$1"`)
	}
	return out
}

func subscribe(t *testing.T, h *plugintest.Host, owner, contact string, sub string) {
	t.Helper()
	_, _, _, _, err := h.St.UpdateRosterItem(context.Background(), owner, contact, storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
		it.Subscription, it.InRoster = sub, true
		return it, false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestIQs(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, pep.New())
	subscribe(t, h, juliet, romeo, storage.SubBoth)
	cases := []struct{ name, in, want string }{
		{"publish auto-creates",
			`<iq type='set' id='p1' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/tune'><item id='t1'><tune xmlns='http://jabber.org/protocol/tune'><artist>Yes</artist></tune></item></publish></pubsub></iq>`,
			`<iq type="result" id="p1" to="juliet@example.com/balcony"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="http://jabber.org/protocol/tune"><item id="t1"/></publish></pubsub></iq>`},
		{"owner retrieves",
			`<iq type='get' id='g1' from='juliet@example.com/balcony' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/tune'/></pubsub></iq>`,
			`<iq type="result" id="g1" from="juliet@example.com" to="juliet@example.com/balcony"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="http://jabber.org/protocol/tune"><item id="t1" publisher="juliet@example.com"><tune xmlns="http://jabber.org/protocol/tune"><artist>Yes</artist></tune></item></items></pubsub></iq>`},
		{"subscribed contact retrieves",
			`<iq type='get' id='g2' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/tune'/></pubsub></iq>`,
			`<iq type="result" id="g2" from="juliet@example.com" to="romeo@example.com/orchard"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="http://jabber.org/protocol/tune"><item id="t1" publisher="juliet@example.com"><tune xmlns="http://jabber.org/protocol/tune"><artist>Yes</artist></tune></item></items></pubsub></iq>`},
		{"stranger may not retrieve",
			`<iq type='get' id='g3' from='nurse@example.com/x' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/tune'/></pubsub></iq>`,
			`<iq id="g3" from="juliet@example.com" to="nurse@example.com/x" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="http://jabber.org/protocol/tune"/></pubsub><error type="auth"><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><presence-subscription-required xmlns="http://jabber.org/protocol/pubsub#errors"/></error></iq>`},
		{"only the owner publishes",
			`<iq type='set' id='p2' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item><x xmlns='y'/></item></publish></pubsub></iq>`,
			`<iq id="p2" from="juliet@example.com" to="romeo@example.com/orchard" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="n"><item><x xmlns="y"/></item></publish></pubsub><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"unknown node",
			`<iq type='get' id='g4' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='nope'/></pubsub></iq>`,
			`<iq id="g4" to="juliet@example.com/balcony" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="nope"/></pubsub><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"publish without payload",
			`<iq type='set' id='p3' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item id='a'/></publish></pubsub></iq>`,
			`<iq id="p3" to="juliet@example.com/balcony" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="n"><item id="a"/></publish></pubsub><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><payload-required xmlns="http://jabber.org/protocol/pubsub#errors"/></error></iq>`},
		{"publish-options whitelist on a new node",
			`<iq type='set' id='p4' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='secret'><item id='s'><s xmlns='urn:s'/></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub></iq>`,
			`<iq type="result" id="p4" to="juliet@example.com/balcony"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="secret"><item id="s"/></publish></pubsub></iq>`},
		{"whitelist keeps contacts out",
			`<iq type='get' id='g5' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='secret'/></pubsub></iq>`,
			`<iq id="g5" from="juliet@example.com" to="romeo@example.com/orchard" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="secret"/></pubsub><error type="cancel"><not-allowed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><closed-node xmlns="http://jabber.org/protocol/pubsub#errors"/></error></iq>`},
		{"publish-options that do not match",
			`<iq type='set' id='p5' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='secret'><item id='s'><s xmlns='urn:s'/></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub></iq>`,
			`<iq id="p5" to="juliet@example.com/balcony" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="secret"><item id="s"><s xmlns="urn:s"/></item></publish><publish-options><x xmlns="jabber:x:data" type="submit"><field var="pubsub#access_model"><value>open</value></field></x></publish-options></pubsub><error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">pubsub#access_model is whitelist, not open</text><precondition-not-met xmlns="http://jabber.org/protocol/pubsub#errors"/></error></iq>`},
		{"retract",
			`<iq type='set' id='r1' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='secret'><item id='s'/></retract></pubsub></iq>`,
			`<iq type="result" id="r1" to="juliet@example.com/balcony"/>`},
		{"retracted node is empty",
			`<iq type='get' id='g6' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='secret'/></pubsub></iq>`,
			`<iq type="result" id="g6" to="juliet@example.com/balcony"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="secret"/></pubsub></iq>`},
		{"create conflicts with an existing node",
			`<iq type='set' id='c1' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='secret'/></pubsub></iq>`,
			`<iq id="c1" to="juliet@example.com/balcony" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><create node="secret"/></pubsub><error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"owner deletes",
			`<iq type='set' id='d1' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='secret'/></pubsub></iq>`,
			`<iq type="result" id="d1" to="juliet@example.com/balcony"/>`},
		{"deleted node is gone",
			`<iq type='get' id='g7' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='secret'/></pubsub></iq>`,
			`<iq id="g7" to="juliet@example.com/balcony" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="secret"/></pubsub><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"configure open",
			`<iq type='set' id='f2' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='http://jabber.org/protocol/tune'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>`,
			`<iq type="result" id="f2" to="juliet@example.com/balcony"/>`},
		{"open node: a stranger retrieves",
			`<iq type='get' id='g8' from='nurse@example.com/x' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/tune' max_items='1'/></pubsub></iq>`,
			`<iq type="result" id="g8" from="juliet@example.com" to="nurse@example.com/x"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="http://jabber.org/protocol/tune"><item id="t1" publisher="juliet@example.com"><tune xmlns="http://jabber.org/protocol/tune"><artist>Yes</artist></tune></item></items></pubsub></iq>`},
		{"others may not configure",
			`<iq type='get' id='f3' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='http://jabber.org/protocol/tune'/></pubsub></iq>`,
			`<iq id="f3" from="juliet@example.com" to="romeo@example.com/orchard" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub#owner"><configure node="http://jabber.org/protocol/tune"/></pubsub><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"subscribing to a missing node",
			`<iq type='set' id='s1' from='romeo@example.com/orchard' to='juliet@example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n' jid='romeo@example.com'/></pubsub></iq>`,
			`<iq id="s1" from="juliet@example.com" to="romeo@example.com/orchard" type="error"><pubsub xmlns="http://jabber.org/protocol/pubsub"><subscribe node="n" jid="romeo@example.com"/></pubsub><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, plugins.ToAccount, c.in); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	ids, feats, ok := m.AccountNodeInfo(context.Background(), "nurse@example.com/x", juliet, tune)
	if !ok || len(ids) != 1 || ids[0].Type != "leaf" || len(feats) != 1 {
		t.Errorf("node disco: %v %v %v", ids, feats, ok)
	}
	if _, _, ok := m.AccountNodeInfo(context.Background(), "nurse@example.com/x", juliet, "nope"); ok {
		t.Error("disco#info on a missing node answered")
	}
	if got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='x' from='juliet@example.com/b' to='example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/></pubsub></iq>`); got != "" {
		t.Errorf("the server itself answered pubsub: %s", got)
	}
}

// romeoInfo is the disco#info Romeo's client answers, asking for tune
// notifications; its caps ver is computed from it.
const romeoInfo = `<query xmlns='http://jabber.org/protocol/disco#info' node='https://example.org/client#VER'><identity category='client' type='pc' name='Orchard'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/tune+notify'/></query>`

func TestNotifications(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	p := pep.New()
	m := h.Start(t, p)
	subscribe(t, h, juliet, romeo, storage.SubBoth)
	subscribe(t, h, juliet, nurse, storage.SubTo) // Juliet sees the nurse; the nurse does not see Juliet
	info := plugintest.Parse(t, romeoInfo)
	ver := pep.CapsHash(info)

	publish := func(artist string) string {
		return h.IQ(t, m, plugins.ToAccount, `<iq type='set' id='p' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/tune'><item id='`+artist+`'><tune xmlns='http://jabber.org/protocol/tune'><artist>`+artist+`</artist></tune></item></publish></pubsub></iq>`)
	}
	presence := func(from, to, session, c string) {
		el := plugintest.Parse(t, `<presence from='`+from+`' to='`+to+`'>`+c+`</presence>`)
		v, err := m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: el, Session: session})
		if err != nil || v != plugins.Continue {
			t.Fatalf("presence intercepted: %v %v", v, err)
		}
	}
	caps := `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='` + ver + `'/>`

	// Juliet published before Romeo came online.
	publish("Yes")
	if got := h.Routed(); len(got) != 0 {
		t.Fatalf("notified nobody online, yet routed %v", got)
	}

	// Romeo comes online: the plugin asks his client what it wants...
	presence("romeo@example.com/orchard", juliet+"/balcony", juliet+"/balcony", caps)
	q := waitRouted(t, h, 1)
	want := `<iq type="get" id="pepcaps" from="juliet@example.com" to="romeo@example.com/orchard"><query xmlns="http://jabber.org/protocol/disco#info" node="https://example.org/client#` + ver + `"/></iq>`
	if norm(q)[0] != want {
		t.Fatalf("caps query\ngot  %s\nwant %s", q[0], want)
	}
	id := regexp.MustCompile(`id="(pepcaps-[0-9a-f-]+)"`).FindStringSubmatch(q[0])[1]
	// ...the same presence seen by a second session of Juliet asks nothing more...
	presence("romeo@example.com/orchard", juliet+"/garden", juliet+"/garden", caps)
	// ...and the answer (caught, never routed on) brings him the last item.
	answer := plugintest.Parse(t, `<iq type='result' id='`+id+`' from='romeo@example.com/orchard' to='juliet@example.com'>`+strings.ReplaceAll(romeoInfo, "VER", ver)+`</iq>`)
	if v, err := m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: answer, Session: "romeo@example.com/orchard"}); v != plugins.Handled || err != nil {
		t.Fatalf("answer not handled: %v %v", v, err)
	}
	last := `<message type="headline" from="juliet@example.com" to="romeo@example.com/orchard" id="pubsub"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="http://jabber.org/protocol/tune"><item id="Yes" publisher="juliet@example.com"><tune xmlns="http://jabber.org/protocol/tune"><artist>Yes</artist></tune></item></items></event></message>`
	if got := norm(waitRouted(t, h, 1)); got[0] != last {
		t.Fatalf("last item\ngot  %s\nwant %s", got[0], last)
	}
	// The verified version is shared with the cluster.
	if v, err := h.St.GetProperty(ctx, "pep.caps."+ver); err != nil || v != tune {
		t.Errorf("shared caps = %q, %v", v, err)
	}

	// The nurse, who does not see Juliet's presence, wants tunes too; so
	// does Juliet's own second resource, which has no caps at all.
	presence("nurse@example.com/kitchen", juliet+"/balcony", juliet+"/balcony", caps)
	presence(juliet+"/garden", juliet+"/balcony", juliet+"/balcony", "")

	// A new publish goes to Romeo only.
	publish("Genesis")
	got := norm(h.Routed())
	wantEv := []string{`<message type="headline" from="juliet@example.com" to="romeo@example.com/orchard" id="pubsub"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="http://jabber.org/protocol/tune"><item id="Genesis" publisher="juliet@example.com"><tune xmlns="http://jabber.org/protocol/tune"><artist>Genesis</artist></tune></item></items></event></message>`}
	if !slices.Equal(got, wantEv) {
		t.Errorf("publish notified\ngot  %v\nwant %v", got, wantEv)
	}

	// Romeo goes away: nothing more for him.
	el := plugintest.Parse(t, `<presence type='unavailable' from='romeo@example.com/orchard' to='juliet@example.com'/>`)
	m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: el, Session: juliet + "/balcony"})
	publish("Rush")
	if got := h.Routed(); len(got) != 0 {
		t.Errorf("notified after unavailable: %v", got)
	}

	// A fresh plugin (another node) resolves the version from the shared
	// properties without asking, and Juliet's own resource that asks for
	// tunes gets the last item.
	h2 := plugintest.NewHostWithStore(t, h.St)
	m2 := h2.Start(t, pep.New())
	own := plugintest.Parse(t, `<presence from='juliet@example.com/garden'>`+caps+`</presence>`)
	m2.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: own, Session: juliet + "/garden"})
	wantOwn := `<message type="headline" from="juliet@example.com" to="juliet@example.com/garden" id="pubsub"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="http://jabber.org/protocol/tune"><item id="Rush" publisher="juliet@example.com"><tune xmlns="http://jabber.org/protocol/tune"><artist>Rush</artist></tune></item></items></event></message>`
	if got := norm(waitRouted(t, h2, 1)); got[0] != wantOwn {
		t.Errorf("own resource\ngot  %s\nwant %s", got[0], wantOwn)
	}
}

func TestFilterChange(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	m := h.Start(t, pep.New())
	subscribe(t, h, juliet, romeo, storage.SubFrom)
	h.IQ(t, m, plugins.ToAccount, `<iq type='set' id='p' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:mood'><item id='m1'><mood xmlns='urn:mood'/></item></publish></pubsub></iq>`)
	// Romeo's client first wants nothing, then moods: an unverified ver
	// (no hash) is resolved for the answering client alone.
	for i, feats := range []string{``, `<feature var='urn:mood+notify'/>`} {
		ver := []string{"v1", "v2"}[i]
		el := plugintest.Parse(t, `<presence from='romeo@example.com/orchard' to='juliet@example.com'><c xmlns='http://jabber.org/protocol/caps' node='n' ver='`+ver+`'/></presence>`)
		m.Intercept(ctx, plugins.PointDeliver, &plugins.Stanza{El: el, Session: juliet + "/balcony"})
		q := waitRouted(t, h, 1)[0]
		id := regexp.MustCompile(`id="(pepcaps-[0-9a-f-]+)"`).FindStringSubmatch(q)[1]
		answer := plugintest.Parse(t, `<iq type='result' id='`+id+`' from='romeo@example.com/orchard' to='juliet@example.com'><query xmlns='http://jabber.org/protocol/disco#info'>`+feats+`</query></iq>`)
		m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: answer})
	}
	want := `<message type="headline" from="juliet@example.com" to="romeo@example.com/orchard" id="pubsub"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="urn:mood"><item id="m1" publisher="juliet@example.com"><mood xmlns="urn:mood"/></item></items></event></message>`
	if got := norm(waitRouted(t, h, 1)); got[0] != want {
		t.Errorf("after filter change\ngot  %s\nwant %s", got[0], want)
	}
	if _, err := h.St.GetProperty(ctx, "pep.caps.v2"); err == nil {
		t.Error("an unverified version was shared")
	}
}

// TestCapsHash checks the XEP-0115 §5.2 and §5.3 examples.
func TestCapsHash(t *testing.T) {
	cases := []struct{ name, info, want string }{
		{"simple", `<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' name='Exodus 0.9.1' type='pc'/><feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/muc'/></query>`,
			"QgayPKawpkPSDYmwT/WM94uAlu0="},
		{"complex", `<query xmlns='http://jabber.org/protocol/disco#info'><identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/><identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/><feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/muc'/><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field><field var='ip_version'><value>ipv4</value><value>ipv6</value></field><field var='os'><value>Mac</value></field><field var='os_version'><value>10.5.1</value></field><field var='software'><value>Psi</value></field><field var='software_version'><value>0.11</value></field></x></query>`,
			"q07IKJEyjvHSyhy//CH0CxmKi8w="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			el, err := wire.Parse([]byte(c.info), wire.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := pep.CapsHash(el); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestDisco(t *testing.T) {
	p := pep.New()
	if ids := p.AccountIdentities(); len(ids) != 1 || ids[0] != (plugins.Identity{Category: "pubsub", Type: "pep"}) {
		t.Errorf("identities %v", ids)
	}
	for _, f := range []string{pep.NSPubSub, pep.NSPubSub + "#publish", pep.NSPubSub + "#auto-create", pep.NSPubSub + "#auto-subscribe", pep.NSPubSub + "#filtered-notifications"} {
		if !slices.Contains(p.AccountFeatures(), f) {
			t.Errorf("feature %s missing", f)
		}
	}
}

// waitRouted polls until n stanzas were routed and returns them.
func waitRouted(t *testing.T, h *plugintest.Host, n int) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got = append(got, h.Routed()...)
		if len(got) >= n {
			if len(got) > n {
				t.Fatalf("routed %d stanzas, want %d: %v", len(got), n, got)
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("routed %d stanzas within 5s, want %d: %v", len(got), n, got)
	return nil
}

// TestQuota: an account keeps at most max_nodes nodes of max_bytes in
// all; a publish or create past either gets not-acceptable naming the
// limit, changes nothing and notifies nobody.
func TestQuota(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.Plugins.Settings = map[string]map[string]any{pep.ID: {"max_nodes": 2, "max_bytes": 400}}
	m := h.Start(t, pep.New())
	publish := func(id, node, payload string) string {
		return h.IQ(t, m, plugins.ToAccount, `<iq type='set' id='`+id+`' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+node+`'><item id='i'>`+payload+`</item></publish></pubsub></iq>`)
	}
	ok := func(id, node string) string {
		return `<iq type="result" id="` + id + `" to="juliet@example.com/balcony"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="` + node + `"><item id="i"/></publish></pubsub></iq>`
	}
	full := `<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">PEP storage is full: at most `
	small := `<x xmlns='urn:x'/>`
	big := `<x xmlns='urn:x'>` + strings.Repeat("y", 400) + `</x>`
	if got := publish("p1", "n1", small); got != ok("p1", "n1") {
		t.Fatalf("first node: %s", got)
	}
	if got := publish("p2", "n2", small); got != ok("p2", "n2") {
		t.Fatalf("second node: %s", got)
	}
	if got := publish("p3", "n3", small); !strings.Contains(got, full+"2 nodes per account</text>") {
		t.Fatalf("third node: %s", got)
	}
	got := h.IQ(t, m, plugins.ToAccount, `<iq type='set' id='c1' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='n3'/></pubsub></iq>`)
	if !strings.Contains(got, full+"2 nodes per account</text>") {
		t.Fatalf("create of a third node: %s", got)
	}
	if got := publish("p4", "n1", big); !strings.Contains(got, full+"400 bytes per account</text>") {
		t.Fatalf("too big an item: %s", got)
	}
	// Nothing of the refused writes is stored; replacing an item fits.
	if got := h.IQ(t, m, plugins.ToAccount, `<iq type='get' id='g1' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n3'/></pubsub></iq>`); !strings.Contains(got, "item-not-found") {
		t.Fatalf("refused node exists: %s", got)
	}
	if got := h.IQ(t, m, plugins.ToAccount, `<iq type='get' id='g2' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n1'/></pubsub></iq>`); !strings.Contains(got, `<x xmlns="urn:x"/>`) {
		t.Fatalf("refused publish replaced the item: %s", got)
	}
	if got := publish("p5", "n1", `<x xmlns='urn:x'>new</x>`); got != ok("p5", "n1") {
		t.Fatalf("replacing an item: %s", got)
	}
}

// TestCapsAskedAgainAfterError: two clients share a caps version; the
// query goes to the first, which answers with an error (its features
// changed meanwhile, as Smack's do). The second is not left unresolved:
// it gets a query of its own, and its answer brings it the last item.
// (Juliet's own two resources: their queries need no roster check, so
// the second waits behind the first for sure.)
func TestCapsAskedAgainAfterError(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	m := h.Start(t, pep.New())
	h.IQ(t, m, plugins.ToAccount, `<iq type='set' id='p' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+tune+`'><item id='t1'><tune xmlns='`+tune+`'/></item></publish></pubsub></iq>`)
	ver := pep.CapsHash(plugintest.Parse(t, romeoInfo))
	caps := `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='` + ver + `'/>`
	for _, res := range []string{"garden", "balcony"} {
		own := plugintest.Parse(t, `<presence from='juliet@example.com/`+res+`'>`+caps+`</presence>`)
		m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: own, Session: juliet + "/" + res})
	}
	first := waitRouted(t, h, 1)[0]
	if !strings.Contains(first, `to="juliet@example.com/garden"`) {
		t.Fatalf("first query: %s", first)
	}
	id := regexp.MustCompile(`id="(pepcaps-[0-9a-f-]+)"`).FindStringSubmatch(first)[1]
	refused := plugintest.Parse(t, `<iq type='error' id='`+id+`' from='juliet@example.com/garden' to='juliet@example.com'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: refused, Session: juliet + "/garden"})
	second := waitRouted(t, h, 1)[0]
	if !strings.Contains(second, `to="juliet@example.com/balcony"`) || !strings.Contains(second, `<query xmlns="http://jabber.org/protocol/disco#info"`) {
		t.Fatalf("the second client was not asked: %s", second)
	}
	id = regexp.MustCompile(`id="(pepcaps-[0-9a-f-]+)"`).FindStringSubmatch(second)[1]
	answer := plugintest.Parse(t, `<iq type='result' id='`+id+`' from='juliet@example.com/balcony' to='juliet@example.com'>`+strings.ReplaceAll(romeoInfo, "VER", ver)+`</iq>`)
	m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: answer, Session: juliet + "/balcony"})
	if got := waitRouted(t, h, 1)[0]; !strings.Contains(got, `to="juliet@example.com/balcony"`) || !strings.Contains(got, `<item id="t1"`) {
		t.Errorf("the last item: %s", got)
	}
}
