package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/balance"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
)

// TestNodeDrainCommand drains a real node through its admin API with the
// CLI: the node stops accepting streams and reports the drain.
func TestNodeDrainCommand(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	drained := make(chan balance.Report, 1)
	bal := balance.NewService(nil, func(r balance.Report) { drained <- r })
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, servertest.TestLogger())
	adm := backend.NewService(cfg, backend.Deps{Logger: servertest.TestLogger(), Balance: bal, Plugins: plugs})
	n := servertest.RunServer(t, cfg, server.WithService(bal), server.WithService(plugs), server.WithService(adm))
	servertest.CreateUser(t, n, "boss", "boss-secret")
	base := "http://" + adm.Addr().String()
	ctx := context.Background()

	var out, errb bytes.Buffer
	if code := runAdmin(ctx, []string{"login", "--admin", base, "boss"}, nil, strings.NewReader("boss-secret\n"), &out, &errb); code != 0 {
		t.Fatalf("login: %s", errb.String())
	}
	token := strings.TrimSpace(out.String())

	cases := []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"no name", []string{"drain", "--admin", base}, nil, 2, "want a node NAME"},
		{"no subcommand", nil, nil, 2, "usage"},
		{"no token", []string{"drain", "--admin", base, "test-node"}, nil, 1, "401"},
		{"unknown node", []string{"drain", "--admin", base, "--token", token, "nosuch"}, nil, 1, "nosuch"},
		{"drains, flags after the name", []string{"drain", "test-node", "--admin", base, "--token", token}, nil, 0, "draining test-node"},
		{"again is fine, token from the environment", []string{"drain", "test-node"}, []string{"AVIARY_ADMIN_URL=" + base, "AVIARY_ADMIN_TOKEN=" + token}, 0, "draining test-node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runNode(ctx, tc.args, tc.env, &out, &errb)
			if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Errorf("code %d, output %q %q; want %d and %q", code, out.String(), errb.String(), tc.code, tc.want)
			}
		})
	}
	if !bal.Draining() {
		t.Fatal("the node is not draining")
	}
	select {
	case r := <-drained:
		if r.Reason != "empty" || r.Node != "test-node" {
			t.Errorf("report %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the drain did not end")
	}
	c := servertest.DialRaw(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	c.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
	c.ReadHeaderOnly()
	c.ExpectStreamError("system-shutdown") // alone: nowhere to send clients
}

// TestNodeDrainWait: --wait shows the drained node's sessions going down,
// waits until it has left the cluster, and reports where its sessions came
// back (by account: a client may bind a new resource; bob's has not come
// back when the report is made).
func TestNodeDrainWait(t *testing.T) {
	var mu sync.Mutex
	polls, drains := 0, 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"error":{"message":"no"}}`, http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == "POST" && r.URL.Path == "/api/nodes/n2/drain":
			drains++
			w.Write([]byte(`{"result":"ok"}`))
		case r.Method == "GET" && r.URL.Path == "/api/nodes":
			polls++
			nodes := []map[string]any{{"name": "n1"}}
			if polls < 3 {
				nodes = append(nodes, map[string]any{"name": "n2", "draining": true, "sessions": 4 - 2*polls})
			}
			json.NewEncoder(w).Encode(nodes)
		case r.Method == "GET" && r.URL.Path == "/api/sessions":
			ss := []map[string]any{{"jid": "carol@x/c", "node": "n1"}}
			if drains == 0 {
				ss = append(ss, map[string]any{"jid": "alice@x/a", "node": "n2"}, map[string]any{"jid": "dave@x/d", "node": "n2"},
					map[string]any{"jid": "bob@x/b", "node": "n2"})
			} else {
				ss = append(ss, map[string]any{"jid": "alice@x/a", "node": "n1"}, map[string]any{"jid": "dave@x/new", "node": "n3"})
			}
			json.NewEncoder(w).Encode(ss)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	var out, errb bytes.Buffer
	code := runNode(context.Background(), []string{"drain", "--admin", api.URL, "--token", "tok", "--wait", "--settle", "1s", "n2"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("code %d, %q %q", code, out.String(), errb.String())
	}
	for _, want := range []string{"draining n2 (3 sessions)", "n2: 2 sessions left", "n2: 0 sessions left", "n2 left the cluster", "moved 2 of 3 sessions: n1 1, n3 1", "1 not back within 1s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if drains != 1 || polls != 3 {
		t.Errorf("%d drain requests and %d polls, want 1 and 3", drains, polls)
	}
}

func TestMatchMoved(t *testing.T) {
	was := []string{"a@x", "a@x", "b@x"}
	now := map[string][]string{"n1": {"a@x"}, "n2": {"a@x", "a@x"}, "n3": {"b@x", "b@x", "c@x"}}
	where, moved := matchMoved(was, now, "n2")
	if moved != 2 || where["n1"] != 1 || where["n3"] != 1 || where["n2"] != 0 {
		t.Errorf("matchMoved = %v %d", where, moved)
	}
}
