package c2s_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// TestSessionLogKeysOnce: every log line of a session names each key
// once. The close line said jid=… jid=… (the bound logger's and its own),
// and bound lines carried user= beside the jid that contains it.
func TestSessionLogKeysOnce(t *testing.T) {
	var out logBuffer
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
	sawJID := false
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		line := sc.Text()
		keys, err := topLevelKeys(line)
		if err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %q twice in %s", k, line)
			}
			seen[k] = true
		}
		if seen["jid"] {
			sawJID = true
			if seen["user"] {
				t.Errorf("user beside jid in %s", line)
			}
		}
	}
	if !sawJID {
		t.Fatalf("no line named the session's JID:\n%s", out.String())
	}
}

// logBuffer is a log destination the test reads while the node writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type errString string

func (e errString) Error() string { return string(e) }

// topLevelKeys returns the keys of a JSON object in order, duplicates
// included.
func topLevelKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
