package backend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/clustertest"
	"github.com/aviary-im/aviary/server/nodelog"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// consoleNode is an in-process node of a real cluster (PostgreSQL,
// Hazelcast, node links) with its admin listener, logging through the
// node's handler as `aviary serve` does.
type consoleNode struct {
	n   *server.Node
	c   *hazelcast.Cluster
	adm *backend.Service
	url string
}

func startConsoleNode(t *testing.T, pgURL string, member *hztest.Member, name string) consoleNode {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	level := new(slog.LevelVar)
	log := slog.New(nodelog.New(io.Discard, "text", level, nodelog.NewRing(0, 0))).With("node", name)
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, log)
	adm := backend.NewService(cfg, backend.Deps{Logger: log, Plugins: plugs})
	n, c := servertest.RunClusterNode(t, cfg, servertest.ClusterOptions{
		DatabaseURL: pgURL, Member: member.Addr(), ClusterName: member.ClusterName,
		NodeName: name, Secret: "console-test", Prefix: "console.",
	}, server.WithService(plugs), server.WithService(adm), server.WithLogger(log))
	return consoleNode{n: n, c: c, adm: adm, url: "http://" + adm.Addr().String()}
}

// TestConsoleAcrossCluster operates two real nodes through node 1's admin
// API: locking an account closes its session on node 2 and node 2 refuses
// its logins with account-disabled, unlocking lets it in again there; a
// live setting changed on node 1 reaches node 2 (in-band registration
// offered there); node 2's log is read through node 1; and with clustering
// switched off node 1 still lists both nodes, each alone, and a lock still
// closes the session on node 2.
func TestConsoleAcrossCluster(t *testing.T) {
	if testing.Short() && !required() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	pgURL := pgtest.Shared(t).NewSchema(t)
	member := hztest.StartMember(t, "aviary-console")
	n1 := startConsoleNode(t, pgURL, member, "node1")
	n2 := startConsoleNode(t, pgURL, member, "node2")
	servertest.WaitClustered(t, n1.c, n2.c)
	servertest.CreateUser(t, n1.n, "boss", "boss-secret")
	servertest.CreateUser(t, n1.n, "alice", "alice-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm, err := clustertest.AdminLogin(ctx, n1.url, "boss", "boss-secret")
	if err != nil {
		t.Fatal(err)
	}

	// alice is online on node 2.
	alice := servertest.Dial(t, n2.n)
	alice.Login("alice", "alice-secret", "phone")
	var sess struct {
		JID, Node, Transport, Addr string
		Since                      time.Time
	}
	servertest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		return adm.Do(ctx, "GET", "/api/sessions/alice@localhost%2Fphone", nil, &sess)
	})
	if sess.Node != "node2" || sess.Transport != "tcp" || sess.Addr != "127.0.0.1" || sess.Since.IsZero() {
		t.Errorf("alice's session as node 1 sees it: %+v", sess)
	}

	// Lock through node 1: alice's stream on node 2 ends, node 2 refuses
	// her password with account-disabled.
	var lock struct {
		Locked bool `json:"locked"`
		Closed int  `json:"closed_sessions"`
	}
	if err := adm.Do(ctx, "POST", "/api/users/alice/lock", nil, &lock); err != nil || !lock.Locked || lock.Closed != 1 {
		t.Fatalf("lock: %+v %v", lock, err)
	}
	alice.ExpectStreamError("not-authorized") // "account locked by an administrator"
	refused := servertest.Dial(t, n2.n)
	refused.StartTLS()
	err = refused.AuthSCRAM("SCRAM-SHA-256", "alice", "alice-secret")
	var se *servertest.SASLError
	if !errors.As(err, &se) || se.Condition != "account-disabled" {
		t.Fatalf("a locked account's login on node 2: %v, want account-disabled", err)
	}
	wrong := servertest.Dial(t, n2.n)
	wrong.StartTLS()
	if err := wrong.AuthSCRAM("SCRAM-SHA-256", "alice", "not-her-password"); !errors.As(err, &se) || se.Condition != "not-authorized" {
		t.Errorf("a wrong password for a locked account: %v, want not-authorized (the lock is told only to who knows the password)", err)
	}
	var detail struct {
		Locked bool `json:"locked"`
	}
	if err := adm.On(n2.url).Do(ctx, "GET", "/api/users/alice", nil, &detail); err != nil || !detail.Locked {
		t.Errorf("node 2's view of alice: %+v %v", detail, err)
	}
	if err := adm.Do(ctx, "POST", "/api/users/alice/unlock", nil, &lock); err != nil || lock.Locked {
		t.Fatalf("unlock: %+v %v", lock, err)
	}
	again := servertest.Dial(t, n2.n)
	again.Login("alice", "alice-secret", "phone")

	// A live setting changed through node 1 reaches node 2.
	etag, live := getSettings(t, ctx, adm)
	if live["c2s.allow_registration"] != "false" {
		t.Fatalf("settings %v", live)
	}
	var changed struct {
		Results []struct {
			Node    string   `json:"node"`
			Changed []string `json:"changed"`
			Error   string   `json:"error"`
		} `json:"results"`
	}
	if code := patchSettings(t, ctx, adm, etag, map[string]any{"c2s.allow_registration": true, "log_level": "debug"}, &changed); code != 200 || len(changed.Results) != 2 {
		t.Fatalf("change: %d %+v", code, changed)
	}
	for _, r := range changed.Results {
		if r.Error != "" || len(r.Changed) != 2 {
			t.Errorf("node %s: %+v", r.Node, r)
		}
	}
	if !n2.n.LiveConfig().C2S.AllowRegistration || n2.n.Config().C2S.AllowRegistration {
		t.Errorf("node 2's live registration %v (startup value %v)", n2.n.LiveConfig().C2S.AllowRegistration, n2.n.Config().C2S.AllowRegistration)
	}
	reg := servertest.Dial(t, n2.n)
	if f := reg.StartTLS(); f.Child("register", "http://jabber.org/features/iq-register") == nil {
		t.Errorf("node 2 does not offer registration after the change: %s", f)
	}
	if nodelog.LevelOf(n2.n.Logger().Handler()).Level() != slog.LevelDebug {
		t.Error("node 2's log level did not change")
	}
	if code := patchSettings(t, ctx, adm, etag, map[string]any{"log_level": "info"}, nil); code != http.StatusPreconditionFailed {
		t.Errorf("a change on the old ETag: %d, want 412", code)
	}

	// Node 2's log, read through node 1, has node 2's debug lines (a
	// login there after the change).
	probe := servertest.Dial(t, n2.n)
	probe.Login("boss", "boss-secret", "probe")
	var lines []struct {
		Node, Level, Text string
	}
	if err := adm.Do(ctx, "GET", "/api/logs?node=node2&level=debug&limit=1000", nil, &lines); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range lines {
		if l.Node != "node2" {
			t.Fatalf("a line of %s in node2's log", l.Node)
		}
		found = found || (l.Level == "debug" && strings.Contains(l.Text, "c2s: bound"))
	}
	if !found {
		t.Errorf("no debug line of a binding in node 2's log (%d lines)", len(lines))
	}

	// The metrics have the build, the sessions by transport and the
	// plugin failures' labels.
	metrics := scrape(t, n2.url)
	for _, want := range []string{`aviary_build_info{goversion="go`, `node="node2"`, `aviary_c2s_sessions_by_transport{transport="tcp"} `, `aviary_c2s_sessions_by_transport{transport="bosh"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("node 2's metrics lack %s", want)
		}
	}

	// Clustering off: node 1 still lists node 2 (alone), and a lock still
	// reaches alice on node 2.
	if err := adm.Do(ctx, "POST", "/api/cluster/disable", nil, nil); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n1.c.Clustered() || n2.c.Clustered() {
			return errors.New("still clustered")
		}
		return nil
	})
	var nodes []struct {
		Name      string `json:"name"`
		Clustered bool   `json:"clustered"`
	}
	servertest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if err := adm.Do(ctx, "GET", "/api/nodes", nil, &nodes); err != nil {
			return err
		}
		if len(nodes) != 2 || nodes[0].Name != "node1" || nodes[1].Name != "node2" || nodes[0].Clustered || nodes[1].Clustered {
			return fmt.Errorf("nodes while clustering is off: %+v", nodes)
		}
		return nil
	})
	if err := adm.Do(ctx, "GET", "/api/sessions/alice@localhost%2Fphone", nil, &sess); err != nil || sess.Node != "node2" {
		t.Errorf("alice's session on node 2 while clustering is off: %+v %v", sess, err)
	}
	if err := adm.Do(ctx, "POST", "/api/users/alice/lock", nil, &lock); err != nil || lock.Closed != 1 {
		t.Errorf("lock while clustering is off: %+v %v", lock, err)
	}
	again.ExpectStreamError("not-authorized")
}

func getSettings(t *testing.T, ctx context.Context, adm *clustertest.Admin) (string, map[string]string) {
	t.Helper()
	var st struct {
		ETag string            `json:"etag"`
		Live map[string]string `json:"live"`
	}
	if err := adm.Do(ctx, "GET", "/api/settings", nil, &st); err != nil {
		t.Fatal(err)
	}
	return st.ETag, st.Live
}

// patchSettings sends PATCH /api/settings with If-Match and returns the
// status.
func patchSettings(t *testing.T, ctx context.Context, adm *clustertest.Admin, etag string, body map[string]any, out any) int {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "PATCH", adm.Base+"/api/settings", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+adm.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", etag)
	resp, err := adm.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

var _ = wire.NSClient
