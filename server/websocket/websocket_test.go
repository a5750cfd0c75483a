package websocket

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
	ws "github.com/coder/websocket"
)

// fakeCore plays the c2s core over a Conn: open, features, SASL "success"
// on any <auth/>, a restart, echo of messages to "echo", redirect on a
// and stream errors for bad input.
func fakeCore(ends chan error) func(ctx context.Context, c *Conn) {
	return func(ctx context.Context, c *Conn) {
		open := func(id string, feature *wire.Element) error {
			h, err := c.ReadOpen()
			if err != nil {
				return err
			}
			if h.Attr("to") != "example.com" || h.Attr("version") != "1.0" {
				return errors.New("bad open " + h.String())
			}
			if err := c.WriteOpen("example.com", id, "1.0", "en", ""); err != nil {
				return err
			}
			return c.Write([]*wire.Element{wire.New("stream:features").Append(feature)})
		}
		finish := func(err error) {
			ends <- err
			if cond := wire.StreamErrorFor(err); cond != "" {
				c.Close(wire.StreamError(cond, ""))
				return
			}
			c.Close(nil)
		}
		if err := open("s1", wire.NewNS("mechanisms", wire.NSSASL)); err != nil {
			finish(err)
			return
		}
		for {
			el, err := c.ReadElement()
			if err != nil {
				finish(err)
				return
			}
			switch {
			case el.Name == "auth":
				c.Write([]*wire.Element{wire.NewNS("success", wire.NSSASL)})
				if err := open("s2", wire.NewNS("bind", wire.NSBind)); err != nil {
					finish(err)
					return
				}
			case el.Name == "message" && el.To() == "echo":
				if el.NS() != "" {
					finish(errors.New("inbound stanza kept its namespace"))
					return
				}
				c.Write([]*wire.Element{
					wire.New("message", "from", "echo", "id", el.ID()+"-1"),
					wire.New("message", "from", "echo", "id", el.ID()+"-2"),
					wire.New("iq", "type", "result", "id", el.ID()+"-3"),
				})
			}
		}
	}
}

func seeOther(host string) *wire.Element {
	e := wire.New("stream:error")
	e.Append(wire.NewNS("see-other-host", wire.NSStreams).SetText(host))
	return e
}

type env struct {
	t    *testing.T
	url  string
	ends chan error
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	ends := make(chan error, 10)
	opts := Options{Domain: "example.com", MaxStanzaBytes: 2048, OnConn: fakeCore(ends)}
	if mod != nil {
		mod(&opts)
	}
	srv := httptest.NewServer(NewHandler(opts))
	t.Cleanup(srv.Close)
	return &env{t: t, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/xmpp-websocket", ends: ends}
}

func (e *env) dial() *ws.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, e.url, &ws.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.CloseNow() })
	return c
}

func send(t *testing.T, c *ws.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, ws.MessageText, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

// recv reads one message and checks that it is exactly one element.
func recv(t *testing.T, c *ws.Conn) *wire.Element {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if typ != ws.MessageText {
		t.Fatalf("message type %v", typ)
	}
	el, err := wire.Parse(data, wire.Limits{})
	if err != nil {
		t.Fatalf("message %q is not exactly one element: %v", data, err)
	}
	return el
}

const openMsg = `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>`

func TestSubprotocolRequired(t *testing.T) {
	e := newEnv(t, nil)
	for _, protos := range [][]string{nil, {"chat"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, resp, err := ws.Dial(ctx, e.url, &ws.DialOptions{Subprotocols: protos})
		cancel()
		if err == nil {
			c.CloseNow()
			t.Fatalf("subprotocols %v: connection accepted", protos)
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("subprotocols %v: response %v, want 400", protos, resp)
		}
	}
}

func TestOriginCheck(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CORSOrigins = []string{"https://app.example.net"} })
	for _, tc := range []struct {
		origin string
		ok     bool
	}{{"https://app.example.net", true}, {"https://evil.example", false}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h := http.Header{"Origin": {tc.origin}}
		c, _, err := ws.Dial(ctx, e.url, &ws.DialOptions{Subprotocols: []string{"xmpp"}, HTTPHeader: h})
		cancel()
		if (err == nil) != tc.ok {
			t.Errorf("origin %s: err %v", tc.origin, err)
		}
		if c != nil {
			c.CloseNow()
		}
	}
}

func TestFramingSessionFlow(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	if c.Subprotocol() != "xmpp" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	send(t, c, openMsg)
	open := recv(t, c)
	if !isFraming(open, "open") || open.Attr("from") != "example.com" || open.Attr("id") != "s1" || open.Attr("version") != "1.0" {
		t.Fatalf("open %s", open)
	}
	feat := recv(t, c)
	if feat.Name != "stream:features" || feat.Attr("xmlns:stream") != wire.NSStream || feat.Child("mechanisms", wire.NSSASL) == nil {
		t.Fatalf("features %s", feat)
	}
	send(t, c, `<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGEAYg==</auth>`)
	if s := recv(t, c); s.Name != "success" || s.NS() != wire.NSSASL {
		t.Fatalf("got %s", s)
	}
	// Stream restart: a new <open/>.
	send(t, c, openMsg)
	if o := recv(t, c); !isFraming(o, "open") || o.Attr("id") != "s2" {
		t.Fatalf("restart open %s", o)
	}
	if f := recv(t, c); f.Child("bind", wire.NSBind) == nil {
		t.Fatalf("restart features %s", f)
	}
	// One Write of three elements arrives as three messages, each a
	// complete element with xmlns='jabber:client'.
	send(t, c, `<message xmlns="jabber:client" to="echo" id="m"><body>hi</body></message>`)
	for _, id := range []string{"m-1", "m-2", "m-3"} {
		el := recv(t, c)
		if el.ID() != id || el.NS() != wire.NSClient {
			t.Errorf("got %s, want id %s with xmlns jabber:client", el, id)
		}
	}
	// Client close: the server answers <close/> and closes the socket.
	send(t, c, `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`)
	if cl := recv(t, c); !isFraming(cl, "close") {
		t.Fatalf("got %s, want close", cl)
	}
	if err := <-e.ends; !errors.Is(err, wire.ErrStreamEnd) {
		t.Errorf("core saw %v, want ErrStreamEnd", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); ws.CloseStatus(err) != ws.StatusNormalClosure {
		t.Errorf("after close: %v, want a normal closure", err)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, msg, cond string
		err             error
	}{
		{"oversized", `<message xmlns="jabber:client"><body>` + strings.Repeat("x", 3000) + `</body></message>`, "policy-violation", wire.ErrStanzaTooLarge},
		{"two elements in one message", `<message xmlns="jabber:client"/><message xmlns="jabber:client"/>`, "not-well-formed", wire.ErrNotWellFormed},
		{"partial element", `<message xmlns="jabber:client">`, "not-well-formed", wire.ErrNotWellFormed},
		{"text", `hello`, "not-well-formed", wire.ErrNotWellFormed},
		{"comment", `<!-- x --><message xmlns="jabber:client"/>`, "restricted-xml", wire.ErrRestrictedXML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.dial()
			send(t, c, openMsg)
			recv(t, c)
			recv(t, c)
			send(t, c, tc.msg)
			se := recv(t, c)
			if se.Name != "stream:error" || se.Child(tc.cond, wire.NSStreams) == nil || se.Attr("xmlns:stream") != wire.NSStream {
				t.Fatalf("got %s, want stream error %s", se, tc.cond)
			}
			if cl := recv(t, c); !isFraming(cl, "close") {
				t.Fatalf("got %s, want close", cl)
			}
			if err := <-e.ends; !errors.Is(err, tc.err) {
				t.Errorf("core saw %v, want %v", err, tc.err)
			}
		})
	}
}

func TestFirstElementMustBeOpen(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	send(t, c, `<message xmlns="jabber:client"/>`)
	if se := recv(t, c); se.Child("bad-format", wire.NSStreams) == nil {
		t.Errorf("got %s", se)
	}
}

func TestSeeOtherHost(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.OnConn = func(ctx context.Context, c *Conn) {
			if _, err := c.ReadOpen(); err != nil {
				t.Error(err)
				return
			}
			c.Close(seeOther("other.example.com:5443"))
		}
	})
	c := e.dial()
	send(t, c, openMsg)
	cl := recv(t, c)
	if !isFraming(cl, "close") || cl.Attr("see-other-uri") != "ws://other.example.com:5443/xmpp-websocket" {
		t.Errorf("got %s", cl)
	}
}

func TestUnansweredPingCloses(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PingInterval = 20 * time.Millisecond })
	c := e.dial()
	send(t, c, openMsg)
	recv(t, c)
	recv(t, c)
	// The client stops reading, so it never answers pings: the server
	// closes the connection and the core's read fails.
	select {
	case err := <-e.ends:
		if err == nil || errors.Is(err, wire.ErrStreamEnd) {
			t.Errorf("core saw %v, want a transport failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a silent client was never closed")
	}
}

func TestAnsweredPingsKeepConnection(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PingInterval, o.PongTimeout = 10*time.Millisecond, 10*time.Second })
	c := e.dial()
	send(t, c, openMsg)
	recv(t, c)
	recv(t, c)
	// The client keeps reading (and so answers pings) while messages go
	// back and forth; the connection survives many ping intervals.
	for i := 0; i < 20; i++ {
		send(t, c, `<message xmlns="jabber:client" to="echo" id="p"/>`)
		for j := 0; j < 3; j++ {
			recv(t, c)
		}
	}
	select {
	case err := <-e.ends:
		t.Fatalf("connection ended: %v", err)
	default:
	}
}

func TestWriteFramedLeavesElementAlone(t *testing.T) {
	el := wire.New("message", "to", "a@b")
	buf := wire.GetBuffer()
	WriteFramed(buf, el)
	if !strings.Contains(buf.String(), `xmlns="jabber:client"`) || el.HasAttr("xmlns") {
		t.Errorf("framed %q; element now %s", buf.String(), el)
	}
}
