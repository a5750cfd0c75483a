package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/storage"
)

// The fake backend's side of the console pages: locks, live settings and
// log lines it keeps in memory.

func (f *fakeBackend) User(ctx context.Context, u string) (UserDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[u]; !ok {
		return UserDetail{}, storage.ErrNotFound
	}
	d := UserDetail{Username: u, JID: u + "@example.org", Created: time.Unix(1000, 0).UTC(), Locked: f.locked[u],
		Roster:       []Contact{{JID: "friend@example.net", Name: "Friend", Subscription: "both", Groups: []string{"Pals"}}},
		OfflineCount: 1, Offline: []OfflineMessage{{From: "friend@example.net/x", Type: "chat", Body: "while you were away", Stanza: "<message/>"}},
		Sessions: []Session{}}
	if u == "boss" {
		d.Sessions = []Session{{JID: "boss@example.org/laptop", Node: "n1", Transport: "tls"}}
	}
	return d, nil
}

func (f *fakeBackend) SetUserLocked(ctx context.Context, u string, locked bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[u]; !ok {
		return 0, storage.ErrNotFound
	}
	if f.locked == nil {
		f.locked = map[string]bool{}
	}
	f.locked[u] = locked
	if locked && u == "boss" {
		return 1, nil
	}
	return 0, nil
}

func (f *fakeBackend) ServerInfo(ctx context.Context) ([]ServerInfo, error) {
	return []ServerInfo{{Node: "n1", Domain: "example.org", Version: "dev", GoVersion: "go1.x", Platform: "linux/amd64", Started: time.Unix(1000, 0), UptimeSeconds: 3725}, {Node: "n2", Error: "not answering"}}, nil
}

func (f *fakeBackend) liveConf() *conf.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live == nil {
		f.live = conf.Default()
	}
	return f.live
}

func (f *fakeBackend) Settings(ctx context.Context) (Settings, error) {
	c := f.liveConf()
	live := map[string]string{}
	for _, k := range conf.Live {
		live[k], _ = c.Get(k)
	}
	return Settings{Node: "n1", ETag: `"` + live["log_level"] + "-" + live["c2s.allow_registration"] + "-" + live["c2s.registration_limit"] + `"`, Live: live, Entries: c.Entries()}, nil
}

func (f *fakeBackend) ChangeSettings(ctx context.Context, ifMatch string, changes map[string]string) ([]SettingsResult, error) {
	st, _ := f.Settings(ctx)
	if ifMatch != st.ETag {
		return nil, &APIError{Status: http.StatusPreconditionFailed, Message: "stale"}
	}
	next, err := f.liveConf().WithLive(changes)
	if err != nil {
		return nil, &APIError{Status: http.StatusBadRequest, Message: err.Error()}
	}
	f.mu.Lock()
	f.live = next
	f.mu.Unlock()
	keys := sortedKeys(changes)
	return []SettingsResult{{Node: "n1", Changed: keys}, {Node: "n2", Changed: keys}}, nil
}

func (f *fakeBackend) Logs(ctx context.Context, q LogQuery) ([]LogLine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logQueries = append(f.logQueries, q)
	return []LogLine{{Node: "n1", Time: time.Unix(1000, 0), Level: "warn", Text: "time=... level=WARN msg=\"plugin failed\" <script>\n\ttrace"}}, nil
}

// TestConsoleEndpoints: every endpoint of the console's API, the way a
// script uses them (token) and what each refuses.
func TestConsoleEndpoints(t *testing.T) {
	e := newTestEnv(t, nil)
	c := newClient(t, e.ts.URL)
	if code := c.login("boss", "bosspass"); code != 200 {
		t.Fatalf("login = %d", code)
	}
	msg := func(m map[string]any) string {
		if e, ok := m["error"].(map[string]any); ok {
			return e["message"].(string)
		}
		return ""
	}
	steps := []struct {
		name, method, path string
		body               any
		want               int
		check              func(map[string]any) bool
	}{
		{"user", "GET", "/api/users/pleb", nil, 200, func(m map[string]any) bool {
			return m["jid"] == "pleb@example.org" && m["locked"] == false && len(m["roster"].([]any)) == 1 && m["offline_count"].(float64) == 1
		}},
		{"user unknown", "GET", "/api/users/zed", nil, 404, nil},
		{"user bad name", "GET", "/api/users/a%40b", nil, 400, nil},
		{"lock", "POST", "/api/users/boss/lock", nil, 200, func(m map[string]any) bool { return m["locked"] == true && m["closed_sessions"].(float64) == 1 }},
		{"locked shows", "GET", "/api/users/boss", nil, 200, func(m map[string]any) bool { return m["locked"] == true }},
		{"unlock", "POST", "/api/users/boss/unlock", nil, 200, func(m map[string]any) bool { return m["locked"] == false }},
		{"lock unknown", "POST", "/api/users/zed/lock", nil, 404, nil},
		{"session", "GET", "/api/sessions/boss@example.org%2Flaptop", nil, 200, func(m map[string]any) bool { return m["jid"] == "boss@example.org/laptop" }},
		{"session offline", "GET", "/api/sessions/boss@example.org%2Fphone", nil, 404, nil},
		{"session bare", "GET", "/api/sessions/boss@example.org", nil, 400, nil},
		{"server", "GET", "/api/server", nil, 200, nil},
		{"settings", "GET", "/api/settings", nil, 200, func(m map[string]any) bool {
			return m["live"].(map[string]any)["log_level"] == "info" && len(m["entries"].([]any)) > 50
		}},
		{"logs", "GET", "/api/logs?level=warn&node=n1&limit=5", nil, 200, nil},
		{"logs bad level", "GET", "/api/logs?level=loud", nil, 400, func(m map[string]any) bool { return strings.Contains(msg(m), "debug, info, warn, error") }},
		{"logs bad limit", "GET", "/api/logs?limit=5000", nil, 400, nil},
		{"rooms", "GET", "/api/rooms", nil, 200, func(m map[string]any) bool { return m["available"] == false && len(m["rooms"].([]any)) == 0 }},
	}
	for _, st := range steps {
		code, out := c.do(st.method, st.path, st.body)
		if code != st.want {
			t.Errorf("%s: status %d, want %d (%v)", st.name, code, st.want, out)
			continue
		}
		if st.check != nil && !st.check(out) {
			t.Errorf("%s: unexpected body %v", st.name, out)
		}
	}
	if q := e.fb.logQueries; len(q) != 1 || q[0] != (LogQuery{Node: "n1", Level: "warn", Limit: 5}) {
		t.Errorf("log queries %+v", q)
	}
	var list []map[string]any
	code := c.doInto("GET", "/api/server", nil, &list)
	if code != 200 || len(list) != 2 || list[0]["node"] != "n1" || list[1]["error"] == nil {
		t.Errorf("server info: %d %v", code, list)
	}
}

// doInto is do for answers that are not objects.
func (c *client) doInto(method, path string, body any, out any) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, nil)
	if c.csrf != "" {
		req.Header.Set(csrfHeader, c.csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, out)
	return resp.StatusCode
}

// TestSettingsNeedIfMatch: a settings change must name the settings it
// changes (If-Match with GET's ETag): none gets 428, a stale one 412, and
// both leave the settings as they were; a change the configuration refuses
// gets 400 naming the key and changes nothing either.
func TestSettingsNeedIfMatch(t *testing.T) {
	e := newTestEnv(t, nil)
	c := newClient(t, e.ts.URL)
	if code := c.login("boss", "bosspass"); code != 200 {
		t.Fatalf("login = %d", code)
	}
	get := func() (string, map[string]any) {
		req, _ := http.NewRequest("GET", e.ts.URL+"/api/settings", nil)
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.Header.Get("ETag") != out["etag"] {
			t.Errorf("ETag header %q, body %v", resp.Header.Get("ETag"), out["etag"])
		}
		return resp.Header.Get("ETag"), out["live"].(map[string]any)
	}
	patch := func(etag string, body any) (int, map[string]any, string) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("PATCH", e.ts.URL+"/api/settings", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(csrfHeader, c.csrf)
		if etag != "" {
			req.Header.Set("If-Match", etag)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out, resp.Header.Get("ETag")
	}
	etag, live := get()
	if live["log_level"] != "info" || etag == "" {
		t.Fatalf("settings %v %q", live, etag)
	}
	if code, out, _ := patch("", map[string]any{"log_level": "debug"}); code != http.StatusPreconditionRequired {
		t.Errorf("without If-Match: %d %v", code, out)
	}
	if code, out, _ := patch(`"stale"`, map[string]any{"log_level": "debug"}); code != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match: %d %v", code, out)
	}
	if code, out, _ := patch(etag, map[string]any{"log_level": "debug", "c2s.listen": ":1"}); code != 400 || !strings.Contains(out["error"].(map[string]any)["message"].(string), "c2s.listen") {
		t.Errorf("a key that cannot change: %d %v", code, out)
	}
	if code, _, _ := patch(etag, map[string]any{"log_level": "loud"}); code != 400 {
		t.Errorf("a bad value: %d", code)
	}
	if _, live := get(); live["log_level"] != "info" {
		t.Fatalf("refused changes changed the settings: %v", live)
	}
	code, out, newTag := patch(etag, map[string]any{"log_level": "debug", "c2s.allow_registration": true, "c2s.registration_limit": 3})
	if code != 200 || newTag == "" || newTag == etag || len(out["results"].([]any)) != 2 {
		t.Fatalf("change: %d %v etag %q", code, out, newTag)
	}
	if tag, live := get(); tag != newTag || live["log_level"] != "debug" || live["c2s.allow_registration"] != "true" || live["c2s.registration_limit"] != "3" {
		t.Errorf("after the change: %q %v", tag, live)
	}
	// The old ETag is stale now.
	if code, _, _ := patch(etag, map[string]any{"log_level": "warn"}); code != http.StatusPreconditionFailed {
		t.Errorf("the old ETag again: %d", code)
	}
}

// TestConsolePagesRender: every console page renders for a signed-in
// admin, and the forms of the new pages do what they say.
func TestConsolePagesRender(t *testing.T) {
	e := newTestEnv(t, nil)
	c := newClient(t, e.ts.URL)
	resp, err := c.hc.PostForm(e.ts.URL+"/admin/login", url.Values{"username": {"boss"}, "password": {"bosspass"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	page := func(p string) string {
		resp, err := c.hc.Get(e.ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		return string(b)
	}
	for p, want := range map[string][]string{
		"/admin/":           {"Server information", "go1.x", "1h 2m", "not answering"},
		"/admin/users/pleb": {"pleb@example.org", "friend@example.net", "while you were away", `id="lock"`},
		"/admin/users/zed":  {"No such account"},
		"/admin/sessions":   {"boss@example.org/laptop", "/admin/sessions/boss@example.org%2Flaptop"},
		"/admin/sessions/boss@example.org%2Flaptop": {"Connected since", "Stream management"},
		"/admin/sessions/boss@example.org%2Fgone":   {"not online"},
		"/admin/settings":                           {"log_level", "c2s.registration_limit", "Apply to every node", "cluster.secret"},
		"/admin/logs?level=warn":                    {"plugin failed", "&lt;script&gt;", "\n\ttrace"},
		"/admin/audit":                              {"login"},
		"/admin/rooms":                              {"does not run on this server yet"},
	} {
		body := page(p)
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", p, w)
			}
		}
	}
	csrf := ""
	for _, ck := range c.hc.Jar.Cookies(mustURL(t, e.ts.URL)) {
		if ck.Name == csrfCookie {
			csrf = ck.Value
		}
	}
	post := func(p string, v url.Values) string {
		v.Set("csrf", csrf)
		resp, err := c.hc.PostForm(e.ts.URL+p, v)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %d", p, resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	if to := post("/admin/users/pleb/lock", url.Values{}); to != "/admin/users/pleb" {
		t.Errorf("lock went to %s", to)
	}
	if body := page("/admin/users/pleb"); !strings.Contains(body, "Locked pleb") || !strings.Contains(body, `id="unlock"`) {
		t.Errorf("after locking: %s", body)
	}
	st, _ := e.fb.Settings(context.Background())
	post("/admin/settings", url.Values{"etag": {st.ETag}, "log_level": {"warn"}, "c2s.allow_registration": {"false"}, "c2s.registration_limit": {"10"}})
	if body := page("/admin/settings"); !strings.Contains(body, "log_level on 2 node(s), until each restarts") {
		t.Errorf("after the settings form: no flash")
	}
	if st, _ := e.fb.Settings(context.Background()); st.Live["log_level"] != "warn" {
		t.Errorf("log_level = %s", st.Live["log_level"])
	}
	// A stale form is refused and says why.
	post("/admin/settings", url.Values{"etag": {st.ETag + "x"}, "log_level": {"error"}})
	if body := page("/admin/settings"); !strings.Contains(body, "changed since") && !strings.Contains(body, "stale") {
		t.Errorf("a stale settings form: no error shown")
	}
}
