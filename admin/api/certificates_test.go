package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
)

type fakeCerts struct{ rep CertificateReport }

func (f fakeCerts) Certificates(ctx context.Context) (CertificateReport, error) { return f.rep, nil }

func TestCertificates(t *testing.T) {
	cfg := conf.Default()
	cfg.Domain, cfg.DataDir = "example.org", t.TempDir()
	cfg.Admin.Admins = []string{"boss@example.org"}
	soon := time.Now().Add(5 * 24 * time.Hour)
	later := time.Now().Add(80 * 24 * time.Hour)
	src := fakeCerts{CertificateReport{
		Node: "n1",
		Certificates: []Certificate{
			{ID: "example.org", Names: []string{"example.org"}, Issuer: "Pebble Intermediate CA", Serial: "0a1b", NotAfter: later, Source: "acme", Node: "n2"},
			{ID: "upload.example.org", Names: []string{"upload.example.org", "pubsub.example.org"}, Issuer: "R11", NotAfter: soon, Source: "imported"},
			{ID: "example.org", Names: []string{"example.org", "*.example.org"}, Issuer: "example.org", NotAfter: later, Source: "self-signed", Node: "n1"},
		},
		ACME: &ACMEStatus{Directory: "https://acme.example/dir", Names: []ACMEName{
			{Name: "example.org", Serial: "0a1b", NotAfter: later, Next: later.Add(-30 * 24 * time.Hour)},
			{Name: "conference.example.org", Failures: 2, LastError: "http-01 challenge: connection refused"},
		}},
	}}
	st := testStore(t, t.TempDir())
	s, err := New(Options{Config: cfg, Backend: newFake(), Properties: st, Sessions: st.KeyValue(SessionStore),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Certificates: src})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer func() { ts.Close(); s.Close() }()

	if code, _ := newClient(t, ts.URL).do("GET", "/api/certificates", nil); code != http.StatusUnauthorized {
		t.Errorf("anonymous: %d, want 401", code)
	}
	c := newClient(t, ts.URL)
	if code := c.login("boss", "bosspass"); code != 200 {
		t.Fatalf("login %d", code)
	}
	code, out := c.do("GET", "/api/certificates", nil)
	list, _ := out["certificates"].([]any)
	if code != 200 || len(list) != 3 || out["node"] != "n1" {
		t.Fatalf("GET /api/certificates = %d %v", code, out)
	}
	first := list[0].(map[string]any)
	if first["source"] != "acme" || first["issuer"] != "Pebble Intermediate CA" || first["not_after"] == nil {
		t.Errorf("first certificate %v", first)
	}
	acme := out["acme"].(map[string]any)
	if names := acme["names"].([]any); len(names) != 2 || names[1].(map[string]any)["last_error"] == nil {
		t.Errorf("acme %v", acme)
	}

	_, page := c.do("GET", "/admin/certificates", nil)
	html, _ := page["raw"].(string)
	for _, want := range []string{
		"upload.example.org<br>pubsub.example.org", `<span class="pill warn">` + soon.UTC().Format("2006-01-02"),
		`<span class="pill ok">` + later.UTC().Format("2006-01-02"), "(in 79 days)", `self-signed <span class="muted">(n1)</span>`,
		"https://acme.example/dir", "http-01 challenge: connection refused", `<span class="pill bad">2</span>`, `href="/admin/certificates" class="on"`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q:\n%s", want, html)
		}
	}
}
