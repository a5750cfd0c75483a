package backend_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
)

// letters yields n letters A without holding them.
type letters int64

func (z *letters) Read(p []byte) (int, error) {
	if *z <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), int64(*z))
	for i := range p[:n] {
		p[i] = 'A'
	}
	*z -= letters(n)
	return int(n), nil
}

// The admin listener of a real node against the attacks of issue 16: a
// sign-in body left unfinished, a 50 MiB sign-in, password guessing, and
// DELETE /api/sessions/..%2f..%2f (500 with an ERROR log before). Each is
// refused cleanly, failures are counted with XMPP logins', and an admin
// signs in and kicks a real session as before.
func TestAdminListenerUnderAttack(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	cfg.Admin.ReadTimeout = 300 * time.Millisecond
	var logs testutil.Buffer // the node's log, read while it writes
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, logger)
	adm := backend.NewService(cfg, backend.Deps{Logger: logger, Plugins: plugs})
	n := servertest.RunServer(t, cfg, server.WithService(plugs), server.WithService(adm))
	servertest.CreateUser(t, n, "boss", "boss-secret")
	servertest.CreateUser(t, n, "alice", "alice-secret")
	base := "http://" + adm.Addr().String()

	// A sign-in whose body never finishes: 408, connection closed.
	c, err := net.Dial("tcp", adm.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 16000\r\n\r\n{\"username\":\"boss\",\"password\":\"", adm.Addr())
	c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a guard far beyond admin.read_timeout
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("an unfinished sign-in body kept its connection for 20s (admin.read_timeout 300ms); read %q", got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
		t.Errorf("unfinished body answered %q, want 408", got)
	}

	// 50 MiB of username: 413, and nothing large in the logs.
	z := letters(50 << 20)
	resp, err := http.Post(base+"/api/login", "application/json", io.MultiReader(strings.NewReader(`{"username":"`), &z, strings.NewReader(`","password":"x"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("50 MiB sign-in: %d, want 413", resp.StatusCode)
	}

	// Wrong passwords, then the right one.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	login := func(user, pw string) (int, string) {
		b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
		resp, err := hc.Post(base+"/api/login", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ CSRF string }
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.CSRF
	}
	for i := range 3 {
		if code, _ := login("boss", fmt.Sprintf("guess%d", i)); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	code, csrf := login("boss", "boss-secret")
	if code != http.StatusOK {
		t.Fatalf("admin sign-in: %d", code)
	}
	resp, err = hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`aviary_c2s_auth_failures_total{via="console"} 3`, `aviary_c2s_auth_failures_total{via="xmpp"} 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A path that is no session: 400, no ERROR in the node's log.
	del := func(path string) int {
		req, _ := http.NewRequest("DELETE", base+path, nil)
		req.Header.Set("X-CSRF-Token", csrf)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := del("/api/sessions/..%2f..%2f"); code != http.StatusBadRequest {
		t.Errorf("DELETE /api/sessions/..%%2f..%%2f: %d, want 400", code)
	}
	alice := servertest.Dial(t, n)
	full := alice.Login("alice", "alice-secret", "phone")
	if code := del("/api/sessions/" + strings.ReplaceAll(full, "/", "%2F")); code != http.StatusOK {
		t.Errorf("kicking %s: %d", full, code)
	}

	log := logs.String()
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("the node logged an error:\n%s", log)
	}
	longest := 0
	for _, l := range strings.Split(log, "\n") {
		longest = max(longest, len(l))
	}
	audit, err := os.ReadFile(filepath.Join(cfg.DataDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if longest > 2<<10 || len(audit) > 16<<10 {
		t.Errorf("the attacks left a %d-byte log line and %d bytes of audit log", longest, len(audit))
	}
}
