package plugins_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// capsInfo is what the test clients answer to a caps query: they want
// tune notifications.
const capsInfo = `<query xmlns='http://jabber.org/protocol/disco#info' node='https://example.org/client#VER'><identity category='client' type='pc' name='test'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/tune+notify'/></query>`

// pepPeer is a logged-in client whose reader answers caps queries by
// itself and passes every pubsub event on, in arrival order.
type pepPeer struct {
	name    string
	c       *servertest.Client
	wmu     sync.Mutex
	events  chan string
	results chan *wire.Element // answers to the peer's IQs
	queries chan *wire.Element // caps queries a holding peer has not answered
	mu      sync.Mutex
	online  map[string]bool // full JIDs whose available presence arrived
}

// waitOnline waits until the peer has seen full's available presence.
func (p *pepPeer) waitOnline(t *testing.T, full string) {
	t.Helper()
	servertest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.online[full] {
			return fmt.Errorf("%s has not seen %s online", p.name, full)
		}
		return nil
	})
}

func newPEPPeer(t *testing.T, n *server.Node, user, resource, capsQuery string) *pepPeer {
	t.Helper()
	return startPEPPeer(t, n, user, resource, capsQuery, false)
}

// newHoldingPEPPeer is a peer that comes online without caps and whose
// reader passes the caps queries it gets on (queries) for the test to
// answer when it chooses.
func newHoldingPEPPeer(t *testing.T, n *server.Node, user, resource string) *pepPeer {
	t.Helper()
	return startPEPPeer(t, n, user, resource, "", true)
}

func startPEPPeer(t *testing.T, n *server.Node, user, resource, capsQuery string, hold bool) *pepPeer {
	t.Helper()
	ver := ""
	if capsQuery != "" {
		q, err := wire.Parse([]byte(capsQuery), wire.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		ver = pep.CapsHash(q)
	}
	c := servertest.Dial(t, n)
	c.Timeout = 3 * time.Minute // the reader idles between steps
	c.Login(user, "pw-"+user, resource)
	p := &pepPeer{name: user + "/" + resource, c: c, events: make(chan string, 100), results: make(chan *wire.Element, 10), online: map[string]bool{}}
	if hold {
		p.queries = make(chan *wire.Element, 10)
	}
	t.Cleanup(c.Close)
	var info *wire.Element
	if capsQuery != "" {
		var err error
		if info, err = wire.Parse([]byte(strings.ReplaceAll(capsQuery, "VER", ver)), wire.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			el, err := c.Next()
			if err != nil {
				close(p.events)
				return
			}
			switch {
			case el.Name == "iq" && el.Type() == "get" && el.Child("query", wire.NSDiscoInfo) != nil && p.queries != nil:
				p.queries <- el
			case el.Name == "iq" && el.Type() == "get" && el.Child("query", wire.NSDiscoInfo) != nil && info != nil:
				p.write(wire.New("iq", "type", "result", "id", el.ID(), "to", el.From()).Append(info.Copy()).String())
			case el.Name == "presence" && el.Type() == "":
				p.mu.Lock()
				p.online[el.From()] = true
				p.mu.Unlock()
			case el.Name == "iq" && (el.Type() == "result" || el.Type() == "error"):
				p.results <- el
			case el.Name == "message":
				if ev := el.Child("event", pep.NSEvent); ev != nil {
					p.events <- eventSummary(ev)
				}
			}
		}
	}()
	caps := ""
	if ver != "" {
		caps = `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' ver='` + ver + `'/>`
	}
	p.write(`<presence>` + caps + `</presence>`)
	return p
}

func (p *pepPeer) write(s string) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = p.c.Conn.Write([]byte(s))
}

// eventSummary is "publish ID", "retract ID", "purge" or "delete".
func eventSummary(ev *wire.Element) string {
	var parts []string
	for _, c := range ev.Children {
		switch c.Name {
		case "items":
			for _, it := range c.Children {
				if it.Name == "item" {
					parts = append(parts, "publish "+it.Attr("id"))
				} else {
					parts = append(parts, it.Name+" "+it.Attr("id"))
				}
			}
		default:
			parts = append(parts, c.Name)
		}
	}
	return strings.Join(parts, ",")
}

// expect reads the peer's next events and fails unless they are want,
// in order: a duplicate (a notification sent by two nodes) shows up
// before the next expected one, since one sender's stanzas to one
// session keep their order.
func (p *pepPeer) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got, ok := <-p.events:
			if !ok {
				t.Fatalf("%s: stream closed waiting for %q", p.name, w)
			}
			if got != w {
				t.Fatalf("%s: got event %q, want %q", p.name, got, w)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no event %q within 20s", p.name, w)
		}
	}
}

// twoNodes starts node-a and node-b, clustered on a fresh PostgreSQL and
// Hazelcast member (named after test), with the users (password
// "pw-NAME").
func twoNodes(t *testing.T, test string, users ...string) (a, b *server.Node) {
	t.Helper()
	return twoNodesWith(t, test, nil, users...)
}

// twoNodesWith is twoNodes with each node's configuration changed by
// mutate (given the node's name) first.
func twoNodesWith(t *testing.T, test string, mutate func(name string, cfg *conf.Config), users ...string) (a, b *server.Node) {
	t.Helper()
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-"+test+"-cluster")
	start := func(name string) (*server.Node, *hazelcast.Cluster) {
		cfg := servertest.DefaultConfig(t)
		if mutate != nil {
			mutate(name, cfg)
		}
		return servertest.RunClusterNode(t, cfg, servertest.ClusterOptions{
			DatabaseURL: pg.URL(), Member: member.Addr(), ClusterName: member.ClusterName,
			NodeName: name, Secret: test + "-test", Prefix: test + ".",
		})
	}
	a, ca := start("node-a")
	b, cb := start("node-b")
	servertest.WaitClustered(t, ca, cb)
	for _, u := range users {
		servertest.CreateUser(t, a, u, "pw-"+u)
	}
	return a, b
}

// TestPEPNotificationsInCluster: on two real nodes (PostgreSQL and
// Hazelcast), Juliet's notifications reach each of her own resources,
// each of Romeo's (implicit: presence and caps) and each of Tybalt's
// (an explicit subscription of his bare JID) exactly once, whichever
// node she publishes from; the last item goes out once when they come
// online and when Tybalt subscribes.
func TestPEPNotificationsInCluster(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t, "pep", "juliet", "romeo", "tybalt")
	roster := func(owner, contact, sub string) {
		_, _, _, _, err := a.Store().UpdateRosterItem(ctx, owner+"@localhost", contact+"@localhost", storage.RosterQuota{}, func(it storage.RosterItem, _ bool) (storage.RosterItem, bool, error) {
			it.Subscription, it.InRoster = sub, true
			return it, false, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	roster("juliet", "romeo", storage.SubBoth)
	roster("romeo", "juliet", storage.SubBoth)
	roster("juliet", "tybalt", storage.SubFrom)
	roster("tybalt", "juliet", storage.SubTo)
	// Romeo's client on b has caps of its own: Juliet's home (a) asks
	// it, and b, where the answer arrives, passes it on to a.
	otherInfo := strings.Replace(capsInfo, "<feature", "<feature var='urn:example:other'/><feature", 1)

	// Juliet publishes before anyone is online (an IQ needs no presence).
	c := servertest.Dial(t, a)
	t.Cleanup(c.Close)
	c.Login("juliet", "pw-juliet", "setup")
	publish := func(c *servertest.Client, id string) {
		t.Helper()
		el := iq(c, `<iq type='set' id='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/tune'><item id='`+id+`'><tune xmlns='http://jabber.org/protocol/tune'><title>`+id+`</title></tune></item></publish>`+
			`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#max_items'><value>max</value></field></x></publish-options></pubsub></iq>`)
		if el.Type() != "result" {
			t.Fatalf("publish %s: %s", id, el)
		}
	}
	publish(c, "t0")
	c.Close()

	// One resource of each on each node; Juliet's first (her home) is on a.
	julietA := newPEPPeer(t, a, "juliet", "a", capsInfo)
	julietB := newPEPPeer(t, b, "juliet", "b", capsInfo)
	romeoA := newPEPPeer(t, a, "romeo", "r1", capsInfo)
	romeoB := newPEPPeer(t, b, "romeo", "r2", otherInfo)
	tybaltA := newPEPPeer(t, a, "tybalt", "t1", "")
	tybaltB := newPEPPeer(t, b, "tybalt", "t2", "")
	implicit := []*pepPeer{julietA, julietB, romeoA, romeoB}
	everyone := append(slices.Clone(implicit), tybaltA, tybaltB)
	// The last item, once, to every client whose caps ask for tunes.
	for _, p := range implicit {
		p.expect(t, "publish t0")
	}
	// Tybalt subscribes his bare JID: the last item reaches both his
	// resources, once each (both available first: a headline to a bare
	// JID goes to the available resources).
	tybaltA.waitOnline(t, "tybalt@localhost/t2")
	iqOn(t, tybaltA, `<iq type='set' id='sub' to='juliet@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='http://jabber.org/protocol/tune' jid='tybalt@localhost'/></pubsub></iq>`)
	tybaltA.expect(t, "publish t0")
	tybaltB.expect(t, "publish t0")

	// Publishes and a retraction from either node reach everyone once.
	// Each step waits for everyone: one node's notifications to a
	// session keep their order, so a copy sent twice shows up in place
	// of the next step's event.
	steps := []struct {
		from  *pepPeer
		xml   string
		event string
	}{
		{julietB, pubIQ("t1"), "publish t1"},
		{julietA, pubIQ("t2"), "publish t2"},
		{julietB, `<iq type='set' id='r'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='http://jabber.org/protocol/tune' notify='true'><item id='t1'/></retract></pubsub></iq>`, "retract t1"},
		{julietA, pubIQ("t3"), "publish t3"},
		{julietB, pubIQ("end"), "publish end"},
	}
	for _, st := range steps {
		iqOn(t, st.from, st.xml)
		for _, p := range everyone {
			p.expect(t, st.event)
		}
	}
}

func pubIQ(id string) string {
	return `<iq type='set' id='p-` + id + `'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/tune'><item id='` + id + `'><tune xmlns='http://jabber.org/protocol/tune'><title>` + id + `</title></tune></item></publish></pubsub></iq>`
}

// iqOn sends an IQ from a peer and waits for its result.
func iqOn(t *testing.T, p *pepPeer, xml string) *wire.Element {
	t.Helper()
	p.write(xml)
	select {
	case el := <-p.results:
		if el.Type() != "result" {
			t.Fatalf("%s: %s\nanswered %s", p.name, xml, el)
		}
		return el
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no answer to %s", p.name, xml)
	}
	return nil
}
