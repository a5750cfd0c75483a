package mam

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// TestPreferencesChangeReachesEveryNode: two nodes on one store. Node b
// checked juliet's preferences (archive everything) and keeps them; her
// change to "never" through node a reaches b before it is answered, so b
// stops archiving at once (it used to go on for the cache's lifetime). A
// node the change could not reach goes on with what it knew.
func TestPreferencesChangeReachesEveryNode(t *testing.T) {
	ctx := context.Background()
	ha := plugintest.NewHost(t)
	hb := plugintest.NewHostWithStore(t, ha.St)
	ha.Cfg.Cluster.NodeName, hb.Cfg.Cluster.NodeName = "a", "b"
	for _, h := range []*plugintest.Host{ha, hb} {
		h.Cfg.MAM.Default = "always"
	}
	plugintest.Join(ha, hb)
	pa, pb := New(), New()
	ma := ha.Start(t, pa)
	hb.Start(t, pb)
	const juliet, romeo = "juliet@example.com", "romeo@example.net"

	if !pb.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("archiving refused before any preference was set")
	}
	set := func(def string) {
		t.Helper()
		got := ha.IQ(t, ma, plugins.ToAccount, `<iq type='set' id='p1' from='juliet@example.com/r' to='juliet@example.com'><prefs xmlns='urn:xmpp:mam:2' default='`+def+`'/></iq>`)
		if !strings.Contains(got, `type="result"`) {
			t.Fatalf("prefs set: %s", got)
		}
	}
	set("never")
	if pb.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node b still archives for juliet after she set default='never' through node a")
	}
	if pa.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node a still archives after the change it made")
	}

	ha.SetBroadcastError(errors.New("partitioned"))
	set("always")
	if pb.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node b learnt of a change it was not told of (are preferences read for every message?)")
	}
	if !pa.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node a does not archive after its own change to always")
	}
}

// gatedPrefs is a store whose preference reads wait for gate while shut.
type gatedPrefs struct {
	storage.Store
	shut  *atomic.Bool
	gate  chan struct{}
	reads *atomic.Int64
}

func (g gatedPrefs) KeyValue(name string) storage.KeyValue {
	if name == PrefsStore {
		return gatedKV{KeyValue: g.Store.KeyValue(name), g: g}
	}
	return g.Store.KeyValue(name)
}

type gatedKV struct {
	storage.KeyValue
	g gatedPrefs
}

func (k gatedKV) Get(ctx context.Context, owner, key string) (storage.KVEntry, error) {
	k.g.reads.Add(1)
	if k.g.shut.Load() {
		select {
		case <-k.g.gate:
		case <-ctx.Done():
			return storage.KVEntry{}, ctx.Err()
		}
	}
	return k.KeyValue.Get(ctx, owner, key)
}

// TestPreferencesPastTTLDoNotWait: preferences this node knew go on
// serving the message path past their ttl while they are read again in
// the background, so a message does not wait for a database busy with a
// login storm; once the read is done the cache holds the new value.
func TestPreferencesPastTTLDoNotWait(t *testing.T) {
	ctx := context.Background()
	var shut atomic.Bool
	var reads atomic.Int64
	g := gatedPrefs{Store: plugintest.NewHost(t).St, shut: &shut, gate: make(chan struct{}), reads: &reads}
	h := plugintest.NewHostWithStore(t, g)
	h.Cfg.MAM.Default = "always"
	h.Cfg.Database.Timeout = 30 * time.Second
	p := New()
	h.Start(t, p)
	p.prefs = newPrefsCache(h, "always", time.Millisecond, time.Minute)
	const juliet, romeo = "juliet@example.com", "romeo@example.net"
	if !p.prefs.allows(ctx, juliet, romeo) || reads.Load() != 1 {
		t.Fatalf("first check: %d reads", reads.Load())
	}
	time.Sleep(5 * time.Millisecond) // past the ttl
	shut.Store(true)                 // the database is slow now
	done := make(chan bool)
	go func() { done <- p.prefs.allows(ctx, juliet, romeo) }()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("the known preferences were not used")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a message waited for the preferences to be read again")
	}
	// One read again in the background, however many messages come.
	for range 10 {
		p.prefs.allows(ctx, juliet, romeo)
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := reads.Load(); n != 2 {
			return fmt.Errorf("%d reads, want 2", n)
		}
		return nil
	})
	close(g.gate)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if p.prefs.refreshes.Running() != 0 {
			return errors.New("the refresh has not finished")
		}
		return nil
	})
}

func (g gatedPrefs) GetUser(ctx context.Context, username string) (storage.User, error) {
	if g.shut.Load() {
		g.reads.Add(1)
		select {
		case <-g.gate:
		case <-ctx.Done():
			return storage.User{}, ctx.Err()
		}
	}
	return g.Store.GetUser(ctx, username)
}

// TestAccountKnownPastTTLDoesNotWait: an account known to exist is taken
// to exist past the ttl while one read in the background checks again.
func TestAccountKnownPastTTLDoesNotWait(t *testing.T) {
	ctx := context.Background()
	var shut atomic.Bool
	var reads atomic.Int64
	g := gatedPrefs{Store: plugintest.NewHost(t).St, shut: &shut, gate: make(chan struct{}), reads: &reads}
	h := plugintest.NewHostWithStore(t, g)
	h.Cfg.Database.Timeout = 30 * time.Second
	if err := g.Store.CreateUser(ctx, storage.User{Username: "juliet"}); err != nil {
		t.Fatal(err)
	}
	a := newAccounts(h, time.Millisecond)
	if !a.exists(ctx, "juliet@example.com") {
		t.Fatal("juliet does not exist")
	}
	time.Sleep(5 * time.Millisecond)
	shut.Store(true)
	done := make(chan bool)
	go func() { done <- a.exists(ctx, "juliet@example.com") }()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("a known account was taken as unknown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a message waited for the account to be read again")
	}
	a.exists(ctx, "juliet@example.com")
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := reads.Load(); n != 1 {
			return fmt.Errorf("%d reads in the background, want 1", n)
		}
		return nil
	})
	opened := time.Now()
	close(g.gate)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.checking.Running() != 0 || !a.seen["juliet@example.com"].After(opened) {
			return errors.New("the background check has not renewed juliet")
		}
		return nil
	})
}
