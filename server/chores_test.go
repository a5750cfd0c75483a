package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
