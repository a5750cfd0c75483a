package blocking_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/blocking"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// checkFor polls cond for up to 10s (testutil.CheckFor for a condition).
func checkFor(t testing.TB, cond func() bool) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return errors.New("condition not met")
	})
}

// frozenStore is a store whose block list calls hang until their context
// ends while it is frozen, as with a PostgreSQL that stopped answering
// (the real store then fails after database.timeout; the plugin's
// reads here carry no deadline, so reads fail at once instead). While
// gate is set, BlockList waits for it to close before reading.
type frozenStore struct {
	storage.Store
	mu     sync.Mutex
	frozen bool
	gate   chan struct{}
	reads  int
}

var errFrozen = fmt.Errorf("frozen store: %w", context.DeadlineExceeded)

func (s *frozenStore) state() (bool, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.frozen, s.gate
}

func (s *frozenStore) freeze(v bool) {
	s.mu.Lock()
	s.frozen = v
	s.mu.Unlock()
}

func (s *frozenStore) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func (s *frozenStore) BlockList(ctx context.Context, owner string) ([]string, error) {
	frozen, gate := s.state()
	if gate != nil {
		<-gate
	}
	if frozen {
		return nil, errFrozen
	}
	return s.Store.BlockList(ctx, owner)
}

func (s *frozenStore) Block(ctx context.Context, owner string, jids []string) error {
	if f, _ := s.state(); f {
		return errFrozen
	}
	return s.Store.Block(ctx, owner, jids)
}

func (s *frozenStore) Unblock(ctx context.Context, owner string, jids []string) error {
	if f, _ := s.state(); f {
		return errFrozen
	}
	return s.Store.Unblock(ctx, owner, jids)
}

const (
	juliet  = "juliet@example.com"
	romeo   = "romeo@example.com"
	message = `<message from='romeo@example.com/a' to='juliet@example.com' id='m' type='chat'><body>hi</body></message>`
)

func deliver(t testing.TB, m *plugins.Manager, xml, session string) plugins.Verdict {
	t.Helper()
	v, _ := m.Intercept(context.Background(), plugins.PointDeliver, &plugins.Stanza{El: plugintest.Parse(t, xml), Session: session})
	return v
}

// twoNodes starts the plugin on two joined fake nodes over one store, n2
// reaching it through fs, and binds juliet's session on n2 (which starts
// reading her list).
func twoNodes(t *testing.T, fs *frozenStore) (h1, h2 *plugintest.Host, m1, m2 *plugins.Manager) {
	t.Helper()
	h1 = plugintest.NewHost(t)
	h1.Cfg.Cluster.NodeName = "n1"
	fs.Store = h1.St
	h2 = plugintest.NewHostWithStore(t, fs)
	h2.Cfg.Cluster.NodeName = "n2"
	plugintest.Join(h1, h2)
	p1, p2 := blocking.New(), blocking.New()
	// What waits for an unknown list here waits briefly: the tests freeze
	// the store to show what a node does without it.
	p1.SetOwnListWait(50 * time.Millisecond)
	p2.SetOwnListWait(50 * time.Millisecond)
	m1 = h1.Start(t, p1)
	m2 = h2.Start(t, p2)
	if err := h2.Bus.Run(context.Background(), plugins.EventSessionBound, &plugins.SessionEvent{JID: juliet + "/n2"}); err != nil {
		t.Fatal(err)
	}
	return h1, h2, m1, m2
}

// TestBlockListAcrossNodes: two nodes over one store. A change made on
// one applies on the other before the block IQ is answered, without the
// other reading the store again.
func TestBlockListAcrossNodes(t *testing.T) {
	ctx := context.Background()
	fs := &frozenStore{}
	h1, h2, m1, m2 := twoNodes(t, fs)
	// Juliet is online on n2 and sets her list on n1.
	checkFor(t, func() bool { return deliver(t, m2, message, juliet+"/n2") == plugins.Continue })
	h2.Routed()
	reads := fs.readCount()

	got := h1.IQ(t, m1, plugins.ToServer, `<iq type='set' id='b1' from='juliet@example.com/n1'><block xmlns='urn:xmpp:blocking'><item jid='romeo@example.com'/></block></iq>`)
	if got != `<iq type="result" id="b1" to="juliet@example.com/n1"/>` {
		t.Fatalf("block: %s", got)
	}
	fs.freeze(true) // n2 must not need the store for what follows
	if v := deliver(t, m2, message, juliet+"/n2"); v != plugins.Handled {
		t.Fatalf("n2 delivers romeo's message after the block on n1: verdict %v", v)
	}
	if r := h2.Routed(); len(r) != 1 || !strings.Contains(r[0], "service-unavailable") {
		t.Errorf("n2 answered %q", r)
	}
	if v, err := m2.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: plugintest.Parse(t, `<message from='juliet@example.com/n2' to='romeo@example.com' id='o'><body>x</body></message>`), Session: juliet + "/n2"}); v != plugins.Handled || err != nil {
		t.Errorf("juliet writing to romeo on n2: %v, %v; want Handled", v, err)
	}
	h2.Routed()
	if n := fs.readCount(); n != reads {
		t.Errorf("n2 read the store %d times after the change", n-reads)
	}
	fs.freeze(false)

	// And back: unblocked on n2, n1 follows.
	got = h2.IQ(t, m2, plugins.ToServer, `<iq type='set' id='u1' from='juliet@example.com/n2'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
	if got != `<iq type="result" id="u1" to="juliet@example.com/n2"/>` {
		t.Fatalf("unblock: %s", got)
	}
	if v := deliver(t, m1, message, juliet+"/n1"); v != plugins.Continue {
		t.Errorf("n1 after unblock on n2: verdict %v", v)
	}
	if v := deliver(t, m2, message, juliet+"/n2"); v != plugins.Continue {
		t.Errorf("n2 after its own unblock: verdict %v", v)
	}

	// A deleted account's list is forgotten everywhere.
	if err := h1.Bus.Run(ctx, plugins.EventUserDeleted, &plugins.UserEvent{Username: "juliet"}); err != nil {
		t.Fatal(err)
	}
	fs.freeze(true)
	if v := deliver(t, m2, message, juliet+"/n2"); v != plugins.Handled {
		t.Errorf("n2 still knows a deleted account's list: verdict %v", v)
	}
	fs.freeze(false)
}

// TestBlockListDatabaseAway: with the database not answering, a list in
// memory stays in force (also once its refresh is due), and a list that
// was never read fails closed: messages and IQs bounce with
// resource-constraint, presence is dropped, nothing gets through but
// errors; what a user sends waits a while for the user's own list.
func TestBlockListDatabaseAway(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	fs := &frozenStore{Store: h.St}
	h = plugintest.NewHostWithStore(t, fs)
	p := blocking.New()
	var clock sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.SetClock(func() time.Time { clock.Lock(); defer clock.Unlock(); return now })
	const ownWait = 1500 * time.Millisecond
	p.SetOwnListWait(ownWait)
	m := h.Start(t, p)
	if err := fs.Block(ctx, juliet, []string{romeo}); err != nil {
		t.Fatal(err)
	}
	// Juliet logs in: her list is read then.
	if err := h.Bus.Run(ctx, plugins.EventSessionBound, &plugins.SessionEvent{JID: juliet + "/b"}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, func() bool { return deliver(t, m, message, juliet+"/b") == plugins.Handled })
	h.Routed()

	fs.freeze(true)
	clock.Lock()
	now = now.Add(time.Hour) // every list is due for a refresh
	clock.Unlock()
	for i := range 3 {
		msg := strings.Replace(message, "id='m'", fmt.Sprintf("id='f%d'", i), 1)
		if v := deliver(t, m, msg, juliet+"/b"); v != plugins.Handled {
			t.Fatalf("romeo's message %d with the database away: verdict %v, want Handled (blocked)", i, v)
		}
		nurse := `<message from='nurse@example.com/x' to='juliet@example.com'><body>hi</body></message>`
		if v := deliver(t, m, nurse, juliet+"/b"); v != plugins.Continue {
			t.Fatalf("the nurse's message with the database away: verdict %v, want Continue", v)
		}
	}
	h.Routed()

	// A message for tybalt, whose list was never read, waits for it: the
	// database answering meanwhile, it is delivered, not refused.
	delivered := make(chan plugins.Verdict, 1)
	go func() {
		delivered <- deliver(t, m, `<message from='romeo@example.com/a' to='tybalt@example.com' id='t1' type='chat'><body>hi</body></message>`, "tybalt@example.com/x")
	}()
	time.Sleep(ownWait / 3)
	fs.freeze(false)
	if v := <-delivered; v != plugins.Continue {
		t.Errorf("a message for tybalt, his list read while it waited: verdict %v, want Continue", v)
	}
	fs.freeze(true)

	// Benvolio never logged in here and his list was never read.
	const benvolio = "benvolio@example.com"
	toBen := `<message from='romeo@example.com/a' to='benvolio@example.com' id='u1' type='chat'><body>hi</body></message>`
	if v := deliver(t, m, toBen, benvolio+"/x"); v != plugins.Handled {
		t.Errorf("message for an unknown list: verdict %v, want Handled (bounced)", v)
	}
	r := h.Routed()
	if len(r) != 1 || !strings.Contains(r[0], `<resource-constraint`) || !strings.Contains(r[0], `type="wait"`) || !strings.Contains(r[0], `to="romeo@example.com/a"`) {
		t.Errorf("bounce for an unknown list: %q, want resource-constraint (wait) to the sender", r)
	}
	if v := deliver(t, m, `<presence from='romeo@example.com/a' to='benvolio@example.com'/>`, benvolio+"/x"); v != plugins.Drop {
		t.Errorf("presence for an unknown list: verdict %v, want Drop", v)
	}
	if v, _ := m.Intercept(ctx, plugins.PointOffline, &plugins.Stanza{El: plugintest.Parse(t, strings.Replace(toBen, "u1", "u2", 1))}); v != plugins.Handled {
		t.Errorf("offline message for an unknown list: verdict %v, want Handled (bounced)", v)
	}
	h.Routed()
	// An error for him passes: it may be the bounce telling him that a
	// stanza of his failed (dropped, the failure would be silent).
	bounce := `<message from='romeo@example.com/a' to='benvolio@example.com/x' id='e1' type='error'><body>hi</body><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`
	if v := deliver(t, m, bounce, benvolio+"/x"); v != plugins.Continue {
		t.Errorf("an error for an unknown list: verdict %v, want Continue", v)
	}
	// What he sends waits for his own list (ownListWait), then is refused.
	start := time.Now()
	v, err := m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: plugintest.Parse(t, `<message from='benvolio@example.com/x' to='romeo@example.com' id='o1'><body>hi</body></message>`), Session: benvolio + "/x"})
	if v == plugins.Continue || err == nil || !strings.Contains(err.Error(), "resource-constraint") {
		t.Errorf("benvolio sending with his list unknown: %v, %v; want refused with resource-constraint", v, err)
	}
	if d := time.Since(start); d < ownWait {
		t.Errorf("benvolio's message refused after %v, before waiting %v for his list", d, ownWait)
	}
	// One whose database answers while it waits is not refused.
	const mercutio = "mercutio@example.com"
	sent := make(chan plugins.Verdict, 1)
	go func() {
		v, _ := m.Intercept(ctx, plugins.PointInbound, &plugins.Stanza{El: plugintest.Parse(t, `<message from='mercutio@example.com/x' to='romeo@example.com' id='o2'><body>hi</body></message>`), Session: mercutio + "/x"})
		sent <- v
	}()
	time.Sleep(ownWait / 3)
	fs.freeze(false)
	if v := <-sent; v != plugins.Continue {
		t.Errorf("mercutio's message, his list read while it waited: verdict %v, want Continue", v)
	}
	fs.freeze(true)
	got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='g1' from='benvolio@example.com/x'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	if !strings.Contains(got, "resource-constraint") {
		t.Errorf("blocklist get with the list unknown: %s", got)
	}

	// The database answers again: everything is decided normally.
	fs.freeze(false)
	checkFor(t, func() bool { return deliver(t, m, toBen, benvolio+"/x") == plugins.Continue })
	if v := deliver(t, m, message, juliet+"/b"); v != plugins.Handled {
		t.Errorf("romeo after the outage: verdict %v, want Handled", v)
	}
}

// TestBlockListChangeDuringRead: a change arriving while the node reads a
// list from the store (which may answer with the list from before the
// change) is applied to what the read returns.
func TestBlockListChangeDuringRead(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	fs := &frozenStore{gate: gate} // n2's read of juliet's list stalls
	h1, _, m1, m2 := twoNodes(t, fs)
	checkFor(t, func() bool { return fs.readCount() == 1 })
	// Meanwhile n1 blocks romeo, and the event reaches n2 while its read
	// is still in flight.
	got := h1.IQ(t, m1, plugins.ToServer, `<iq type='set' id='b1' from='juliet@example.com/n1'><block xmlns='urn:xmpp:blocking'><item jid='romeo@example.com'/></block></iq>`)
	if got != `<iq type="result" id="b1" to="juliet@example.com/n1"/>` {
		t.Fatalf("block: %s", got)
	}
	// The read answers with the list from before the change (as a read
	// that took its snapshot earlier would).
	if err := h1.St.Unblock(ctx, juliet, nil); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if v := deliver(t, m2, message, juliet+"/n2"); v != plugins.Handled {
		t.Errorf("n2 lost the change that arrived during its read: verdict %v", v)
	}
}
