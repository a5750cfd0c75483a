package pep_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// The tests in this file drive one contact's caps change and one
// publish of the owner in every order the network allows, one step at a
// time, and check that the contact gets each item exactly once
// (XEP-0163 §4.3.2, §4.3.3): the last item of a node its new caps ask
// for, and the notification of the publish.
//
// Romeo's client first asks for geolocation events only (and has had
// Juliet's last one, g1), then adds tunes: his new presence (step
// "presence") makes the plugin ask his client for the new version,
// whose answer (step "answer") resolves it; Juliet publishes tune t2
// (step "publish") over the t1 she published before.

const geoloc = "http://jabber.org/protocol/geoloc"

// geoInfo and tuneInfo are what Romeo's client answers before and after
// the change; their caps versions are their hashes.
const (
	geoInfo  = `<query xmlns='http://jabber.org/protocol/disco#info' node='https://example.org/client#VER'><identity category='client' type='pc' name='Orchard'/><feature var='http://jabber.org/protocol/geoloc+notify'/></query>`
	tuneInfo = `<query xmlns='http://jabber.org/protocol/disco#info' node='https://example.org/client#VER'><identity category='client' type='pc' name='Orchard'/><feature var='http://jabber.org/protocol/geoloc+notify'/><feature var='http://jabber.org/protocol/tune+notify'/></query>`
)

var queryIDs = regexp.MustCompile(`id="(pepcaps-[0-9a-f-]+)"`)

// summary names a routed stanza: "query" for a caps query, "NODE ITEM"
// for a notification to Romeo's client, the stanza itself otherwise.
func summary(s string) string {
	if strings.Contains(s, "disco#info") {
		return "query"
	}
	if m := regexp.MustCompile(`^<message [^>]*to="romeo@example\.com/orchard".*<items node="http://jabber\.org/protocol/([a-z]+)"><item id="([^"]+)"`).FindStringSubmatch(s); m != nil {
		return m[1] + " " + m[2]
	}
	return s
}

// romeoCaps is Juliet's account with a tune item t1 and a geoloc item g1,
// and Romeo (subscription both) online with caps asking for geoloc, which
// brought him g1.
type romeoCaps struct {
	t    *testing.T
	h    *plugintest.Host
	p    *pep.Plugin
	m    *plugins.Manager
	last string // the caps query in flight
}

func newRomeoCaps(t *testing.T, h *plugintest.Host) *romeoCaps {
	t.Helper()
	r := &romeoCaps{t: t, h: h, p: pep.New()}
	r.m = h.Start(t, r.p)
	subscribe(t, h, juliet, romeo, storage.SubBoth)
	r.publishID("g1", geoloc)
	r.publishID("t1", tune)
	r.presence(geoInfo)
	r.answer(geoInfo)
	if got := summary(waitRouted(t, h, 1)[0]); got != "geoloc g1" {
		t.Fatalf("first presence brought %q, want geoloc g1", got)
	}
	return r
}

func (r *romeoCaps) publishID(id, node string) {
	r.t.Helper()
	got := r.h.IQ(r.t, r.m, plugins.ToAccount, `<iq type='set' id='p-`+id+`' from='juliet@example.com/balcony'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+node+`'><item id='`+id+`'><x xmlns='urn:example:payload'/></item></publish></pubsub></iq>`)
	if !strings.Contains(got, `type="result"`) {
		r.t.Fatalf("publish %s: %s", id, got)
	}
}

// presence delivers Romeo's available presence with the caps of info to
// Juliet's session and waits for the caps query it causes.
func (r *romeoCaps) presence(info string) {
	r.t.Helper()
	ver := pep.CapsHash(plugintest.Parse(r.t, info))
	el := plugintest.Parse(r.t, `<presence from='romeo@example.com/orchard' to='juliet@example.com/balcony'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='`+ver+`'/></presence>`)
	if v, err := r.m.Intercept(context.Background(), plugins.PointDeliver, &plugins.Stanza{El: el, Session: juliet + "/balcony"}); err != nil || v != plugins.Continue {
		r.t.Fatalf("presence intercepted: %v %v", v, err)
	}
	q := waitRouted(r.t, r.h, 1)[0]
	if summary(q) != "query" || !strings.Contains(q, ver) {
		r.t.Fatalf("presence caused %s, want a caps query for %s", q, ver)
	}
	r.last = queryIDs.FindStringSubmatch(q)[1]
}

// answer is Romeo's client answering the query in flight with info.
func (r *romeoCaps) answer(info string) {
	r.t.Helper()
	ver := pep.CapsHash(plugintest.Parse(r.t, info))
	el := plugintest.Parse(r.t, `<iq type='result' id='`+r.last+`' from='romeo@example.com/orchard' to='juliet@example.com'>`+strings.ReplaceAll(info, "VER", ver)+`</iq>`)
	if v, err := r.m.Intercept(context.Background(), plugins.PointInbound, &plugins.Stanza{El: el, Session: romeo + "/orchard"}); err != nil || v != plugins.Handled {
		r.t.Fatalf("answer not handled: %v %v", v, err)
	}
}

// expect checks what was routed since the last check: want, in any
// order (each step's stanzas come from background work), waiting for
// them; nothing when want is empty.
func (r *romeoCaps) expect(step string, want ...string) []string {
	r.t.Helper()
	var raw []string
	if len(want) == 0 {
		raw = r.h.Routed()
	} else {
		raw = waitRouted(r.t, r.h, len(want))
	}
	got := make([]string, len(raw))
	for i := range raw {
		got[i] = summary(raw[i])
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		r.t.Fatalf("after %s: routed %q, want %q", step, got, want)
	}
	return raw
}

// done waits for the plugin's background work and checks that nothing
// more was sent: no second copy of an item, no second query.
func (r *romeoCaps) done() {
	r.t.Helper()
	pep.Idle(r.p)
	if rest := r.h.Routed(); len(rest) != 0 {
		for i := range rest {
			rest[i] = summary(rest[i])
		}
		r.t.Fatalf("sent after the last step: %q", rest)
	}
}

// TestCapsChangeAndPublishInEveryOrder: whatever the order of Romeo's
// new caps, their resolution and Juliet's publish, Romeo gets t2 once
// and nothing he had again (before, a publish that found his new caps
// unresolved queued a second wait for them, which resent every node he
// wanted, g1 included, and t2 twice).
func TestCapsChangeAndPublishInEveryOrder(t *testing.T) {
	cases := []struct {
		name  string
		steps []string
		want  [][]string // routed after each step
	}{
		{"publish, presence, answer", []string{"publish", "presence", "answer"},
			[][]string{{}, {"query"}, {"tune t2"}}},
		{"presence, publish, answer", []string{"presence", "publish", "answer"},
			[][]string{{"query"}, {}, {"tune t2"}}},
		{"presence, answer, publish", []string{"presence", "answer", "publish"},
			[][]string{{"query"}, {"tune t1"}, {"tune t2"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRomeoCaps(t, plugintest.NewHost(t))
			for i, step := range c.steps {
				switch step {
				case "publish":
					r.publishID("t2", tune)
				case "presence":
					ver := pep.CapsHash(plugintest.Parse(t, tuneInfo))
					el := plugintest.Parse(t, `<presence from='romeo@example.com/orchard' to='juliet@example.com/balcony'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='`+ver+`'/></presence>`)
					r.m.Intercept(context.Background(), plugins.PointDeliver, &plugins.Stanza{El: el, Session: juliet + "/balcony"})
				case "answer":
					r.answer(tuneInfo)
				}
				raw := r.expect(step, c.want[i]...)
				if step == "presence" {
					r.last = queryIDs.FindStringSubmatch(raw[0])[1]
				}
			}
			r.done()
		})
	}
}

// TestLastItemReadRacesPublish: Romeo's new caps are resolved, and the
// last tune is being read for him when Juliet's publish of t2 reaches
// him: the read then finds t2, which he already has. Before, he got it
// twice: once as the notification, once as the last item.
func TestLastItemReadRacesPublish(t *testing.T) {
	h := plugintest.NewHost(t)
	gate := &readGate{coll: tune, reached: make(chan struct{}), release: make(chan struct{})}
	h.St = gatedStore{Store: h.St, gate: gate}
	r := newRomeoCaps(t, h)
	gate.arm()
	r.presence(tuneInfo)
	r.answer(tuneInfo)
	select {
	case <-gate.reached: // the last tune is being read for Romeo
	case <-time.After(5 * time.Second):
		t.Fatal("the last item was never read")
	}
	r.publishID("t2", tune)
	r.expect("publish", "tune t2")
	close(gate.release)
	r.done()
}

// readGate holds the first read of a node's items once armed, until
// released.
type readGate struct {
	coll     string
	mu       sync.Mutex
	armed    bool
	reached  chan struct{}
	release  chan struct{}
	consumed bool
}

func (g *readGate) arm() {
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
}

func (g *readGate) wait(coll string) {
	g.mu.Lock()
	hold := g.armed && !g.consumed && coll == g.coll
	if hold {
		g.consumed = true
	}
	g.mu.Unlock()
	if hold {
		close(g.reached)
		<-g.release
	}
}

// gatedStore is a store whose PEP item lists pass a readGate.
type gatedStore struct {
	storage.Store
	gate *readGate
}

func (s gatedStore) Map(name string) storage.Map {
	m := s.Store.Map(name)
	if name == pep.StoreItems {
		return gatedMap{Map: m, gate: s.gate}
	}
	return m
}

type gatedMap struct {
	storage.Map
	gate *readGate
}

func (m gatedMap) List(ctx context.Context, owner, coll string, q storage.MapQuery) ([]storage.MapItem, error) {
	m.gate.wait(coll)
	return m.Map.List(ctx, owner, coll, q)
}
