package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
)

// TestConsoleSignInSurvivesRestart: a console sign-in is kept in the
// shared store, so a second admin server on the same store (the node
// restarted, or another node of the cluster) accepts the cookie and its
// CSRF token; signing out ends it everywhere. The store holds neither the
// cookie nor the CSRF token.
func TestConsoleSignInSurvivesRestart(t *testing.T) {
	e := newTestEnv(t, nil)
	c := newClient(t, e.ts.URL)
	if code := c.login("boss", "bosspass"); code != 200 {
		t.Fatalf("login = %d", code)
	}
	// The node restarts: a new server on the same store, same cookie jar.
	cfg := conf.Default()
	cfg.Domain, cfg.DataDir, cfg.Admin.Admins = "example.org", t.TempDir(), []string{"boss@example.org"}
	s2, err := New(Options{Config: cfg, Backend: e.fb, Properties: e.store, Sessions: e.store.KeyValue(SessionStore),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(s2)
	defer func() { ts2.Close(); s2.Close() }()
	e.ts.Close()
	c.base = ts2.URL
	// The jar keys cookies by host: 127.0.0.1 for both servers.
	code, out := c.do("GET", "/api/whoami", nil)
	if code != 200 || out["admin"] != "boss@example.org" {
		t.Fatalf("whoami after the restart = %d %v", code, out)
	}
	if out["csrf"] != c.csrf {
		t.Errorf("the CSRF token changed with the restart: %v, was %s", out["csrf"], c.csrf)
	}
	if code, _ := c.do("POST", "/api/cluster/disable", nil); code != 200 {
		t.Errorf("a POST with the old CSRF token after the restart = %d", code)
	}

	ctx := context.Background()
	keys, err := e.store.KeyValue(SessionStore).Keys(ctx, sessionOwner)
	if err != nil || len(keys) != 1 {
		t.Fatalf("stored sessions = %v, %v", keys, err)
	}
	cookie := ""
	for _, ck := range c.hc.Jar.Cookies(mustURL(t, ts2.URL)) {
		if ck.Name == sessionCookie {
			cookie = ck.Value
		}
	}
	v, _ := e.store.KeyValue(SessionStore).Get(ctx, sessionOwner, keys[0])
	if cookie == "" || keys[0] == cookie || strings.Contains(string(v.Value), cookie) || strings.Contains(string(v.Value), c.csrf) {
		t.Errorf("the store holds the cookie or the CSRF token: key %s value %s", keys[0], v.Value)
	}

	if code, _ := c.do("POST", "/api/logout", nil); code != 200 {
		t.Fatalf("logout = %d", code)
	}
	if code, _ := c.do("GET", "/api/whoami", nil); code != http.StatusUnauthorized {
		t.Errorf("whoami after signing out = %d, want 401", code)
	}
}

// TestConsoleSessionExpiry: a session ends sessionTTL after its last use;
// use moves the end forward; an expired one is deleted; a cookie of the
// wrong shape never reaches the store.
func TestConsoleSessionExpiry(t *testing.T) {
	st := testStore(t, t.TempDir())
	ss := newSessions(st.KeyValue(SessionStore), time.Hour)
	now := time.Unix(1_000_000, 0)
	ss.now = func() time.Time { return now }
	ctx := context.Background()
	id, csrf, err := ss.create(ctx, "boss@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if csrf != csrfOf(id) || len(id) != sessionIDLen {
		t.Fatalf("id %q csrf %q", id, csrf)
	}
	now = now.Add(50 * time.Minute)
	if ws, err := ss.get(ctx, id); err != nil || ws.Admin != "boss@example.org" {
		t.Fatalf("get after 50m = %v, %v", ws, err)
	}
	// Used at 50m: it now lasts until 1h50m.
	now = now.Add(55 * time.Minute)
	if _, err := ss.get(ctx, id); err != nil {
		t.Fatalf("get 55m after the last use = %v", err)
	}
	now = now.Add(61 * time.Minute)
	if _, err := ss.get(ctx, id); err != errNoSession {
		t.Fatalf("get 61m after the last use = %v, want errNoSession", err)
	}
	if keys, _ := st.KeyValue(SessionStore).Keys(ctx, sessionOwner); len(keys) != 0 {
		t.Errorf("expired session still stored: %v", keys)
	}
	// An expired session nobody reads again goes at the next sign-in.
	old, _, _ := ss.create(ctx, "boss@example.org")
	now = now.Add(2 * time.Hour)
	if _, _, err := ss.create(ctx, "boss@example.org"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := st.KeyValue(SessionStore).Keys(ctx, sessionOwner); len(keys) != 1 || keys[0] == sessionKey(old) {
		t.Errorf("after a sweep: %v", keys)
	}
	for _, bad := range []string{"", "x", strings.Repeat("z", sessionIDLen), id + "00"} {
		if _, err := ss.get(ctx, bad); err != errNoSession {
			t.Errorf("get(%q) = %v", bad, err)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAuditSurvivesRestart: the console's audit page shows what happened
// before the node restarted (read back from audit.log), not an empty list.
func TestAuditSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := openAudit(dir+"/audit.log", log)
	if err != nil {
		t.Fatal(err)
	}
	for i := range auditRecentCount + 5 {
		a.write(AuditEntry{Admin: "boss@example.org", Action: "users.lock", Target: "/api/users/u" + strconv.Itoa(i), Result: "ok"})
	}
	a.close()
	b, err := openAudit(dir+"/audit.log", log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	got := b.recent()
	if len(got) != auditRecentCount || got[len(got)-1].Target != "/api/users/u"+strconv.Itoa(auditRecentCount+4) {
		t.Fatalf("after reopening: %d entries, last %+v", len(got), got[len(got)-1])
	}
}
