package httpd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
	ws "github.com/coder/websocket"
)

// node starts a node with the HTTP listener on loopback.
func node(t testing.TB, mod func(*conf.Config)) (*server.Node, *httpd.Service, string) {
	t.Helper()
	cfg := servertest.DefaultConfig(t)
	cfg.HTTP.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(cfg)
	}
	svc := httpd.NewService()
	n := servertest.RunServer(t, cfg, server.WithService(svc))
	addr := svc.Addr(httpd.ListenerHTTP)
	if addr == nil {
		t.Fatal("http listener not started")
	}
	return n, svc, "http://" + addr.String()
}

func plain(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

// boshClient is a minimal XEP-0206 client: one request at a time (so it
// asks for wait='1': a request carrying a payload is held like any other),
// polling when it waits for something.
type boshClient struct {
	t     testing.TB
	url   string
	urls  []string // when set, requests go round-robin to these (a load balancer)
	hc    *http.Client
	sid   string
	rid   int64
	inbox []*wire.Element
	jid   string
	wait  string // the creation request's wait; default "1"
}

func (b *boshClient) post(attrs, payload string) *wire.Element {
	b.t.Helper()
	el := b.postRaw(attrs, payload)
	if el.Attr("type") == "terminate" {
		b.t.Fatalf("session terminated: %s", el)
	}
	return el
}

// postRaw sends the next request and returns the response body, whatever it is.
func (b *boshClient) postRaw(attrs, payload string) *wire.Element {
	b.t.Helper()
	b.rid++
	var s strings.Builder
	fmt.Fprintf(&s, "<body xmlns='%s' rid='%d'", bosh.NSHTTPBind, b.rid)
	if b.sid != "" {
		fmt.Fprintf(&s, " sid='%s'", b.sid)
	}
	s.WriteString(" " + attrs + ">" + payload + "</body>")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target := b.url
	if len(b.urls) > 0 {
		target = b.urls[int(b.rid)%len(b.urls)]
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(s.String()))
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	hc := b.hc
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	el, err := wire.Parse(data, wire.Limits{MaxStanzaBytes: 16 << 20})
	if err != nil {
		b.t.Fatalf("response %.200q: %v", data, err)
	}
	b.inbox = append(b.inbox, el.Children...)
	return el
}

// expect returns the first received element matching, polling as needed.
func (b *boshClient) expect(what string, match func(*wire.Element) bool) *wire.Element {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for i, el := range b.inbox {
			if match(el) {
				b.inbox = append(b.inbox[:i], b.inbox[i+1:]...)
				return el
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("bosh: no %s; got %v", what, b.inbox)
		}
		b.post("", "")
	}
}

func named(name string) func(*wire.Element) bool {
	return func(el *wire.Element) bool { return el.Name == name }
}

func (b *boshClient) login(user, pw, resource string) {
	b.t.Helper()
	wait := b.wait
	if wait == "" {
		wait = "1"
	}
	resp := b.post("to='localhost' xml:lang='en' wait='"+wait+"' hold='1' ver='1.11' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'", "")
	b.sid = resp.Attr("sid")
	if b.sid == "" || resp.Attr("authid") == "" {
		b.t.Fatalf("creation response %s", resp)
	}
	feat := b.expect("features", named("stream:features"))
	if !strings.Contains(feat.String(), ">PLAIN<") {
		b.t.Fatalf("PLAIN not offered over loopback BOSH: %s", feat)
	}
	b.post("", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+plain(user, pw)+"</auth>")
	b.expect("sasl success", named("success"))
	b.post("to='localhost' xml:lang='en' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'", "")
	feat = b.expect("features after restart", named("stream:features"))
	if feat.Child("bind", wire.NSBind) == nil {
		b.t.Fatalf("no bind feature: %s", feat)
	}
	b.post("", "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"+resource+"</resource></bind></iq>")
	res := b.expect("bind result", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "bind1" })
	b.jid = res.Child("bind", wire.NSBind).ChildText("jid", "")
	if b.jid == "" {
		b.t.Fatalf("bind: %s", res)
	}
}

// wsClient is a minimal RFC 7395 client.
type wsClient struct {
	t   testing.TB
	c   *ws.Conn
	jid string
}

func dialWS(t testing.TB, base string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+httpd.PathWebSocket, &ws.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(16 << 20)
	return &wsClient{t: t, c: c}
}

func (w *wsClient) send(s string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, ws.MessageText, []byte(s)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsClient) next() *wire.Element {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, data, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	el, err := wire.Parse(data, wire.Limits{MaxStanzaBytes: 16 << 20})
	if err != nil {
		w.t.Fatalf("message %.200q is not one element: %v", data, err)
	}
	return el
}

func (w *wsClient) expect(what string, match func(*wire.Element) bool) *wire.Element {
	w.t.Helper()
	for i := 0; i < 50; i++ {
		if el := w.next(); match(el) {
			return el
		}
	}
	w.t.Fatalf("websocket: no %s", what)
	return nil
}

const wsOpen = `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>`

func (w *wsClient) login(user, pw, resource string) {
	w.t.Helper()
	w.send(wsOpen)
	w.expect("open", named("open"))
	feat := w.expect("features", named("stream:features"))
	if !strings.Contains(feat.String(), ">PLAIN<") {
		w.t.Fatalf("PLAIN not offered over loopback WebSocket: %s", feat)
	}
	w.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + plain(user, pw) + "</auth>")
	w.expect("success", named("success"))
	w.send(wsOpen)
	w.expect("open", named("open"))
	w.expect("features", named("stream:features"))
	w.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource + "</resource></bind></iq>")
	res := w.expect("bind", func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "b1" })
	w.jid = res.Child("bind", wire.NSBind).ChildText("jid", "")
	if w.jid == "" {
		w.t.Fatalf("bind: %s", res)
	}
}

func isMsg(body string) func(*wire.Element) bool {
	return func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == body }
}

func TestBOSHAndWebSocketTalkToTCP(t *testing.T) {
	n, _, base := node(t, nil)
	for _, u := range []string{"alice", "bob", "carol"} {
		servertest.CreateUser(t, n, u, "pw-"+u)
	}
	tcp := servertest.Dial(t, n)
	tcpJID := tcp.Login("carol", "pw-carol", "desk")

	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 4711}
	b.login("alice", "pw-alice", "web")
	if b.jid != "alice@localhost/web" {
		t.Errorf("bosh jid %q", b.jid)
	}
	w := dialWS(t, base)
	w.login("bob", "pw-bob", "tab")

	// BOSH → TCP
	b.post("", "<message xmlns='jabber:client' to='"+tcpJID+"' type='chat'><body>from bosh</body></message>")
	got := tcp.Await("message from bosh", isMsg("from bosh"))
	if got.From() != b.jid {
		t.Errorf("from %q, want %q", got.From(), b.jid)
	}
	// TCP → BOSH (arrives on a held request)
	tcp.Send("<message to='%s' type='chat'><body>to bosh</body></message>", b.jid)
	if m := b.expect("message to bosh", isMsg("to bosh")); m.From() != tcpJID {
		t.Errorf("bosh got from %q", m.From())
	}
	// WebSocket → TCP
	w.send("<message xmlns='jabber:client' to='" + tcpJID + "' type='chat'><body>from ws</body></message>")
	if m := tcp.Await("message from ws", isMsg("from ws")); m.From() != w.jid {
		t.Errorf("from %q, want %q", m.From(), w.jid)
	}
	// TCP → WebSocket
	tcp.Send("<message to='%s' type='chat'><body>to ws</body></message>", w.jid)
	if m := w.expect("message to ws", isMsg("to ws")); m.NS() != wire.NSClient {
		t.Errorf("ws message lacks xmlns jabber:client: %s", m)
	}
	// BOSH ↔ WebSocket
	w.send("<message xmlns='jabber:client' to='" + b.jid + "' type='chat'><body>ws to bosh</body></message>")
	b.expect("ws to bosh", isMsg("ws to bosh"))

	// Terminate ends the BOSH session like a closed TCP stream.
	if r := b.postRaw("type='terminate'", "<presence xmlns='jabber:client' type='unavailable'/>"); r.Attr("type") != "terminate" {
		t.Errorf("terminate answered %s", r)
	}
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if res, _ := n.Router().Resources(context.Background(), "alice@localhost"); len(res) != 0 {
			return fmt.Errorf("alice still bound")
		}
		return nil
	})
}

func TestPlainRefusedWhenNotSecure(t *testing.T) {
	n, _, base := node(t, func(c *conf.Config) { c.HTTP.PlainSecure = "never" })
	servertest.CreateUser(t, n, "alice", "pw")
	w := dialWS(t, base)
	w.send(wsOpen)
	w.expect("open", named("open"))
	feat := w.expect("features", named("stream:features"))
	if strings.Contains(feat.String(), ">PLAIN<") {
		t.Errorf("PLAIN offered on an insecure WebSocket: %s", feat)
	}
}

func TestHostMeta(t *testing.T) {
	_, _, base := node(t, nil)
	host := strings.TrimPrefix(base, "http://")
	get := func(path string) (*http.Response, []byte) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get(httpd.PathHostMeta)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/xrd+xml") || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("host-meta: %d %v", resp.StatusCode, resp.Header)
	}
	xrd, err := wire.Parse(bytes.TrimPrefix(body, []byte("<?xml version='1.0' encoding='utf-8'?>\n")), wire.Limits{})
	if err != nil {
		t.Fatalf("host-meta %q: %v", body, err)
	}
	links := map[string]string{}
	for _, l := range xrd.ChildrenNamed("Link", "") {
		links[l.Attr("rel")] = l.Attr("href")
	}
	want := map[string]string{
		"urn:xmpp:alt-connections:xbosh":     "http://" + host + "/http-bind",
		"urn:xmpp:alt-connections:websocket": "ws://" + host + "/xmpp-websocket",
	}
	for rel, href := range want {
		if links[rel] != href {
			t.Errorf("XRD %s = %q, want %q", rel, links[rel], href)
		}
	}
	resp, body = get(httpd.PathHostMetaJSON)
	var jrd struct {
		Links []struct{ Rel, Href string }
	}
	if err := json.Unmarshal(body, &jrd); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("host-meta.json %q: %v", body, err)
	}
	for _, l := range jrd.Links {
		if want[l.Rel] != l.Href {
			t.Errorf("JRD %s = %q, want %q", l.Rel, l.Href, want[l.Rel])
		}
	}
	if len(jrd.Links) != 2 {
		t.Errorf("JRD links %v", jrd.Links)
	}
}

func TestHostMetaConfiguredURLs(t *testing.T) {
	_, _, base := node(t, func(c *conf.Config) {
		c.HTTP.BOSHURL = "https://chat.example.com/bosh"
		c.HTTP.WebSocketURL = "wss://chat.example.com/ws"
	})
	resp, err := http.Get(base + httpd.PathHostMetaJSON)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, u := range []string{"https://chat.example.com/bosh", "wss://chat.example.com/ws"} {
		if !strings.Contains(string(b), u) {
			t.Errorf("host-meta.json %s lacks %s", b, u)
		}
	}
}

// A session replaced by a new login with the same resource is closed with
// the conflict stream error: inside a remote-stream-error terminate body on
// BOSH, as a stream error followed by <close/> on WebSocket.
func TestConflictClosesWebSessions(t *testing.T) {
	n, _, base := node(t, nil)
	servertest.CreateUser(t, n, "alice", "pw")
	servertest.CreateUser(t, n, "bob", "pw")

	w := dialWS(t, base)
	w.login("bob", "pw", "same")
	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 50}
	b.login("alice", "pw", "same")

	servertest.Dial(t, n).Login("bob", "pw", "same")
	if se := w.expect("stream error", named("stream:error")); se.Child("conflict", wire.NSStreams) == nil {
		t.Errorf("websocket got %s", se)
	}
	w.expect("close", named("close"))

	servertest.Dial(t, n).Login("alice", "pw", "same")
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := b.postRaw("", "")
		if r.Attr("type") == "terminate" {
			se := r.Child("stream:error", "")
			if r.Attr("condition") != bosh.CondRemoteStreamError || se == nil || se.Child("conflict", wire.NSStreams) == nil {
				t.Errorf("bosh terminate %s", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bosh session never terminated")
		}
	}
}

func TestWebSocketOversizedStanza(t *testing.T) {
	n, _, base := node(t, func(c *conf.Config) { c.C2S.MaxStanzaBytes = 4096 })
	servertest.CreateUser(t, n, "bob", "pw")
	w := dialWS(t, base)
	w.login("bob", "pw", "big")
	w.send("<message xmlns='jabber:client' to='bob@localhost'><body>" + strings.Repeat("x", 5000) + "</body></message>")
	if se := w.expect("stream error", named("stream:error")); se.Child("policy-violation", wire.NSStreams) == nil {
		t.Errorf("got %s", se)
	}
	w.expect("close", named("close"))
}

// Stream management works the same on web transports: a WebSocket session
// that drops is resumed (XEP-0198) over BOSH, and what was sent meanwhile
// arrives there.
func TestResumeWebSocketSessionOverBOSH(t *testing.T) {
	n, _, base := node(t, nil)
	servertest.CreateUser(t, n, "bob", "pw")
	servertest.CreateUser(t, n, "carol", "pw")
	tcp := servertest.Dial(t, n)
	tcp.Login("carol", "pw", "desk")

	w := dialWS(t, base)
	w.login("bob", "pw", "roam")
	w.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	en := w.expect("enabled", named("enabled"))
	if en.Attr("id") == "" {
		t.Fatalf("enabled %s", en)
	}
	tcp.Send("<message to='%s' type='chat'><body>first</body></message>", w.jid)
	w.expect("first", isMsg("first"))
	w.c.CloseNow() // the network drops; 'first' is not acknowledged
	tcp.Send("<message to='%s' type='chat'><body>while away</body></message>", w.jid)

	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 900}
	resp := b.post("to='localhost' xml:lang='en' wait='1' hold='1' ver='1.11' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'", "")
	b.sid = resp.Attr("sid")
	b.expect("features", named("stream:features"))
	b.post("", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+plain("bob", "pw")+"</auth>")
	b.expect("success", named("success"))
	b.post("xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'", "")
	b.expect("features", named("stream:features"))
	b.post("", "<resume xmlns='urn:xmpp:sm:3' previd='"+en.Attr("id")+"' h='0'/>")
	if r := b.expect("resumed", func(el *wire.Element) bool { return el.Name == "resumed" || el.Name == "failed" }); r.Name != "resumed" {
		t.Fatalf("resume over BOSH: %s", r)
	}
	b.expect("first, resent", isMsg("first"))
	b.expect("while away", isMsg("while away"))
}
