package router

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// gatedStore is a storage.Store whose archive writes wait until open is
// called: the message archive's group commit held back, as a slow disk
// or a node about to die would hold it.
type gatedStore struct {
	storage.Store
	gate chan struct{}
	once sync.Once
}

func (s *gatedStore) open() { s.once.Do(func() { close(s.gate) }) }

func (s *gatedStore) Archive(name string) storage.Archive {
	return gatedArchive{Archive: s.Store.Archive(name), gate: s.gate}
}

type gatedArchive struct {
	storage.Archive
	gate chan struct{}
}

func (a gatedArchive) AppendBatch(ctx context.Context, es []storage.ArchiveEntry) ([]int64, error) {
	select {
	case <-a.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return a.Archive.AppendBatch(ctx, es)
}

// withArchive installs the real message archive on the env's router, over
// a store whose archive writes wait for the returned gate.
func withArchive(t *testing.T, e *env) *gatedStore {
	t.Helper()
	st := &gatedStore{Store: e.store, gate: make(chan struct{})}
	ph := plugintest.NewHostWithStore(t, st)
	ph.Cfg = e.cfg
	m := plugins.NewManager(&routerHost{Host: ph, r: e.r}, e.r.log, []plugins.Plugin{mam.New()})
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start plugins: %v", err)
	}
	t.Cleanup(func() {
		st.open()
		_ = m.Stop(context.Background())
	})
	e.r.SetPlugins(m)
	return st
}

// TestArchiveHoldsTheSendersAck: a stream-management client's
// acknowledgement of a message waits until the archive committed the
// copies the sending node writes (the sender's at PointInbound, a local
// recipient's at PointUserMessage), so a node killed after the
// acknowledgement loses no archived message. The message itself goes on
// at once: only the acknowledgement waits.
func TestArchiveHoldsTheSendersAck(t *testing.T) {
	for _, tc := range []struct {
		name, to string
		archives []string // whose archive gets a copy
	}{
		{"local recipient", "bob@example.com", []string{"alice@example.com", "bob@example.com"}},
		// Only the sender's copy, written at PointInbound: the router
		// must offer the hold there already.
		{"other domain", "romeo@remote.net", []string{"alice@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fed := &capFed{}
			e.r.SetFederation(fed)
			st := withArchive(t, e)
			e.user("alice", "bob")
			bob := e.online("bob", "b", 0)
			alice := e.bindSM("alice", "a")

			e.sendFrom(alice, `<message to='`+tc.to+`' type='chat' id='m1'><body>keep me</body></message>`)
			if got := len(bodies(bob.take())) + len(fed.take()); got != 1 {
				t.Fatalf("%d messages went on, want the message at once while the archive write waits", got)
			}
			if held, taken := alice.holdCounts(); held != 1 || taken != 1 {
				t.Fatalf("with the archive write pending: %d acknowledgement holds outstanding (%d taken), want 1 (1)", held, taken)
			}
			st.open()
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if held, _ := alice.holdCounts(); held != 0 {
					return fmt.Errorf("%d acknowledgement holds outstanding after the commit", held)
				}
				return nil
			})
			for _, owner := range tc.archives {
				p, err := e.store.Archive(mam.Store).Query(context.Background(), owner, storage.ArchiveQuery{})
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Entries) != 1 {
					t.Errorf("%s's archive has %d messages, want 1", owner, len(p.Entries))
				}
			}
		})
	}
}
