package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
)

// fakeBackend records calls; its data is just enough for every endpoint.
type fakeBackend struct {
	mu        sync.Mutex
	users     map[string]string
	clusterOn bool
	calls     []string
	plugins   []Plugin
	kicked    []string
	drained   []string
	// checking, when set, runs at the start of every password check.
	checking func(user string)
	// console_test.go's state.
	locked     map[string]bool
	live       *conf.Config
	logQueries []LogQuery
}

func newFake() *fakeBackend {
	return &fakeBackend{users: map[string]string{"boss": "bosspass", "pleb": "plebpass"}, clusterOn: true}
}

func (f *fakeBackend) rec(c string) { f.mu.Lock(); f.calls = append(f.calls, c); f.mu.Unlock() }

func (f *fakeBackend) Domain() string   { return "example.org" }
func (f *fakeBackend) NodeName() string { return "n1" }
func (f *fakeBackend) Overview(ctx context.Context) (Overview, error) {
	return Overview{Domain: "example.org", Nodes: []Node{{Name: "n1", Healthy: true, Senior: true}}, Sessions: 3, Users: len(f.users), ClusterEnabled: f.clusterOn}, nil
}
func (f *fakeBackend) Nodes(ctx context.Context) ([]Node, error) {
	return []Node{{Name: "n1", Healthy: true}, {Name: "n2", Healthy: true}}, nil
}
func (f *fakeBackend) ClusterEnabled(ctx context.Context) (bool, error) { return f.clusterOn, nil }
func (f *fakeBackend) SetClusterEnabled(ctx context.Context, on bool) error {
	f.mu.Lock()
	f.clusterOn = on
	f.mu.Unlock()
	return nil
}
func (f *fakeBackend) Drain(ctx context.Context, node string) error {
	if node != "n1" && node != "n2" {
		return storage.ErrNotFound
	}
	f.drained = append(f.drained, node)
	return nil
}
func (f *fakeBackend) ListUsers(ctx context.Context, q string, limit, offset int) ([]string, int, error) {
	var out []string
	for u := range f.users {
		if strings.Contains(u, q) {
			out = append(out, u)
		}
	}
	return out, len(out), nil
}
func (f *fakeBackend) CreateUser(ctx context.Context, u, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[u]; ok {
		return storage.ErrExists
	}
	f.users[u] = p
	return nil
}
func (f *fakeBackend) DeleteUser(ctx context.Context, u string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[u]; !ok {
		return storage.ErrNotFound
	}
	delete(f.users, u)
	return nil
}
func (f *fakeBackend) SetPassword(ctx context.Context, u, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[u]; !ok {
		return storage.ErrNotFound
	}
	f.users[u] = p
	return nil
}
func (f *fakeBackend) CheckPassword(ctx context.Context, u, p string) (bool, error) {
	if f.checking != nil {
		f.checking(u)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pw, ok := f.users[u]
	if !ok {
		return false, storage.ErrNotFound
	}
	return pw == p, nil
}
func (f *fakeBackend) Sessions(ctx context.Context) ([]Session, error) {
	return []Session{{JID: "boss@example.org/laptop", Node: "n1", Available: true}}, nil
}
func (f *fakeBackend) Kick(ctx context.Context, full string) (bool, error) {
	f.kicked = append(f.kicked, full)
	return full == "boss@example.org/laptop", nil
}
func (f *fakeBackend) S2S(ctx context.Context) ([]S2SStream, error) { return nil, nil }
func (f *fakeBackend) Plugins(ctx context.Context) ([]Plugin, error) {
	return f.plugins, nil
}
func (f *fakeBackend) UploadPlugin(ctx context.Context, name, version string, a []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.plugins {
		if p.Name == name && p.Version == version {
			return &APIError{Status: http.StatusConflict, Message: name + " " + version + " is already in the catalogue"}
		}
	}
	f.plugins = append(f.plugins, Plugin{Name: name, Version: version})
	return nil
}
func (f *fakeBackend) SetPluginEnabled(ctx context.Context, name, version string, on bool) error {
	f.rec("enable " + name)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.plugins {
		if p.Name == name && p.Version == version {
			f.plugins[i].Enabled = on
			f.plugins[i].Nodes = []PluginState{{Node: "n1", Version: version, State: "loaded"}}
			return nil
		}
	}
	return storage.ErrNotFound
}
func (f *fakeBackend) DeletePlugin(ctx context.Context, name, version string) error {
	f.rec("delete " + name + "@" + version)
	f.mu.Lock()
	defer f.mu.Unlock()
	var kept []Plugin
	found := false
	for _, p := range f.plugins {
		if p.Name != name || (version != "" && p.Version != version) {
			kept = append(kept, p)
			continue
		}
		if p.Enabled {
			return &APIError{Status: http.StatusConflict, Message: name + " " + p.Version + " is enabled: disable it first"}
		}
		found = true
	}
	if !found {
		return storage.ErrNotFound
	}
	f.plugins = kept
	return nil
}
func (f *fakeBackend) StartUpgrade(ctx context.Context, name, version string) error {
	f.rec("upgrade " + name + " " + version)
	return nil
}
func (f *fakeBackend) Upgrade(ctx context.Context) (UpgradeStatus, error) {
	return UpgradeStatus{State: "idle"}, nil
}

// testStore is a real embedded store in a temporary directory: API
// tokens and console sign-ins live in it as on a node.
func testStore(t testing.TB, dir string) storage.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "aviary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newTestServer(t *testing.T) (*httptest.Server, *fakeBackend, string) {
	e := newTestEnv(t, nil)
	return e.ts, e.fb, e.dataDir
}

// testEnv is an admin server on a fake backend, with its log, its sign-in
// throttle on a fake clock (failures are delayed without waiting), and a
// count of failed sign-ins.
type testEnv struct {
	ts       *httptest.Server
	srv      *Server
	fb       *fakeBackend
	store    storage.Store
	dataDir  string
	clock    *fakeClock
	log      *testutil.Buffer
	failures atomic.Int64
}

func newTestEnv(t *testing.T, mod func(*conf.Config)) *testEnv {
	t.Helper()
	cfg := conf.Default()
	cfg.Domain = "example.org"
	cfg.DataDir = t.TempDir()
	cfg.Admin.Admins = []string{"boss@example.org"}
	if mod != nil {
		mod(cfg)
	}
	e := &testEnv{fb: newFake(), dataDir: cfg.DataDir, clock: &fakeClock{now: time.Unix(1000, 0)}, log: &testutil.Buffer{}}
	st := testStore(t, cfg.DataDir)
	e.store = st
	s, err := New(Options{Config: cfg, Backend: e.fb, Properties: st, Sessions: st.KeyValue(SessionStore),
		Metrics:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "aviary_up 1\n") }),
		Throttle:     auth.New(auth.Options{FailureDelay: time.Second, Clock: e.clock}),
		SignInFailed: func() { e.failures.Add(1) },
		Logger:       slog.New(slog.NewTextHandler(e.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = s
	e.ts = httptest.NewServer(s)
	t.Cleanup(func() { e.ts.Close(); s.Close() })
	return e
}

// fakeClock is the throttle's clock: Sleep records the delay and moves
// time on at once.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.sleeps = append(c.sleeps, d)
		c.now = c.now.Add(d)
	}
	return nil
}

// takeSleeps returns and forgets the delays recorded so far.
func (c *fakeClock) takeSleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sleeps
	c.sleeps = nil
	return s
}

type client struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
	tok  string
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.csrf != "" {
		req.Header.Set(csrfHeader, c.csrf)
	}
	if c.tok != "" {
		req.Header.Set("Authorization", "Bearer "+c.tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

func (c *client) login(user, pass string) int {
	code, out := c.do("POST", "/api/login", map[string]string{"username": user, "password": pass})
	if s, ok := out["csrf"].(string); ok {
		c.csrf = s
	}
	return code
}

func TestAuthRefusals(t *testing.T) {
	ts, _, _ := newTestServer(t)
	anon := newClient(t, ts.URL)
	for _, ep := range []struct{ m, p string }{
		{"GET", "/api/overview"}, {"GET", "/api/users"}, {"POST", "/api/users"}, {"POST", "/api/cluster/disable"},
		{"GET", "/api/sessions"}, {"DELETE", "/api/users/boss"}, {"GET", "/api/plugins"}, {"POST", "/api/tokens"},
	} {
		if code, _ := anon.do(ep.m, ep.p, nil); code != http.StatusUnauthorized {
			t.Errorf("anonymous %s %s = %d, want 401", ep.m, ep.p, code)
		}
	}
	pleb := newClient(t, ts.URL)
	if code := pleb.login("pleb", "plebpass"); code != http.StatusUnauthorized {
		t.Errorf("non-admin login = %d, want 401", code)
	}
	if code, _ := pleb.do("GET", "/api/overview", nil); code != http.StatusUnauthorized {
		t.Errorf("non-admin overview = %d, want 401", code)
	}
	bad := newClient(t, ts.URL)
	if code := bad.login("boss", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password login = %d", code)
	}
	if code := bad.login("nobody", "x"); code != http.StatusUnauthorized {
		t.Errorf("unknown user login = %d", code)
	}
	if code, _ := anon.do("GET", "/api/overview", nil); code != 401 {
		t.Error("still anonymous")
	}
	tokBad := newClient(t, ts.URL)
	tokBad.tok = "avt_nope"
	if code, _ := tokBad.do("GET", "/api/overview", nil); code != http.StatusUnauthorized {
		t.Errorf("unknown token = %d, want 401", code)
	}
}

func TestCSRF(t *testing.T) {
	ts, fb, _ := newTestServer(t)
	c := newClient(t, ts.URL)
	if code := c.login("boss", "bosspass"); code != 200 {
		t.Fatalf("login = %d", code)
	}
	good := c.csrf
	c.csrf = ""
	if code, _ := c.do("POST", "/api/cluster/disable", nil); code != http.StatusForbidden {
		t.Errorf("POST without CSRF = %d, want 403", code)
	}
	c.csrf = "wrong"
	if code, _ := c.do("POST", "/api/cluster/disable", nil); code != http.StatusForbidden {
		t.Errorf("POST with wrong CSRF = %d, want 403", code)
	}
	if !fb.clusterOn {
		t.Fatal("a refused request changed the switch")
	}
	c.csrf = good
	// A cross-origin browser request is refused even with the token.
	req, _ := http.NewRequest("POST", ts.URL+"/api/cluster/disable", nil)
	req.Header.Set(csrfHeader, good)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST = %d, want 403", resp.StatusCode)
	}
	if code, _ := c.do("POST", "/api/cluster/disable", nil); code != 200 {
		t.Errorf("POST with CSRF = %d", code)
	}
	if fb.clusterOn {
		t.Error("switch not turned off")
	}
}

func TestEndpoints(t *testing.T) {
	ts, fb, dataDir := newTestServer(t)
	c := newClient(t, ts.URL)
	if code := c.login("boss@example.org", "bosspass"); code != 200 {
		t.Fatalf("login = %d", code)
	}
	wasm := append([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, 16)...)
	steps := []struct {
		name   string
		method string
		path   string
		body   any
		raw    []byte
		want   int
		check  func(map[string]any) bool
	}{
		{"overview", "GET", "/api/overview", nil, nil, 200, func(m map[string]any) bool { return m["domain"] == "example.org" }},
		{"nodes", "GET", "/api/nodes", nil, nil, 200, nil},
		{"cluster", "GET", "/api/cluster", nil, nil, 200, func(m map[string]any) bool { return m["enabled"] == true }},
		{"disable", "POST", "/api/cluster/disable", nil, nil, 200, func(m map[string]any) bool { return m["enabled"] == false }},
		{"enable", "POST", "/api/cluster/enable", nil, nil, 200, func(m map[string]any) bool { return m["enabled"] == true }},
		{"drain unknown", "POST", "/api/nodes/zz/drain", nil, nil, 404, nil},
		{"drain", "POST", "/api/nodes/n2/drain", nil, nil, 200, nil},
		{"create user", "POST", "/api/users", map[string]string{"username": "alice", "password": "secret1"}, nil, 200, nil},
		{"create dup", "POST", "/api/users", map[string]string{"username": "alice", "password": "secret1"}, nil, 409, nil},
		{"create bad name", "POST", "/api/users", map[string]string{"username": "a@b", "password": "secret1"}, nil, 400, func(m map[string]any) bool {
			return strings.Contains(m["error"].(map[string]any)["message"].(string), "not a valid localpart")
		}},
		{"create short pw", "POST", "/api/users", map[string]string{"username": "bob", "password": "x"}, nil, 400, nil},
		{"create unknown field", "POST", "/api/users", map[string]any{"username": "bob", "password": "secret1", "admin": true}, nil, 400, nil},
		{"list users", "GET", "/api/users?q=ali", nil, nil, 200, func(m map[string]any) bool { return m["total"].(float64) == 1 }},
		{"list bad limit", "GET", "/api/users?limit=0", nil, nil, 400, nil},
		{"password", "POST", "/api/users/alice/password", map[string]string{"password": "secret2"}, nil, 200, nil},
		{"password unknown", "POST", "/api/users/zed/password", map[string]string{"password": "secret2"}, nil, 404, nil},
		{"delete user", "DELETE", "/api/users/alice", nil, nil, 200, nil},
		{"delete again", "DELETE", "/api/users/alice", nil, nil, 404, nil},
		{"sessions", "GET", "/api/sessions", nil, nil, 200, nil},
		{"kick bare", "DELETE", "/api/sessions/boss@example.org", nil, nil, 400, nil},
		{"kick", "DELETE", "/api/sessions/boss@example.org%2Flaptop", nil, nil, 200, nil},
		{"kick offline", "DELETE", "/api/sessions/boss@example.org%2Fphone", nil, nil, 404, nil},
		{"s2s", "GET", "/api/s2s", nil, nil, 200, nil},
		{"upload not wasm", "POST", "/api/plugins/filter/1.0.0", nil, []byte("hello world"), 400, nil},
		{"upload bad name", "POST", "/api/plugins/Bad!/1.0.0", nil, wasm, 400, nil},
		{"upload", "POST", "/api/plugins/filter/1.0.0", nil, wasm, 200, nil},
		{"upload again", "POST", "/api/plugins/filter/1.0.0", nil, wasm, 409, nil},
		{"plugins", "GET", "/api/plugins", nil, nil, 200, nil},
		{"enable plugin", "POST", "/api/plugins/filter/1.0.0/enable", nil, nil, 200, func(m map[string]any) bool {
			nodes, _ := m["nodes"].([]any)
			return m["enabled"] == true && len(nodes) == 1 // the answer says what each node runs
		}},
		{"enable unknown", "POST", "/api/plugins/filter/9.9.9/enable", nil, nil, 404, nil},
		{"delete enabled", "DELETE", "/api/plugins/filter/1.0.0", nil, nil, 409, func(m map[string]any) bool {
			return strings.Contains(m["error"].(map[string]any)["message"].(string), "disable it first")
		}},
		{"disable plugin", "POST", "/api/plugins/filter/1.0.0/disable", nil, nil, 200, func(m map[string]any) bool { return m["enabled"] == false }},
		{"delete bad version", "DELETE", "/api/plugins/filter/1.0.0!", nil, nil, 400, nil},
		{"delete version", "DELETE", "/api/plugins/filter/1.0.0", nil, nil, 200, func(m map[string]any) bool { return m["deleted"] == "filter" && m["version"] == "1.0.0" }},
		{"delete gone", "DELETE", "/api/plugins/filter", nil, nil, 404, nil},
		{"upload to delete", "POST", "/api/plugins/filter/1.0.0", nil, wasm, 200, nil},
		{"delete all versions", "DELETE", "/api/plugins/filter", nil, nil, 200, func(m map[string]any) bool { return m["deleted"] == "filter" && m["version"] == nil }},
		{"upgrade no version", "POST", "/api/plugins/filter/upgrade", map[string]string{}, nil, 400, nil},
		{"upgrade", "POST", "/api/plugins/filter/upgrade", map[string]string{"version": "2.0.0"}, nil, 200, nil},
		{"upgrade status", "GET", "/api/upgrade", nil, nil, 200, func(m map[string]any) bool { return m["state"] == "idle" }},
		{"audit", "GET", "/api/audit", nil, nil, 200, nil},
		{"token no name", "POST", "/api/tokens", map[string]string{}, nil, 400, nil},
	}
	for _, st := range steps {
		var code int
		var out map[string]any
		if st.raw != nil {
			req, _ := http.NewRequest(st.method, ts.URL+st.path, bytes.NewReader(st.raw))
			req.Header.Set(csrfHeader, c.csrf)
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			code = resp.StatusCode
			resp.Body.Close()
		} else {
			code, out = c.do(st.method, st.path, st.body)
		}
		if code != st.want {
			t.Errorf("%s: status %d, want %d (%v)", st.name, code, st.want, out)
			continue
		}
		if st.check != nil && !st.check(out) {
			t.Errorf("%s: unexpected body %v", st.name, out)
		}
	}
	if len(fb.drained) != 1 || fb.drained[0] != "n2" {
		t.Errorf("drained = %v", fb.drained)
	}
	// Tokens work without cookies or CSRF, and survive in shared properties.
	code, out := c.do("POST", "/api/tokens", map[string]string{"name": "ci"})
	if code != 200 {
		t.Fatalf("token = %d %v", code, out)
	}
	script := newClient(t, ts.URL)
	script.tok = out["token"].(string)
	if code, _ := script.do("POST", "/api/cluster/disable", nil); code != 200 {
		t.Errorf("token POST = %d", code)
	}
	// Every action reached the audit log file.
	data, err := os.ReadFile(filepath.Join(dataDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"action":"users.create"`, `"action":"cluster.disable"`, `"via":"token"`, `"action":"login"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

func TestPagesAndHealth(t *testing.T) {
	ts, fb, _ := newTestServer(t)
	c := newClient(t, ts.URL)
	resp, err := c.hc.Get(ts.URL + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/login" {
		t.Errorf("anonymous page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = c.hc.PostForm(ts.URL+"/admin/login", url.Values{"username": {"boss"}, "password": {"bosspass"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/" {
		t.Fatalf("form login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/admin/", "/admin/cluster", "/admin/users", "/admin/sessions", "/admin/federation", "/admin/plugins"} {
		resp, err := c.hc.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "Sign out") {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	// A form post without the CSRF field is refused and changes nothing.
	resp, err = c.hc.PostForm(ts.URL+"/admin/cluster", url.Values{"enabled": {"false"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !fb.clusterOn {
		t.Errorf("form without csrf: %d, switch %v", resp.StatusCode, fb.clusterOn)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
}
