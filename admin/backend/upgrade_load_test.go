package backend_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// TestRollingUpgradeUnderTraffic swaps a plugin between versions again and
// again while two users chat through it: no session drops, no message is
// lost or reordered.
func TestRollingUpgradeUnderTraffic(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.Plugins.Rollout.HealthWindow = time.Second // watched on the chat below
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, servertest.TestLogger())
	adm := backend.NewService(cfg, backend.Deps{Logger: servertest.TestLogger(), Plugins: plugs})
	n := servertest.RunServer(t, cfg, server.WithService(plugs), server.WithService(adm))
	servertest.CreateUser(t, n, "alice", "alice-secret")
	servertest.CreateUser(t, n, "bob", "bob-secret")
	ctx := context.Background()
	for _, v := range []string{"v1", "v2"} {
		data, err := os.ReadFile(buildPlugin(t, v))
		if err != nil {
			t.Fatal(err)
		}
		rec := storage.PluginRecord{Name: "wordfilter", Version: v[1:] + ".0.0", Checksum: runtime.Checksum(data), Artifact: data, Uploaded: time.Now()}
		if err := n.Store().PutPlugin(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := pluginhost.SetEnabled(ctx, n.Store(), "wordfilter", "1.0.0", true); err != nil {
		t.Fatal(err)
	}
	if err := adm.Plugins().Reconcile(ctx, true); err != nil || adm.Plugins().Loaded()["wordfilter"] != "1.0.0" {
		t.Fatalf("enabling 1.0.0: %v %v", adm.Plugins().Loaded(), err)
	}
	alice := servertest.DialAddr(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	alice.Login("alice", "alice-secret", "a")
	bob := servertest.DialAddr(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	bobJID := bob.Login("bob", "bob-secret", "b")

	// Alice sends steadily while the plugin is upgraded to 2.0.0 and back;
	// bob must get every message, in order.
	stop := make(chan struct{})
	sentc := make(chan int, 1)
	go func() {
		i := 0
		for {
			select {
			case <-stop:
				sentc <- i
				return
			default:
			}
			alice.Send(`<message to='%s' type='chat'><body>darn %d</body></message>`, bobJID, i)
			i++
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var received atomic.Int64
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := bob.Next()
			if err != nil {
				recvErr <- err
				return
			}
			if m.Name != "message" {
				continue
			}
			// Every version masks the word; the number says nothing was
			// lost or reordered.
			n := received.Load()
			if want := fmt.Sprintf("**** %d", n); m.ChildText("body", "") != want {
				recvErr <- fmt.Errorf("message %d: body %q, want %q", n, m.ChildText("body", ""), want)
				return
			}
			received.Add(1)
		}
	}()
	ph := adm.Plugins()
	for _, v := range []string{"2.0.0", "1.0.0"} {
		if err := ph.StartUpgrade(ctx, "wordfilter", v); err != nil {
			t.Fatal(err)
		}
		servertest.CheckFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
			st, err := ph.Upgrade(ctx)
			if err != nil {
				return err
			}
			if st.State == "failed" || st.State == "rolled-back" {
				t.Fatalf("upgrade to %s: %+v", v, st)
			}
			if st.State != "done" || st.To != v {
				return fmt.Errorf("upgrade to %s: %s", v, st.State)
			}
			if s := st.Steps[0]; s.State != "healthy" || s.Calls == 0 || s.Failures != 0 {
				t.Fatalf("upgrade to %s judged on %+v, want the chat's calls and no failure", v, s)
			}
			return nil
		})
	}
	close(stop)
	sent := <-sentc
	servertest.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		select {
		case err := <-recvErr:
			t.Fatal(err)
		default:
		}
		if n := received.Load(); n < int64(sent) {
			return fmt.Errorf("received %d of %d", n, sent)
		}
		return nil
	})
	t.Logf("%d messages sent during two upgrades, all delivered in order", sent)
	if sent < 20 {
		t.Errorf("only %d messages overlapped the upgrades", sent)
	}
	// Both sessions are still up.
	for _, c := range []*servertest.Client{alice} {
		c.Send(`<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>`)
		c.Await("ping", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "alive" && el.Type() == "result" })
	}
}
