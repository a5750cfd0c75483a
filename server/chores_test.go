package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
)

// TestChoresExpireOffline: the senior node (here the only one) deletes
// offline messages older than c2s.offline_expiry and keeps newer ones.
func TestChoresExpireOffline(t *testing.T) {
	ctx := context.Background()
	expired := servertest.DefaultConfig(t)
	expired.C2S.OfflineExpiry = time.Millisecond
	a := servertest.RunServer(t, expired, server.WithChoreInterval(20*time.Millisecond))
	if err := a.Store().StoreOffline(ctx, "alice@localhost", []byte(`<message><body>old</body></message>`), storage.OfflineQuota{Messages: 100}); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n, err := a.Store().CountOffline(ctx, "alice@localhost"); err != nil || n != 0 {
			return fmt.Errorf("still %d offline messages (%v)", n, err)
		}
		return nil
	})

	kept := servertest.DefaultConfig(t)
	kept.C2S.OfflineExpiry = time.Hour
	b := servertest.RunServer(t, kept, server.WithChoreInterval(20*time.Millisecond))
	if err := b.Store().StoreOffline(ctx, "alice@localhost", []byte(`<message><body>new</body></message>`), storage.OfflineQuota{Messages: 100}); err != nil {
		t.Fatal(err)
	}
	// Let the chore run several times; a fresh message must survive them.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n, _ := b.Store().CountOffline(ctx, "alice@localhost"); n != 1 {
			t.Fatalf("a fresh message was expired: count %d", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChoresExpireArchive: the senior node deletes archived messages older
// than mam.expire_after, of every owner, and keeps newer ones.
func TestChoresExpireArchive(t *testing.T) {
	ctx := context.Background()
	cfg := servertest.DefaultConfig(t)
	cfg.MAM.ExpireAfter = time.Hour
	n := servertest.RunServer(t, cfg, server.WithChoreInterval(20*time.Millisecond))
	a := n.Store().Archive(mam.Store)
	old := time.Now().Add(-2 * time.Hour)
	for _, e := range []storage.ArchiveEntry{
		{Owner: "alice@localhost", With: "bob@localhost", When: old, Value: []byte("<message/>")},
		{Owner: "conference.localhost/room", With: "x", When: old, Value: []byte("<message/>")},
		{Owner: "alice@localhost", With: "bob@localhost", Value: []byte("<message><body>new</body></message>")},
	} {
		if _, err := a.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for owner, want := range map[string]int{"alice@localhost": 1, "conference.localhost/room": 0} {
			p, err := a.Query(ctx, owner, storage.ArchiveQuery{})
			if err != nil {
				return err
			}
			if len(p.Entries) != want {
				return fmt.Errorf("%s has %d entries, want %d", owner, len(p.Entries), want)
			}
		}
		return nil
	})
}
