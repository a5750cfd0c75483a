package mam_test

// End-to-end tests of the message archive through a real node over TCP
// (router, c2s, the plugins the server builds), on the embedded store.
// The cluster, PostgreSQL and real clients are in server/interop and
// server/clustertest.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

func startNode(t *testing.T, mutate func(*conf.Config)) *server.Node {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	if mutate != nil {
		mutate(cfg)
	}
	n := servertest.RunServer(t, cfg)
	for _, u := range []string{"alice", "bob", "carol"} {
		servertest.CreateUser(t, n, u, "pw-"+u)
	}
	return n
}

func login(t *testing.T, n *server.Node, user, resource string, presence bool) *servertest.Client {
	t.Helper()
	c := servertest.Dial(t, n)
	t.Cleanup(c.Close)
	c.Login(user, "pw-"+user, resource)
	if presence {
		c.Send(`<presence/>`)
		sync(c)
	}
	return c
}

// iq sends an IQ (%s is its id) and returns the answer, skipping what
// comes before it.
func iq(c *servertest.Client, format string) *wire.Element {
	c.T.Helper()
	id := c.NextID()
	c.SendRaw(strings.Replace(format, "%s", id, 1))
	return c.Await("answer to "+id, func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
}

// sync waits until the server has processed everything the client sent
// (a ping's answer comes after), and returns what arrived before it.
func sync(c *servertest.Client) []*wire.Element {
	c.T.Helper()
	id := c.NextID()
	c.Send(`<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, id)
	var got []*wire.Element
	for {
		el := c.MustNext()
		if el.Name == "iq" && el.ID() == id {
			return got
		}
		got = append(got, el)
	}
}

func stanzaID(el *wire.Element, by string) string {
	for _, c := range el.ChildrenNamed("stanza-id", mam.NSSID) {
		if c.Attr("by") == by {
			return c.Attr("id")
		}
	}
	return ""
}

func countStanzaIDs(el *wire.Element) int { return len(el.ChildrenNamed("stanza-id", mam.NSSID)) }

// page is one query's answer.
type page struct {
	results []*wire.Element // <result/> elements, in arrival order
	fin     *wire.Element
	errCond string
}

func (p page) ids() []string {
	var out []string
	for _, r := range p.results {
		out = append(out, r.Attr("id"))
	}
	return out
}

func (p page) bodies() []string {
	var out []string
	for _, r := range p.results {
		out = append(out, inner(r).ChildText("body", ""))
	}
	return out
}

func inner(result *wire.Element) *wire.Element {
	return result.Child("forwarded", wire.NSForward).Child("message", "")
}

func (p page) rsm(name string) string {
	return p.fin.Child("set", mam.NSRSM).ChildText(name, "")
}

// query sends a MAM query (form fields and RSM as XML) and collects the
// results and the fin.
func query(c *servertest.Client, fields, rsm string, extra ...string) page {
	c.T.Helper()
	id := c.NextID()
	qid := "q" + id
	form := ""
	if fields != "" {
		form = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>` + fields + `</x>`
	}
	c.Send(`<iq type='set' id='%s'><query xmlns='urn:xmpp:mam:2' queryid='%s'>%s%s%s</query></iq>`, id, qid, form, rsm, strings.Join(extra, ""))
	var p page
	for {
		el := c.MustNext()
		if el.Name == "iq" && el.ID() == id {
			if el.Type() == "error" {
				p.errCond = el.Child("error", "").Children[0].Name
				return p
			}
			p.fin = el.Child("fin", mam.NS)
			if p.fin == nil {
				c.T.Fatalf("query answer without fin: %s", el)
			}
			return p
		}
		if r := el.Child("result", mam.NS); el.Name == "message" && r != nil && r.Attr("queryid") == qid {
			if r.Child("forwarded", wire.NSForward).Child("delay", wire.NSDelay) == nil {
				c.T.Fatalf("result without delay: %s", el)
			}
			p.results = append(p.results, r)
		}
	}
}

func chat(c *servertest.Client, to, body string, extra ...string) {
	c.Send(`<message type='chat' to='%s' id='m-%s'><body>%s</body>%s</message>`, to, body, body, strings.Join(extra, ""))
}

func TestArchiveBothAccountsWithLiveIDs(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "phone", true)
	alice2 := login(t, n, "alice", "laptop", true)
	iq(alice2, `<iq type='set' id='%s'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	bob := login(t, n, "bob", "pc", true)

	// A client may not bring stanza ids of our domain (XEP-0359 §4): a
	// forged one for bob's archive must not reach bob.
	chat(alice, "bob@localhost", "hello", `<origin-id xmlns='urn:xmpp:sid:0' id='o-1'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='forged'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='forged'/>`)
	live := bob.Await("alice's message", func(el *wire.Element) bool { return el.Name == "message" })
	bobID := stanzaID(live, "bob@localhost")
	if bobID == "" || bobID == "forged" || countStanzaIDs(live) != 2 {
		t.Fatalf("bob's live copy: %s; want bob's archive id (not the forged one) and alice's", live)
	}
	if live.Child("origin-id", mam.NSSID) == nil {
		t.Fatalf("origin-id lost: %s", live)
	}
	carbon := alice2.Await("sent carbon", func(el *wire.Element) bool { return el.Child("sent", wire.NSCarbons) != nil })
	fwd := carbon.Child("sent", wire.NSCarbons).Child("forwarded", wire.NSForward).Child("message", "")
	aliceID := stanzaID(fwd, "alice@localhost")
	if aliceID == "" || aliceID == "forged" || countStanzaIDs(fwd) != 1 {
		t.Fatalf("sent carbon: %s; want alice's archive id only (not the forged ones)", carbon)
	}
	if stanzaID(live, "alice@localhost") != aliceID {
		t.Errorf("bob's copy carries alice's id %q, her carbon %q", stanzaID(live, "alice@localhost"), aliceID)
	}

	chat(bob, "alice@localhost", "hi back")
	back := alice.Await("bob's answer", func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == "hi back" })

	bp := query(bob, "", "")
	if got := bp.bodies(); len(got) != 2 || got[0] != "hello" || got[1] != "hi back" {
		t.Fatalf("bob's archive %v", got)
	}
	if bp.ids()[0] != bobID {
		t.Errorf("bob's archive id %s, live stanza-id %s", bp.ids()[0], bobID)
	}
	if bp.fin.Attr("complete") != "true" || bp.rsm("first") != bobID || bp.rsm("count") != "2" {
		t.Errorf("fin %s", bp.fin)
	}
	if n := countStanzaIDs(inner(bp.results[0])); n != 0 {
		t.Errorf("archived message carries %d stale stanza-ids", n)
	}
	ap := query(alice, "", "")
	if got := ap.ids(); len(got) != 2 || got[0] != aliceID || got[1] != stanzaID(back, "alice@localhost") {
		t.Fatalf("alice's archive ids %v; live ids %s, %s", got, aliceID, stanzaID(back, "alice@localhost"))
	}
	// Carol has nothing; another account's archive is not readable.
	carol := login(t, n, "carol", "x", true)
	if p := query(carol, "", ""); len(p.results) != 0 || p.fin.Attr("complete") != "true" {
		t.Errorf("carol's archive: %v", p.ids())
	}
	if el := iq(carol, `<iq type='set' id='%s' to='alice@localhost'><query xmlns='urn:xmpp:mam:2'/></iq>`); el.Type() != "error" || el.Child("error", "").Children[0].Name != "forbidden" {
		t.Errorf("reading another account's archive: %s", el)
	}
}

func TestWhatIsArchived(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	bob := login(t, n, "bob", "b", true)
	for _, m := range []string{
		`<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
		`<message to='bob@localhost' type='headline'><body>news</body></message>`,
		`<message to='bob@localhost' type='chat'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>`,
		`<message to='bob@localhost' type='chat'><received xmlns='urn:xmpp:receipts' id='x'/></message>`,
		`<message to='bob@localhost' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>K</key><iv>I</iv></header></encrypted></message>`, // OMEMO key transport: never shown
		`<message to='bob@localhost' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><payload>AAA</payload></encrypted></message>`,
		`<message to='bob@localhost' type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>`,
		`<message to='bob@localhost' type='chat'><reactions xmlns='urn:xmpp:reactions:0' id='x'><reaction>👍</reaction></reactions></message>`,
		`<message to='bob@localhost'><body>normal</body></message>`,
	} {
		alice.Send(m)
	}
	sync(alice)
	sync(bob)
	p := query(bob, "", "")
	var kinds []string
	for _, r := range p.results {
		kinds = append(kinds, inner(r).Children[0].Name)
	}
	if got := strings.Join(kinds, ","); got != "encrypted,displayed,reactions,body" {
		t.Errorf("archived %s; want encrypted,displayed,reactions,body", got)
	}
}

func TestPagingAndFilters(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	bob := login(t, n, "bob", "b", true)
	carol := login(t, n, "carol", "c", true)
	start := time.Now().UTC()
	for i := range 25 {
		chat(alice, "bob@localhost", fmt.Sprint("m", i))
		if i%5 == 0 {
			chat(carol, "bob@localhost", fmt.Sprint("c", i))
		}
	}
	sync(alice)
	sync(carol)
	sync(bob)
	with := `<field var='with'><value>alice@localhost</value></field>`

	// The last page (RSM <before/>), then the one before it.
	last := query(bob, with, `<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>`)
	if got := last.bodies(); len(got) != 10 || got[0] != "m15" || got[9] != "m24" || last.fin.Attr("complete") == "true" {
		t.Fatalf("last page %v complete=%q", got, last.fin.Attr("complete"))
	}
	prev := query(bob, with, `<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before>`+last.rsm("first")+`</before></set>`)
	if got := prev.bodies(); len(got) != 10 || got[0] != "m5" || got[9] != "m14" {
		t.Fatalf("previous page %v", got)
	}
	first := query(bob, with, `<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before>`+prev.rsm("first")+`</before></set>`)
	if got := first.bodies(); len(got) != 5 || got[0] != "m0" || first.fin.Attr("complete") != "true" {
		t.Fatalf("first page %v complete=%q", got, first.fin.Attr("complete"))
	}
	// Forward with after, and the #extended after-id / before-id.
	fwd := query(bob, with, `<set xmlns='http://jabber.org/protocol/rsm'><max>3</max><after>`+prev.rsm("last")+`</after></set>`)
	if got := fwd.bodies(); strings.Join(got, ",") != "m15,m16,m17" {
		t.Errorf("after page %v", got)
	}
	between := query(bob, with+`<field var='after-id'><value>`+prev.rsm("first")+`</value></field><field var='before-id'><value>`+prev.rsm("last")+`</value></field>`, "")
	if got := between.bodies(); len(got) != 8 || got[0] != "m6" || got[7] != "m13" {
		t.Errorf("after-id/before-id %v", got)
	}
	// ids, flip-page, counts, time bounds.
	ids := query(bob, `<field var='ids'><value>`+last.rsm("last")+`</value><value>`+prev.rsm("first")+`</value></field>`, "")
	if got := ids.bodies(); strings.Join(got, ",") != "m5,m24" {
		t.Errorf("ids %v", got)
	}
	flip := query(bob, with, `<set xmlns='http://jabber.org/protocol/rsm'><max>3</max><before/></set>`, `<flip-page/>`)
	if got := flip.bodies(); strings.Join(got, ",") != "m24,m23,m22" {
		t.Errorf("flip-page %v", got)
	}
	count := query(bob, with, `<set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set>`)
	if len(count.results) != 0 || count.rsm("count") != "25" {
		t.Errorf("max 0: %d results, count %q", len(count.results), count.rsm("count"))
	}
	all := query(bob, `<field var='start'><value>`+start.Add(-time.Minute).Format(time.RFC3339)+`</value></field>`, "")
	if len(all.results) != 30 {
		t.Errorf("start bound: %d messages, want 30", len(all.results))
	}
	future := query(bob, `<field var='start'><value>`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`</value></field>`, "")
	if len(future.results) != 0 || future.fin.Attr("complete") != "true" {
		t.Errorf("start in the future: %d", len(future.results))
	}
	// Errors the XEP names.
	for name, c := range map[string]struct{ fields, rsm, want string }{
		"unknown after":   {"", `<set xmlns='http://jabber.org/protocol/rsm'><after>0000000000000001</after></set>`, "item-not-found"},
		"unknown ids":     {`<field var='ids'><value>0000000000000001</value></field>`, "", "item-not-found"},
		"bad time":        {`<field var='start'><value>yesterday</value></field>`, "", "bad-request"},
		"unknown field":   {`<field var='fulltext'><value>x</value></field>`, "", "feature-not-implemented"},
		"malformed after": {"", `<set xmlns='http://jabber.org/protocol/rsm'><after>zz</after></set>`, "item-not-found"},
	} {
		if p := query(bob, c.fields, c.rsm); p.errCond != c.want {
			t.Errorf("%s: error %q, want %q", name, p.errCond, c.want)
		}
	}
	// The form and the metadata.
	form := iq(bob, `<iq type='get' id='%s'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	if !strings.Contains(form.String(), `var="ids"`) || !strings.Contains(form.String(), `var="with"`) {
		t.Errorf("query form %s", form)
	}
	md := iq(bob, `<iq type='get' id='%s'><metadata xmlns='urn:xmpp:mam:2'/></iq>`).Child("metadata", mam.NS)
	if md == nil || md.Child("end", "").Attr("id") != all.ids()[29] || md.Child("start", "").Attr("id") != all.ids()[0] {
		t.Errorf("metadata %v", md)
	}
}

func TestPreferences(t *testing.T) {
	n := startNode(t, func(c *conf.Config) { c.MAM.Default = "roster" })
	alice := login(t, n, "alice", "a", true)
	bob := login(t, n, "bob", "b", true)
	got := iq(bob, `<iq type='get' id='%s'><prefs xmlns='urn:xmpp:mam:2'/></iq>`)
	if p := got.Child("prefs", mam.NS); p == nil || p.Attr("default") != "roster" {
		t.Fatalf("default prefs %s", got)
	}
	chat(alice, "bob@localhost", "not in roster")
	sync(alice)
	set := iq(bob, `<iq type='set' id='%s'><prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>alice@localhost</jid></always><never/></prefs></iq>`)
	if p := set.Child("prefs", mam.NS); p == nil || p.Attr("default") != "never" || p.Child("always", "").ChildText("jid", "") != "alice@localhost" {
		t.Fatalf("set prefs answer %s", set)
	}
	chat(alice, "bob@localhost", "always")
	sync(alice)
	if b := query(bob, "", "").bodies(); strings.Join(b, ",") != "always" {
		t.Errorf("bob's archive %v; want only the message after 'always'", b)
	}
	// Alice's own default is the server's (roster): bob is not in it.
	if b := query(alice, "", "").bodies(); len(b) != 0 {
		t.Errorf("alice's archive %v; want none (roster default)", b)
	}
	if el := iq(bob, `<iq type='set' id='%s'><prefs xmlns='urn:xmpp:mam:2' default='sometimes'/></iq>`); el.Type() != "error" {
		t.Errorf("bad default accepted: %s", el)
	}
}

// TestOfflineAfterCatchUp: messages that arrived while bob was offline are
// in his archive and his offline queue; a client that pages through the
// archive before its initial presence does not get them again from the
// queue, but does get what it did not page through.
func TestOfflineAfterCatchUp(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	for i := range 3 {
		chat(alice, "bob@localhost", fmt.Sprint("offline", i))
	}
	sync(alice)

	bob := login(t, n, "bob", "b", false)
	got := query(bob, "", `<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>`)
	if b := got.bodies(); strings.Join(b, ",") != "offline1,offline2" {
		t.Fatalf("catch-up %v", b)
	}
	bob.Send(`<presence/>`)
	var delivered []string
	for _, el := range sync(bob) {
		if el.Name == "message" && el.ChildText("body", "") != "" {
			delivered = append(delivered, el.ChildText("body", ""))
			if stanzaID(el, "bob@localhost") == "" {
				t.Errorf("offline copy without stanza-id: %s", el)
			}
		}
	}
	if strings.Join(delivered, ",") != "offline0" {
		t.Errorf("offline hand-over after catch-up delivered %v; want only offline0", delivered)
	}

	// A client that does not query first gets everything from offline storage.
	for i := range 2 {
		chat(alice, "carol@localhost", fmt.Sprint("c", i))
	}
	sync(alice)
	carol := login(t, n, "carol", "c", false)
	carol.Send(`<presence/>`)
	delivered = nil
	for _, el := range sync(carol) {
		if el.Name == "message" && el.ChildText("body", "") != "" {
			delivered = append(delivered, el.ChildText("body", ""))
		}
	}
	if strings.Join(delivered, ",") != "c0,c1" {
		t.Errorf("plain offline hand-over %v", delivered)
	}
}

func TestRetractionTombstone(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	bob := login(t, n, "bob", "b", true)
	chat(alice, "bob@localhost", "oops", `<origin-id xmlns='urn:xmpp:sid:0' id='orig-1'/>`)
	chat(alice, "bob@localhost", "keep", `<origin-id xmlns='urn:xmpp:sid:0' id='orig-2'/>`)
	sync(alice)
	// bob may not retract alice's message.
	bob.Send(`<message type='chat' to='alice@localhost'><retract xmlns='urn:xmpp:message-retract:1' id='orig-2'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>/me retracted</body></message>`)
	sync(bob)
	alice.Send(`<message type='chat' to='bob@localhost'><retract xmlns='urn:xmpp:message-retract:1' id='orig-1'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>/me retracted a message</body></message>`)
	sync(alice)
	sync(bob)
	for _, c := range []*servertest.Client{alice, bob} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			p := query(c, "", "")
			first := inner(p.results[0])
			if first.Child("retracted", mam.NSRetract) != nil {
				if first.ChildText("body", "") != "" {
					t.Errorf("tombstone keeps the body: %s", first)
				}
				if inner(p.results[1]).ChildText("body", "") != "keep" {
					t.Errorf("the message bob tried to retract was changed: %s", inner(p.results[1]))
				}
				break
			}
			if time.Now().After(deadline) {
				for _, r := range p.results {
					t.Logf("%s", inner(r))
				}
				t.Fatalf("no tombstone in %s's archive: %s", c.JID, first)
			}
			// The retraction is applied in the background; poll it.
			time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polling a background job's effect, bounded by the deadline
		}
	}
}

func TestAccountDeletionDeletesArchive(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	chat(alice, "bob@localhost", "bye")
	sync(alice)
	ctx := context.Background()
	a := n.Store().Archive(mam.Store)
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p, _ := a.Query(ctx, "bob@localhost", storage.ArchiveQuery{}); len(p.Entries) != 1 {
			return fmt.Errorf("bob's archive has %d entries, want 1", len(p.Entries))
		}
		return nil
	})
	if err := n.Store().DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if p, _ := a.Query(ctx, "bob@localhost", storage.ArchiveQuery{}); len(p.Entries) != 0 {
		t.Errorf("bob's archive has %d entries after his account was deleted", len(p.Entries))
	}
	if p, _ := a.Query(ctx, "alice@localhost", storage.ArchiveQuery{}); len(p.Entries) != 1 {
		t.Errorf("alice's archive has %d entries; her copy must stay", len(p.Entries))
	}
}

// TestNoArchiveForUnknownAccounts: a message to an account that does not
// exist is bounced, and is not kept for whoever registers the name later.
func TestNoArchiveForUnknownAccounts(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	chat(alice, "ghost@localhost", "anyone there?")
	alice.Await("the bounce", func(el *wire.Element) bool { return el.Name == "message" && el.Type() == "error" })
	query(alice, "", "") // flushes this node's archive writer
	// What another node archived for an old account of the name while it
	// was being deleted is gone when the name is taken again.
	if _, err := n.Store().Archive(mam.Store).Append(context.Background(), storage.ArchiveEntry{
		Owner: "ghost@localhost", With: "alice@localhost", Value: []byte("<message><body>left over</body></message>")}); err != nil {
		t.Fatal(err)
	}
	servertest.CreateUser(t, n, "ghost", "pw-ghost")
	ghost := login(t, n, "ghost", "g", true)
	if p := query(ghost, "", ""); len(p.results) != 0 {
		t.Errorf("a new account found %v in its archive, sent before it existed", p.bodies())
	}
}

// TestFederated: a message that arrives over s2s is archived by the
// recipient's server with its own stanza-id; a stanza-id the sending
// server put on it claiming the recipient's archive is removed, and the
// sender's own server archived its copy.
func TestFederated(t *testing.T) {
	a, b := servertest.RunFederatedPair(t, "a.test", "b.test")
	servertest.CreateUser(t, a, "alice", "pw-alice")
	servertest.CreateUser(t, b, "bob", "pw-bob")
	alice := servertest.DialAddr(t, a.Addr(server.ListenerC2S).String(), "a.test", false)
	t.Cleanup(alice.Close)
	alice.Login("alice", "pw-alice", "home")
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	t.Cleanup(bob.Close)
	bob.Login("bob", "pw-bob", "work")
	bob.Send(`<presence/>`)
	sync(bob)
	// Bob is online but not subscribed: a message to his bare JID still
	// reaches him. The forged id claims bob's archive from the other side.
	chat(alice, "bob@b.test", "over s2s", `<stanza-id xmlns='urn:xmpp:sid:0' by='bob@b.test' id='forged'/>`)
	live := bob.Await("the federated message", func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == "over s2s" })
	id := stanzaID(live, "bob@b.test")
	if id == "" || id == "forged" || stanzaID(live, "alice@a.test") == "" {
		t.Fatalf("federated copy %s; want bob's own archive id and alice's", live)
	}
	if p := query(bob, "", ""); len(p.results) != 1 || p.ids()[0] != id {
		t.Errorf("bob's archive %v, live id %s", p.ids(), id)
	}
	if p := query(alice, "", ""); strings.Join(p.bodies(), ",") != "over s2s" {
		t.Errorf("alice's archive %v", p.bodies())
	}
}

// TestRoomArchiveAPI is the API a group-chat service will use: one archive
// per room under the room's owner key, IDs stamped on the broadcast, and a
// MAM query to the room's JID answered with results from the room's JID.
func TestRoomArchiveAPI(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	p := mam.Lookup(n.Plugins())
	if p == nil {
		t.Fatal("the message archive is not running")
	}
	rooms := p.Rooms()
	ctx := context.Background()
	const owner, room = "conference.localhost/lobby", "lobby@conference.localhost"
	var ids []string
	for i := range 3 {
		msg := wire.New("message", "from", room+"/nick", "to", "alice@localhost/a", "type", "groupchat").
			Append(wire.New("body").SetText(fmt.Sprint("room line ", i)))
		id := rooms.Add(ctx, owner, "bob@localhost", msg, nil)
		if id == 0 {
			t.Fatal("Add refused")
		}
		mam.StampID(msg, room, id)
		if stanzaID(msg, room) != storage.FormatArchiveID(id) {
			t.Fatalf("StampID: %s", msg)
		}
		ids = append(ids, storage.FormatArchiveID(id))
	}
	iq := wire.New("iq", "type", "set", "id", "rq1", "from", alice.JID, "to", room).Append(
		wire.NewNS("query", mam.NS).SetAttr("queryid", "rq").Append(
			wire.NewNS("set", mam.NSRSM).Append(wire.New("max").SetText("2"), wire.New("before"))))
	fin, err := rooms.Query(ctx, owner, room, iq)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, el := range sync(alice) {
		if r := el.Child("result", mam.NS); r != nil && r.Attr("queryid") == "rq" {
			if el.From() != room {
				t.Errorf("result from %q, want the room", el.From())
			}
			got = append(got, r.Attr("id"))
		}
	}
	if strings.Join(got, ",") != ids[1]+","+ids[2] || fin.Attr("complete") == "true" {
		t.Errorf("room query sent %v (complete=%q); want %v", got, fin.Attr("complete"), ids[1:])
	}
	// Rooms stay out of the accounts' archives.
	if p := query(alice, "", ""); len(p.results) != 0 {
		t.Errorf("alice's archive has room lines: %v", p.bodies())
	}
}

// TestBlockedNotArchived: a message from a JID the recipient blocked is
// refused before the recipient's archive sees it.
func TestBlockedNotArchived(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	bob := login(t, n, "bob", "b", true)
	if el := iq(bob, `<iq type='set' id='%s'><block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block></iq>`); el.Type() != "result" {
		t.Fatalf("block: %s", el)
	}
	chat(alice, "bob@localhost", "let me in")
	alice.Await("the refusal", func(el *wire.Element) bool { return el.Name == "message" && el.Type() == "error" })
	if p := query(bob, "", ""); len(p.results) != 0 {
		t.Errorf("bob's archive keeps a blocked sender's message: %v", p.bodies())
	}
}

// TestReceivedCarbonCarriesArchiveID: the copy a recipient's other device
// gets as a carbon carries the same stanza-id as the message itself, the
// one the archive holds.
func TestReceivedCarbonCarriesArchiveID(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "a", true)
	pc := login(t, n, "bob", "pc", true)
	phone := login(t, n, "bob", "phone", true)
	iq(phone, `<iq type='set' id='%s'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	chat(alice, "bob@localhost/pc", "to the pc")
	live := pc.Await("the message", func(el *wire.Element) bool { return el.ChildText("body", "") == "to the pc" })
	carbon := phone.Await("the carbon", func(el *wire.Element) bool { return el.Child("received", wire.NSCarbons) != nil })
	inner := carbon.Child("received", wire.NSCarbons).Child("forwarded", wire.NSForward).Child("message", "")
	id := stanzaID(live, "bob@localhost")
	if id == "" || stanzaID(inner, "bob@localhost") != id {
		t.Fatalf("live id %q, carbon id %q", id, stanzaID(inner, "bob@localhost"))
	}
	if p := query(phone, "", ""); len(p.results) != 1 || p.ids()[0] != id {
		t.Errorf("archive ids %v, want [%s]", p.ids(), id)
	}
}
