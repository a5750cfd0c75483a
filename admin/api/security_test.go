package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
)

// repeatReader yields n copies of b without holding them.
type repeatReader struct {
	b byte
	n int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = r.b
	}
	r.n -= int64(len(p))
	return len(p), nil
}

// longestLine is the length of the longest line of s.
func longestLine(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		n = max(n, len(l))
	}
	return n
}

// The attack of issue 16: an anonymous POST /api/login with a 50 MiB
// username. It was read whole, refused, and written verbatim to the audit
// file, the node log and the audit ring kept in memory (five of them:
// 262 MB in each log, 617 MB of memory). Now the body is refused with 413
// past 16 KiB, and a long username within it is clipped where it is
// logged. An admin signs in as before.
func TestOversizedSignIn(t *testing.T) {
	e := newTestEnv(t, nil)
	body := io.MultiReader(strings.NewReader(`{"username":"`), &repeatReader{'A', 50 << 20}, strings.NewReader(`","password":"x"}`))
	resp, err := http.Post(e.ts.URL+"/api/login", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("50 MiB sign-in: %d, want 413", resp.StatusCode)
	}

	// Under the cap, a long name is refused and clipped in every record.
	c := newClient(t, e.ts.URL)
	if code := c.login(strings.Repeat("B", 15<<10), "x"); code != http.StatusUnauthorized {
		t.Errorf("15 KiB username: %d, want 401", code)
	}
	for _, a := range e.srv.audit.recent() {
		if len(a.Admin) > auditFieldBytes+32 {
			t.Errorf("the audit ring keeps a %d-byte admin field", len(a.Admin))
		}
	}
	data, err := os.ReadFile(filepath.Join(e.dataDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 4<<10 || longestLine(e.log.String()) > 2<<10 {
		t.Errorf("refused sign-ins wrote %d bytes of audit log and a %d-byte log line", len(data), longestLine(e.log.String()))
	}

	if code := newClient(t, e.ts.URL).login("boss", "bosspass"); code != http.StatusOK {
		t.Errorf("admin sign-in after the attack: %d", code)
	}
}

// The audit entries kept for the console are bounded in bytes, not only in
// number: 200 entries with long fields (targets and results quote client
// input) used to be kept whole.
func TestAuditRingBoundedInBytes(t *testing.T) {
	e := newTestEnv(t, nil)
	big := strings.Repeat("x", 1<<20)
	for range 300 {
		e.srv.audit.write(AuditEntry{Admin: big, Via: big, Action: big, Target: big, Result: big, Remote: big})
	}
	total := 0
	recent := e.srv.audit.recent()
	for _, a := range recent {
		total += a.size()
	}
	if total > auditRecentBytes || len(recent) == 0 {
		t.Errorf("the audit ring keeps %d entries, %d bytes (bound %d)", len(recent), total, auditRecentBytes)
	}
	// A normal entry still goes in.
	e.srv.audit.write(AuditEntry{Admin: "boss@example.org", Action: "users.create", Result: "ok"})
	if recent := e.srv.audit.recent(); recent[len(recent)-1].Admin != "boss@example.org" {
		t.Error("the newest entry is not kept")
	}
}

// postLogin signs in through the handler directly, from addr.
func (e *testEnv) postLogin(addr, user, pass string) *httptest.ResponseRecorder {
	b, _ := json.Marshal(loginRequest{Username: user, Password: pass})
	r := httptest.NewRequest("POST", "/api/login", bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = addr + ":40000"
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	return w
}

func maxDelay(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// Sign-in failures are delayed like XMPP logins', by address and by
// account: wrong passwords from one address, or from many addresses on one
// account, are answered ever more slowly (1 s doubling to 5 s). Before,
// nothing was delayed (411 guesses per second). The right password still
// works afterwards, and each failure is counted.
func TestSignInThrottled(t *testing.T) {
	e := newTestEnv(t, nil)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}

	// One address guessing boss's password.
	for i, d := range want {
		if w := e.postLogin("10.0.0.1", "boss", fmt.Sprintf("guess%d", i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
		if got := maxDelay(e.clock.takeSleeps()); got != d {
			t.Errorf("guess %d from one address answered after %v, want %v", i, got, d)
		}
	}
	if w := e.postLogin("10.0.0.1", "boss", "bosspass"); w.Code != http.StatusOK {
		t.Fatalf("right password after the guesses: %d %s", w.Code, w.Body)
	}

	// Many addresses, one guess each, at one account: the account's delay
	// grows though each address is new.
	for i, d := range want {
		if w := e.postLogin(fmt.Sprintf("10.0.1.%d", i), "boss", fmt.Sprintf("guess%d", i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
		if got := maxDelay(e.clock.takeSleeps()); got != d {
			t.Errorf("guess %d from a new address answered after %v, want %v", i, got, d)
		}
	}
	// Another account from a new address is not slowed by boss's record.
	if w := e.postLogin("10.0.2.1", "pleb", "wrong"); w.Code != http.StatusUnauthorized {
		t.Fatalf("pleb: %d", w.Code)
	}
	if got := maxDelay(e.clock.takeSleeps()); got != time.Second {
		t.Errorf("first failure of another account from a new address delayed %v, want 1s", got)
	}
	if w := e.postLogin("10.0.2.2", "boss@example.org", "bosspass"); w.Code != http.StatusOK {
		t.Fatalf("right password: %d %s", w.Code, w.Body)
	}
	if got := e.failures.Load(); got != int64(2*len(want)+1) {
		t.Errorf("%d failures counted, want %d", got, 2*len(want)+1)
	}
}

// Parallel guesses do not multiply the rate: one address checks one
// password at a time (a second attempt meanwhile gets 429 at once), and
// attempts on one account from different addresses wait for each other.
func TestSignInOneAtATime(t *testing.T) {
	e := newTestEnv(t, nil)
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	e.fb.checking = func(user string) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		if user == "boss" {
			<-release
		}
	}
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for _, addr := range []string{"10.0.0.1", "10.0.0.2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.postLogin(addr, "boss", "guess").Code
		}()
		if addr == "10.0.0.1" {
			testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
				if inFlight.Load() != 1 {
					return fmt.Errorf("the first attempt is not checking its password")
				}
				return nil
			})
		}
	}
	// The second address waits for boss's account...
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := e.srv.gate.waiters("account boss@example.org"); n != 1 {
			return fmt.Errorf("%d attempts wait for the account", n)
		}
		return nil
	})
	// ...the first address may not start another attempt meanwhile...
	w := e.postLogin("10.0.0.1", "pleb", "plebpass")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("a second attempt from a busy address: %d (Retry-After %q), want 429", w.Code, w.Header().Get("Retry-After"))
	}
	// ...and another address on another account goes ahead.
	if w := e.postLogin("10.0.0.3", "pleb", "wrong"); w.Code != http.StatusUnauthorized {
		t.Errorf("an attempt on another account: %d", w.Code)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusUnauthorized {
			t.Errorf("a queued guess answered %d", c)
		}
	}
	if m := most.Load(); m != 2 { // boss's check and pleb's, never two of boss's
		t.Errorf("at most %d password checks ran at once, want 2", m)
	}
}

// The console's form sign-in is limited the same way and says so by code.
func TestFormSignInThrottled(t *testing.T) {
	e := newTestEnv(t, nil)
	c := newClient(t, e.ts.URL)
	resp, err := c.hc.PostForm(e.ts.URL+"/admin/login", url.Values{"username": {"boss"}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "/admin/login?msg=login-failed" {
		t.Errorf("wrong password goes to %q", loc)
	}
	if got := maxDelay(e.clock.takeSleeps()); got != time.Second {
		t.Errorf("form failure delayed %v, want 1s", got)
	}
	if e.failures.Load() != 1 {
		t.Errorf("%d failures counted, want 1", e.failures.Load())
	}
	resp, err = c.hc.PostForm(e.ts.URL+"/admin/login", url.Values{"username": {strings.Repeat("A", 1<<20)}, "password": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB sign-in form: %d, want 413", resp.StatusCode)
	}
}

// The CSRF token counts only from the X-CSRF-Token header or the form
// body. From the URL (where logs, Referer headers and history keep it) it
// was accepted.
func TestCSRFNotFromURL(t *testing.T) {
	ts, fb, _ := newTestServer(t)
	c := newClient(t, ts.URL)
	if code := c.login("boss", "bosspass"); code != 200 {
		t.Fatalf("login = %d", code)
	}
	tok := c.csrf
	c.csrf = ""
	if code, _ := c.do("POST", "/api/cluster/disable?csrf="+tok, nil); code != http.StatusForbidden {
		t.Errorf("API call with the token in the URL: %d, want 403", code)
	}
	resp, err := c.hc.PostForm(ts.URL+"/admin/cluster?csrf="+tok, url.Values{"enabled": {"false"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("form with the token in the URL: %d, want 403", resp.StatusCode)
	}
	if !fb.clusterOn {
		t.Fatal("a request with the token in the URL switched clustering off")
	}
	// The header and the form body still work.
	resp, err = c.hc.PostForm(ts.URL+"/admin/cluster", url.Values{"enabled": {"false"}, "csrf": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || fb.clusterOn {
		t.Errorf("form with the token in its body: %d, clustering on %v", resp.StatusCode, fb.clusterOn)
	}
	c.csrf = tok
	if code, _ := c.do("POST", "/api/cluster/enable", nil); code != 200 || !fb.clusterOn {
		t.Errorf("API call with the token in the header: %d", code)
	}
}

// DELETE /api/sessions/..%2f..%2f answered 500 with an ERROR log: the path
// parses as the full JID "./../" and reached the routing table. Anything
// but the full JID of a session of this domain is now 400 before the
// backend is asked.
func TestKickNeedsSessionJID(t *testing.T) {
	e := newTestEnv(t, nil)
	c := newClient(t, e.ts.URL)
	if code := c.login("boss", "bosspass"); code != 200 {
		t.Fatalf("login = %d", code)
	}
	for _, p := range []string{"..%2f..%2f", "a@..%2Fx", "boss@other.example%2Flaptop", "example.org%2Flaptop", "boss@example.org"} {
		code, out := c.do("DELETE", "/api/sessions/"+p, nil)
		if code != http.StatusBadRequest {
			t.Errorf("DELETE /api/sessions/%s: %d, want 400", p, code)
			continue
		}
		if msg := fmt.Sprint(out["error"]); !strings.Contains(msg, "not the full JID of a session on example.org") {
			t.Errorf("DELETE /api/sessions/%s: %s", p, msg)
		}
	}
	resp, err := c.hc.PostForm(e.ts.URL+"/admin/sessions/kick", url.Values{"jid": {"../../"}, "csrf": {c.csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(e.fb.kicked) != 0 {
		t.Errorf("the backend was asked to kick %q", e.fb.kicked)
	}
	if strings.Contains(e.log.String(), "level=ERROR") {
		t.Errorf("a bad JID was logged as an error:\n%s", e.log.String())
	}
	if code, _ := c.do("DELETE", "/api/sessions/boss@example.org%2Flaptop", nil); code != 200 {
		t.Errorf("kicking a real session: %d", code)
	}
}

// get returns a page's body.
func (c *client) get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.hc.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The console showed any text a link put in ?msg= (on the sign-in page to
// anyone, on other pages to a signed-in admin). Now the sign-in page shows
// only its own messages, chosen by code, and other pages show the message
// their admin's last form left in the session, once.
func TestConsoleShowsNoTextFromTheURL(t *testing.T) {
	ts, _, _ := newTestServer(t)
	c := newClient(t, ts.URL)
	lure := url.QueryEscape("Session expired: sign in at https://evil.example")
	if _, body := c.get("/admin/login?err=1&msg=" + lure); strings.Contains(body, "evil.example") {
		t.Error("the sign-in page shows text from its URL")
	}
	if _, body := c.get("/admin/login?msg=signed-out"); !strings.Contains(body, "Signed out.") {
		t.Error("the sign-in page does not show its own message")
	}
	resp, err := c.hc.PostForm(ts.URL+"/admin/login", url.Values{"username": {"boss"}, "password": {"bosspass"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, body := c.get("/admin/users?err=1&msg=" + lure); strings.Contains(body, "evil.example") {
		t.Error("a console page shows text from its URL")
	}
	// A form's message reaches the next page, once.
	_, page := c.get("/admin/users")
	csrf := between(page, `name="csrf" value="`, `"`)
	resp, err = c.hc.PostForm(ts.URL+"/admin/users", url.Values{"username": {"carol"}, "password": {"carol-secret"}, "csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "/admin/users" {
		t.Errorf("after the form: redirected to %q", loc)
	}
	if _, body := c.get("/admin/users"); !strings.Contains(body, "Created carol.") {
		t.Error("the form's message is not shown")
	}
	if _, body := c.get("/admin/users"); strings.Contains(body, "Created carol.") {
		t.Error("the form's message is shown twice")
	}
	// A failed form's error too.
	resp, err = c.hc.PostForm(ts.URL+"/admin/users", url.Values{"username": {"carol"}, "password": {"carol-secret"}, "csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, body := c.get("/admin/users"); !strings.Contains(body, "already exists") {
		t.Error("the form's error is not shown")
	}
}

func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}

// With admin.metrics_token set, /metrics needs it as a Bearer token.
func TestMetricsToken(t *testing.T) {
	const tok = "0123456789abcdef-metrics"
	e := newTestEnv(t, func(c *conf.Config) { c.Admin.MetricsToken = tok })
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Basic " + tok, http.StatusUnauthorized},
		{"Bearer " + tok, http.StatusOK},
	} {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", e.ts.URL+"/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(string(body), "aviary_up 1") {
			t.Errorf("metrics body %q", body)
		}
	}
}

// admin.profiling serves Go's profiles behind the metrics token, and
// nothing under /debug/pprof/ without it.
func TestProfilingBehindMetricsToken(t *testing.T) {
	get := func(e *testEnv, path, auth string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), "GET", e.ts.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	const tok = "0123456789abcdef-profiles"
	off := newTestEnv(t, func(c *conf.Config) { c.Admin.MetricsToken = tok })
	if code, _ := get(off, "/debug/pprof/goroutine?debug=1", "Bearer "+tok); code == http.StatusOK {
		t.Errorf("profiles served with admin.profiling off")
	}
	on := newTestEnv(t, func(c *conf.Config) { c.Admin.MetricsToken = tok; c.Admin.Profiling = true })
	if code, _ := get(on, "/debug/pprof/goroutine?debug=1", ""); code != http.StatusUnauthorized {
		t.Errorf("goroutine profile without the token: %d, want 401", code)
	}
	code, body := get(on, "/debug/pprof/goroutine?debug=1", "Bearer "+tok)
	if code != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Errorf("goroutine profile with the token: %d %.200q", code, body)
	}
	if code, body := get(on, "/debug/pprof/heap", "Bearer "+tok); code != http.StatusOK || len(body) == 0 {
		t.Errorf("heap profile: %d, %d bytes", code, len(body))
	}
}
