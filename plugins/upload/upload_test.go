package upload_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/upload"
	"github.com/aviary-im/aviary/wire"
)

type fixture struct {
	t     *testing.T
	h     *plugintest.Host
	m     *plugins.Manager
	p     *upload.Plugin
	clock *clock
}

// clock is the time slots and files expire by, shared by the "nodes" of
// a test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// start runs the plugin on a host of its own (the embedded store) with
// the account romeo.
func start(t *testing.T, cfg func(*conf.UploadConfig)) *fixture {
	t.Helper()
	f := startOn(t, plugintest.NewHost(t), newClock(), cfg)
	if err := f.h.Users().CreateUser(context.Background(), "romeo", "pw"); err != nil {
		t.Fatal(err)
	}
	return f
}

// startOn runs the plugin on h, whose store and cluster node the caller
// chose.
func startOn(t *testing.T, h *plugintest.Host, c *clock, cfg func(*conf.UploadConfig)) *fixture {
	t.Helper()
	h.Cfg.Upload.URL = "https://files.example.com:5443/"
	if cfg != nil {
		cfg(&h.Cfg.Upload)
	}
	h.Cfg.ApplyDefaults()
	if errs := h.Cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	f := &fixture{t: t, h: h, p: upload.New(), clock: c}
	f.p.Now = c.Now
	f.m = h.Start(t, f.p)
	return f
}

// request asks for a slot and returns the routed answer.
func (f *fixture) request(from, name string, size int, ctype string) (*wire.Element, error) {
	f.t.Helper()
	before := len(f.h.Routed())
	err := f.h.ToService(f.t, f.m, fmt.Sprintf(`<iq type='get' id='slot' from='%s' to='upload.example.com'><request xmlns='urn:xmpp:http:upload:0' filename='%s' size='%d' content-type='%s'/></iq>`, from, name, size, ctype))
	if err != nil {
		return nil, err
	}
	routed := f.h.Routed()
	if len(routed) != before+1 {
		f.t.Fatalf("routed %v", routed[before:])
	}
	return plugintest.Parse(f.t, routed[before]), nil
}

func (f *fixture) slot(name string, size int, ctype string) (put, get string) {
	f.t.Helper()
	res, err := f.request("romeo@example.com/phone", name, size, ctype)
	if err != nil || res.Type() != "result" {
		f.t.Fatalf("slot: %v %v", res, err)
	}
	s := res.Child("slot", upload.NS)
	return s.Child("put", "").Attr("url"), s.Child("get", "").Attr("url")
}

func (f *fixture) do(method, rawURL string, body []byte, header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		f.t.Fatal(err)
	}
	req := httptest.NewRequest(method, u.RequestURI(), bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.m.ServeHTTP(w, req)
	return w
}

func TestDiscoInfo(t *testing.T) {
	f := start(t, func(c *conf.UploadConfig) { c.MaxFileSize = 5000 })
	if err := f.h.ToService(t, f.m, `<iq type='get' id='i' from='romeo@example.com/phone' to='upload.example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`); err != nil {
		t.Fatal(err)
	}
	got := f.h.Routed()[0]
	for _, want := range []string{`category="store" type="file"`, `<feature var="urn:xmpp:http:upload:0"/>`, `<field var="max-file-size"><value>5000</value></field>`} {
		if !strings.Contains(got, want) {
			t.Errorf("disco#info %s\nlacks %s", got, want)
		}
	}
}

// TestUploadAndDownload: a slot, the PUT in several chunks, the GET with
// CORS headers; the PUT URL works once, only with its token and the
// announced size.
func TestUploadAndDownload(t *testing.T) {
	f := start(t, nil)
	data := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640,000 bytes: three chunks
	put, get := f.slot("photo 1.jpg", len(data), "image/jpeg")
	if !strings.HasPrefix(get, "https://files.example.com:5443/upload/") || !strings.HasSuffix(get, "/photo%201.jpg") || !strings.HasPrefix(put, get+"?token=") {
		t.Fatalf("put %s get %s", put, get)
	}
	if w := f.do("GET", get, nil); w.Code != http.StatusNotFound {
		t.Errorf("GET before the upload: %d", w.Code)
	}
	if w := f.do("PUT", get+"?token=forged", data); w.Code != http.StatusForbidden {
		t.Errorf("PUT with a forged token: %d", w.Code)
	}
	if w := f.do("PUT", put, data[:100]); w.Code != http.StatusBadRequest {
		t.Errorf("PUT of another size: %d", w.Code)
	}
	if w := f.do("PUT", put, data, "Content-Type", "text/html"); w.Code != http.StatusBadRequest {
		t.Errorf("PUT of another type: %d", w.Code)
	}
	if w := f.do("PUT", put, data, "Content-Type", "image/jpeg"); w.Code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	if w := f.do("PUT", put, data); w.Code != http.StatusConflict {
		t.Errorf("second PUT: %d", w.Code)
	}
	w := f.do("GET", get, nil, "Origin", "https://app.example.net")
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), data) {
		t.Fatalf("GET: %d, %d bytes", w.Code, w.Body.Len())
	}
	if h := w.Header(); h.Get("Content-Type") != "image/jpeg" || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET headers %v", h)
	}
	if w := f.do("OPTIONS", put, nil, "Origin", "https://app.example.net", "Access-Control-Request-Method", "PUT"); w.Code != http.StatusNoContent ||
		!strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "PUT") {
		t.Errorf("preflight: %d %v", w.Code, w.Header())
	}

	// Deleting the account deletes its files.
	if err := f.h.Users().DeleteUser(context.Background(), "romeo"); err != nil {
		t.Fatal(err)
	}
	if w := f.do("GET", get, nil); w.Code != http.StatusNotFound {
		t.Errorf("GET after the account was deleted: %d", w.Code)
	}
}

func TestSlotExpires(t *testing.T) {
	f := start(t, func(c *conf.UploadConfig) { c.SlotTimeout = time.Minute })
	put, _ := f.slot("a.txt", 3, "text/plain")
	f.clock.add(2 * time.Minute)
	if w := f.do("PUT", put, []byte("abc")); w.Code != http.StatusForbidden {
		t.Errorf("PUT after the slot expired: %d", w.Code)
	}
}

func TestRefusals(t *testing.T) {
	f := start(t, func(c *conf.UploadConfig) {
		c.MaxFileSize, c.UserQuota, c.AllowedTypes = 1000, 1500, []string{"image/*", "text/plain"}
	})
	res, err := f.request("romeo@example.com/phone", "big.png", 1001, "image/png")
	if err != nil || !strings.Contains(res.String(), `<not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>`) ||
		!strings.Contains(res.String(), `<file-too-large xmlns="urn:xmpp:http:upload:0"><max-file-size>1000</max-file-size></file-too-large>`) {
		t.Errorf("too large: %v %v", res, err)
	}
	cases := []struct {
		name, from, file string
		size             int
		ctype            string
		want             *wire.StanzaError
	}{
		{"type not accepted", "romeo@example.com/phone", "a.exe", 10, "application/x-msdownload", wire.ErrNotAcceptable},
		{"remote user", "iago@evil.example/x", "a.png", 10, "image/png", wire.ErrForbidden},
		{"path in the name", "romeo@example.com/phone", "../a.png", 10, "image/png", wire.ErrBadRequest},
		{"no size", "romeo@example.com/phone", "a.png", 0, "image/png", wire.ErrBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.request(c.from, c.file, c.size, c.ctype)
			var se *wire.StanzaError
			if !errors.As(err, &se) || se.Condition != c.want.Condition {
				t.Errorf("got %v, want %s", err, c.want.Condition)
			}
		})
	}
	// The quota counts live slots and files.
	f.slot("one.png", 1000, "image/png")
	_, err = f.request("romeo@example.com/phone", "two.png", 600, "image/png")
	var se *wire.StanzaError
	if !errors.As(err, &se) || se.Condition != "resource-constraint" || !strings.Contains(se.Text, "quota of 1500 bytes") {
		t.Errorf("over quota: %v", err)
	}
	// An unused slot that expired gives its room back.
	f.clock.add(time.Hour)
	f.slot("two.png", 600, "image/png")
}

func TestOffWithoutURL(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.ApplyDefaults()
	p := upload.New()
	m := h.Start(t, p)
	if _, ok := m.Service("upload.example.com"); ok || p.Domain() != "" {
		t.Error("upload service claimed without upload.url")
	}
}

// TestExpire: one pass removes the slots that ended unused; files stay
// until upload.expire_after has passed since their upload.
func TestExpire(t *testing.T) {
	f := start(t, func(c *conf.UploadConfig) { c.SlotTimeout, c.ExpireAfter = time.Minute, 24*time.Hour })
	ctx := context.Background()
	unusedPut, _ := f.slot("unused.txt", 3, "text/plain")
	put, get := f.slot("kept.txt", 3, "text/plain")
	if w := f.do("PUT", put, []byte("abc")); w.Code != http.StatusCreated {
		t.Fatalf("PUT: %d", w.Code)
	}
	if n, err := f.p.Expire(ctx); err != nil || n != 0 {
		t.Fatalf("expire before anything ended: %d %v", n, err)
	}
	f.clock.add(2 * time.Minute)
	if n, err := f.p.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire after the slots ended: removed %d, %v; want the unused slot", n, err)
	}
	f.clock.add(-2 * time.Minute) // the slot would still be live: it is gone
	if w := f.do("PUT", unusedPut, []byte("abc")); w.Code != http.StatusNotFound {
		t.Errorf("PUT to an expired-and-removed slot: %d", w.Code)
	}
	f.clock.add(23 * time.Hour)
	if w := f.do("GET", get, nil); w.Code != http.StatusOK {
		t.Fatalf("GET before expire_after: %d", w.Code)
	}
	f.clock.add(2 * time.Hour)
	if n, err := f.p.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire after expire_after: removed %d, %v", n, err)
	}
	if w := f.do("GET", get, nil); w.Code != http.StatusNotFound {
		t.Errorf("GET after expiry: %d", w.Code)
	}
	if n, err := f.p.Expire(ctx); err != nil || n != 0 {
		t.Errorf("a second pass found %d, %v", n, err)
	}
}
