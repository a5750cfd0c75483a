package bosh

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTPAndCORS(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	srv := httptest.NewServer(m)
	defer srv.Close()

	do := func(method, origin, body string, hdr map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	for _, tc := range []struct {
		name, method, origin string
		status               int
		allow                string
	}{
		{"preflight allowed", http.MethodOptions, "https://app.example.net", http.StatusNoContent, "https://app.example.net"},
		{"preflight refused", http.MethodOptions, "https://evil.example", http.StatusForbidden, ""},
		{"preflight without origin", http.MethodOptions, "", http.StatusNoContent, ""},
		{"get", http.MethodGet, "", http.StatusOK, ""},
		{"put", http.MethodPut, "", http.StatusMethodNotAllowed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(tc.method, tc.origin, "", map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.allow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allow)
			}
			if tc.allow != "" && !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
				t.Errorf("Allow-Methods %q", resp.Header.Get("Access-Control-Allow-Methods"))
			}
		})
	}

	resp := do(http.MethodPost, "https://app.example.net", body("", 7, "to='example.com' wait='60' hold='1'", ""), map[string]string{"Content-Type": "text/xml; charset=utf-8"})
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/xml") {
		t.Fatalf("POST: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.net" {
		t.Errorf("POST lacks CORS header")
	}
	if el := parseResp(t, b); el.Attr("sid") == "" {
		t.Errorf("POST response %s", b)
	}
	if got := AllowedOrigin([]string{"*"}, "https://x.y"); got != "*" {
		t.Errorf("wildcard: %q", got)
	}
}
