package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	avcluster "github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/server/clustertest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

const (
	domain      = "localhost"
	secret      = "clustertest-secret"
	hzName      = "aviary-clustertest"
	adminUser   = "admin"
	adminPass   = "admin-pw"
	userPass    = "pw"
	nodeTimeout = 20 * time.Second
)

// nodeYAML is every node's config file: timing knobs the flags do not
// cover. Heartbeat and TTL stay at their defaults (2s, 10s) so the
// SIGKILL test shows the production settings meet the 15s promise.
const nodeYAML = `admin:
  admins: ["admin@localhost"]
c2s:
  sasl_failure_delay: 1ms
cluster:
  startup_retries: 3
  startup_retry_interval: 1s
  operation_timeout: 3s
database:
  timeout: 2s
`

// The shared fixture: one PostgreSQL, one Hazelcast member, the binary,
// and a three-node cluster, all started on first use and torn down by
// TestMain. Tests run one at a time; a test that disturbs the cluster
// restores it (and fixture() checks health before handing it out).
var fx struct {
	mu  sync.Mutex
	dir string
	bin string
	pg  *pgtest.Server
	hz  *hztest.Member
	c   *cluster
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(placementChildEnv); spec != "" {
		os.Exit(runPlacementChild(spec)) // this binary is a node of a test
	}
	code := m.Run()
	if fx.c != nil {
		for _, n := range fx.c.nodes {
			n.Kill()
		}
		fx.c.store.Close()
	}
	hztest.StopShared()
	if fx.pg != nil {
		fx.pg.Destroy()
	}
	if fx.dir != "" {
		os.RemoveAll(fx.dir)
	}
	os.Exit(code)
}

// binary builds aviary once per test binary.
func binary(t testing.TB) string {
	t.Helper()
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if fx.bin != "" {
		return fx.bin
	}
	if fx.dir == "" {
		d, err := os.MkdirTemp("", "clustertest-")
		if err != nil {
			t.Fatal(err)
		}
		fx.dir = d
	}
	bin, err := clustertest.Build(fx.dir)
	if err != nil {
		t.Fatal(err)
	}
	fx.bin = bin
	return bin
}

type cluster struct {
	db     string
	hz     *hztest.Member
	nodes  []*clustertest.Node
	store  *postgres.Store
	users  *auth.Users
	admins []*clustertest.Admin
	n      atomic.Int64
}

// newNodes creates (without starting) count nodes on db.
func newNodes(t testing.TB, prefix string, count int, db string, hz *hztest.Member) []*clustertest.Node {
	t.Helper()
	bin := binary(t)
	var out []*clustertest.Node
	for i := range count {
		name := fmt.Sprintf("%s%d", prefix, i+1)
		dir := filepath.Join(fx.dir, name)
		cfg := clustertest.NodeConfig{
			Bin: bin, Name: name, Database: db, Secret: secret, Dir: dir, ExtraYAML: nodeYAML,
		}
		if hz != nil {
			cfg.Hazelcast, cfg.HazelcastName = []string{hz.Addr()}, hz.ClusterName
		}
		n, err := clustertest.NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// startAll starts nodes concurrently (they run migrations under an
// advisory lock at the same moment, as a real cluster would).
func startAll(t testing.TB, nodes ...*clustertest.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.Start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// fixture returns the shared three-node cluster, healthy: every process
// running, the switch on, every node clustered and seeing three members.
func fixture(t testing.TB) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and three aviary processes")
	}
	fx.mu.Lock()
	c := fx.c
	fx.mu.Unlock()
	if c == nil {
		c = startCluster(t)
		fx.mu.Lock()
		fx.c = c
		fx.mu.Unlock()
	}
	c.heal(t)
	t.Cleanup(func() {
		if t.Failed() {
			// First, in case the output is cut: a Hazelcast member
			// that died under a test explains most of what follows.
			t.Logf("---- hazelcast member running at the end: %v", c.hz.Running())
			for _, n := range c.nodes {
				t.Logf("---- %s log tail:\n%s", n.Cfg.Name, n.LogTail(60))
			}
		}
	})
	return c
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	pg := pgtest.Shared(t)
	fx.pg = pg
	hz := hztest.Shared(t, hzName)
	fx.hz = hz
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := pg.URL()
	st, err := postgres.Open(ctx, db, postgres.Options{Logger: servertest.TestLogger()})
	if err != nil {
		t.Fatal(err)
	}
	def := conf.Default()
	c := &cluster{db: db, hz: hz, store: st,
		users: &auth.Users{Store: st, Domain: domain, Iterations: def.C2S.SCRAMIterations}}
	if err := c.users.CreateUser(ctx, adminUser, adminPass); err != nil {
		t.Fatal(err)
	}
	c.nodes = newNodes(t, "node", 3, db, hz)
	startAll(t, c.nodes...)
	a, err := clustertest.AdminLogin(ctx, c.nodes[0].AdminURL(), adminUser+"@"+domain, adminPass)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		c.admins = append(c.admins, a.On(n.AdminURL()))
	}
	return c
}

// heal brings the cluster back to health after a disturbing test.
func (c *cluster) heal(t testing.TB) {
	t.Helper()
	if !c.hz.Running() {
		if err := c.hz.RestartErr(1); err != nil {
			t.Fatal(err)
		}
	}
	var down []*clustertest.Node
	for _, n := range c.nodes {
		if !n.Running() {
			down = append(down, n)
		}
	}
	startAll(t, down...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if on, err := avcluster.ReadSwitch(ctx, c.store); err != nil || !on {
		if err := c.admins[0].Do(ctx, "POST", "/api/cluster/enable", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	c.waitClustered(t, 60*time.Second, true)
}

// waitClustered polls every node's /api/overview until each reports
// Clustered()==want (and, when want, three healthy members).
func (c *cluster) waitClustered(t testing.TB, total time.Duration, want bool) {
	t.Helper()
	servertest.CheckFor(t, total, 50*time.Millisecond, func() error {
		for i, a := range c.admins {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			o, err := a.Overview(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("node %d: %w", i+1, err)
			}
			if o.Clustered != want || (want && o.Detached) {
				return fmt.Errorf("node %d: clustered %v (detached %v), want %v", i+1, o.Clustered, o.Detached, want)
			}
			if want && len(o.Nodes) != len(c.nodes) {
				return fmt.Errorf("node %d sees %d members: %+v", i+1, len(o.Nodes), o.Nodes)
			}
		}
		return nil
	})
}

// waitDetached polls every node's /api/overview until each reports
// detached==want (Hazelcast away, routing on what it knew) while still
// clustered.
func (c *cluster) waitDetached(t testing.TB, total time.Duration, want bool) {
	t.Helper()
	servertest.CheckFor(t, total, 50*time.Millisecond, func() error {
		for i, a := range c.admins {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			o, err := a.Overview(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("node %d: %w", i+1, err)
			}
			if o.Detached != want || !o.Clustered {
				return fmt.Errorf("node %d: detached %v, clustered %v; want detached %v, clustered", i+1, o.Detached, o.Clustered, want)
			}
		}
		return nil
	})
}

// user creates a fresh account and returns its local part.
func (c *cluster) user(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d", prefix, c.n.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.users.CreateUser(ctx, name, userPass); err != nil {
		t.Fatal(err)
	}
	return name
}

// login connects user to node i (0-based), binds resource and sends
// initial presence with priority prio (prio < 0: no presence at all).
func login(t testing.TB, n *clustertest.Node, user, resource string, prio int) *servertest.Client {
	t.Helper()
	cl := servertest.DialAddr(t, n.C2SAddr(), domain, false)
	cl.Login(user, userPass, resource)
	if prio >= 0 {
		cl.Send("<presence><priority>%d</priority></presence>", prio)
	}
	return cl
}

func bare(u string) string { return u + "@" + domain }

// isMsg matches a message whose body is body.
func isMsg(body string) func(*wire.Element) bool {
	return func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == body }
}

// isPresence matches presence of type typ ("" for available) from the
// bare JID from (any resource).
func isPresence(from, typ string) func(*wire.Element) bool {
	return func(el *wire.Element) bool {
		return el.Name == "presence" && wire.BareJID(el.From()) == from && el.Type() == typ
	}
}

// befriend makes a and b subscribe to each other's presence (both
// online and available). Each ends up having seen the other's available
// presence; a also waits for the presence of bOthers, b's user's other
// full JIDs. Waiting for presence is also how a test knows a's node has
// learnt b's routes: a client only learns a full JID from presence.
func befriend(t testing.TB, a, b *servertest.Client, bOthers ...string) {
	t.Helper()
	awaitRoute(t, a, b)
	awaitRoute(t, b, a)
	ab, bb := wire.BareJID(a.JID), wire.BareJID(b.JID)
	a.Send("<presence to='%s' type='subscribe'/>", bb)
	b.Await("subscribe from "+ab, isPresence(ab, "subscribe"))
	b.Send("<presence to='%s' type='subscribed'/>", ab)
	awaitPresences(t, a, append([]string{b.JID}, bOthers...)...)
	b.Send("<presence to='%s' type='subscribe'/>", ab)
	a.Await("subscribe from "+bb, isPresence(bb, "subscribe"))
	a.Send("<presence to='%s' type='subscribed'/>", bb)
	awaitPresences(t, b, a.JID)
}

// awaitRoute repeats an IQ from one client to the other's full JID until
// it arrives. A full JID bound a moment ago on another node may not be in
// the sender's node's route replica yet (README "Known limits"); a
// subscription request sent then finds the contact offline and waits for
// the contact's next login (CI hit it once). An IQ to a full JID without a
// route bounces instead of being stored, so the probes leave nothing
// behind.
func awaitRoute(t testing.TB, from, to *servertest.Client) {
	t.Helper()
	repeatUntil(from, func(k int) string {
		return fmt.Sprintf("<iq type='get' to='%s' id='route%d'><query xmlns='urn:example:clustertest'/></iq>", to.JID, k)
	}, func() {
		to.Await("route probe from "+from.JID, func(el *wire.Element) bool {
			return el.Name == "iq" && el.From() == from.JID && strings.HasPrefix(el.ID(), "route")
		})
	})
}

// awaitAvailable waits until from's node routes to's bare JID to to: a
// message to the bare JID goes to the available resources the sending
// node knows of, and to's availability reaches the other nodes after its
// route does (awaitRoute is not enough). Probes are headlines, which are
// neither stored nor kept; every available resource of the account gets
// them, and later Awaits skip them.
func awaitAvailable(t testing.TB, from, to *servertest.Client) {
	t.Helper()
	repeatUntil(from, func(k int) string {
		return fmt.Sprintf("<message to='%s' type='headline' id='avail%d'><body>availability probe</body></message>", wire.BareJID(to.JID), k)
	}, func() {
		to.Await("availability probe from "+from.JID, func(el *wire.Element) bool {
			return el.Name == "message" && el.From() == from.JID && strings.HasPrefix(el.ID(), "avail")
		})
	})
}

// awaitPresences reads cl's stream until available presence has come
// from every full JID in fulls, in any order.
func awaitPresences(t testing.TB, cl *servertest.Client, fulls ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, f := range fulls {
		want[f] = true
	}
	for len(want) > 0 {
		cl.Await(fmt.Sprintf("available presence from %v", want), func(el *wire.Element) bool {
			if el.Name == "presence" && el.Type() == "" && want[el.From()] {
				delete(want, el.From())
				return true
			}
			return false
		})
	}
}

// send sends a chat message.
func send(c *servertest.Client, to, body string) {
	c.T.Helper()
	c.Send("<message to='%s' type='chat' id='%s'><body>%s</body></message>", to, c.NextID(), body)
}

// offlineCount polls until owner has want offline messages in the store.
func (c *cluster) waitOffline(t testing.TB, owner string, want int) {
	t.Helper()
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := c.store.CountOffline(ctx, owner)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("%s has %d offline messages, want %d", owner, n, want)
		}
		return nil
	})
}

// delayed reports whether a message carries a XEP-0203 delay stamp.
func delayed(el *wire.Element) bool { return el.Child("delay", wire.NSDelay) != nil }

// waitNoSession polls the admin API (which asks every node) until no
// session of the bare JID is left anywhere: a client's close is
// asynchronous, and a message routed to a closing session is lost with
// it, as on any XMPP server without stream management.
func (c *cluster) waitNoSession(t testing.TB, bareJID string) {
	t.Helper()
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ss, err := c.admins[0].Sessions(ctx)
		if err != nil {
			return err
		}
		for _, s := range ss {
			if wire.BareJID(s.JID) == bareJID {
				return fmt.Errorf("%s still has a session on %s", bareJID, s.Node)
			}
		}
		return nil
	})
}

// awaitMessages reads cl's stream until a message with each body has
// arrived, in any order, and returns them by body.
func awaitMessages(t testing.TB, cl *servertest.Client, bodies ...string) map[string]*wire.Element {
	t.Helper()
	want := map[string]bool{}
	for _, b := range bodies {
		want[b] = true
	}
	got := map[string]*wire.Element{}
	for len(got) < len(want) {
		cl.Await(fmt.Sprintf("messages %v", bodies), func(el *wire.Element) bool {
			b := el.ChildText("body", "")
			if el.Name == "message" && want[b] && got[b] == nil {
				got[b] = el
				return true
			}
			return false
		})
	}
	return got
}

// awaitOffline waits for messages with these bodies, each with a delay
// stamp (delivered from offline storage).
func awaitOffline(t testing.TB, cl *servertest.Client, bodies ...string) {
	t.Helper()
	for b, m := range awaitMessages(t, cl, bodies...) {
		if !delayed(m) {
			t.Errorf("%q without a delay stamp: %s", b, m)
		}
	}
}
