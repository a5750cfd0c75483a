package c2s_test

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// TestSessionLogKeysOnce: every log line of a session names each key
// once. The close line said jid=… jid=… (the bound logger's and its own),
// and bound lines carried user= beside the jid that contains it.
func TestSessionLogKeysOnce(t *testing.T) {
	var out testutil.Buffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := servertest.RunServer(t, servertest.DefaultConfig(t), server.WithLogger(log))
	servertest.CreateUser(t, n, "alice", "alicepw")
	a := servertest.Dial(t, n)
	a.Login("alice", "alicepw", "home")
	a.Send("<presence/>")
	a.Close()
	servertest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "c2s: session closed") {
			return errString("no close logged yet")
		}
		return nil
	})
	lines, err := servertest.JSONLogKeys(out.String())
	if err != nil {
		t.Fatal(err)
	}
	sawJID := false
	for i, keys := range lines {
		if rep := servertest.RepeatedKeys(keys); len(rep) > 0 {
			t.Errorf("keys %q twice in line %d of:\n%s", rep, i+1, out.String())
		}
		if slices.Contains(keys, "jid") {
			sawJID = true
			if slices.Contains(keys, "user") {
				t.Errorf("user beside jid in line %d of:\n%s", i+1, out.String())
			}
		}
	}
	if !sawJID {
		t.Fatalf("no line named the session's JID:\n%s", out.String())
	}
}

type errString string

func (e errString) Error() string { return string(e) }
