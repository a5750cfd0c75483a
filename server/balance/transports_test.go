package balance_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
	ws "github.com/coder/websocket"
)

// firstAfterOpen opens an RFC 7395 stream and returns the first message
// after the server's <open/>.
func firstAfterOpen(t *testing.T, httpAddr string) *wire.Element {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws://"+httpAddr+"/xmpp-websocket", &ws.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, ws.MessageText, []byte("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		el, err := wire.Parse(data, wire.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if el.Name != "open" {
			return el
		}
	}
	t.Fatal("nothing after <open/>")
	return nil
}

func TestRedirectOtherTransports(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", nil)
	b := startNode(t, h, st, "node-b", nil)
	if err := a.bal.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitReport(t, a)
	expectOtherTransportsSentTo(t, a, b)
}

// TestShedOtherTransports: the overload protection sheds WebSocket and
// BOSH clients the way a drain moves them: node-a's accept queue
// (c2s.max_negotiating 1) is full, and a new WebSocket stream gets
// see-other-uri, a new BOSH session remote-stream-error naming node-b.
func TestShedOtherTransports(t *testing.T) {
	h := newHub()
	st := sharedStore(t)
	a := startNode(t, h, st, "node-a", func(c *conf.Config) { c.C2S.MaxNegotiating = 1 })
	b := startNode(t, h, st, "node-b", nil)
	servertest.DialAddr(t, a.c2s(), "localhost", false) // fills the queue
	expectOtherTransportsSentTo(t, a, b)
}

// expectOtherTransportsSentTo checks that node a sends a new WebSocket
// stream and a new BOSH session to node b.
func expectOtherTransportsSentTo(t *testing.T, a, b *testNode) {
	t.Helper()
	t.Run("websocket gets see-other-uri", func(t *testing.T) {
		want := "ws://" + b.http() + "/xmpp-websocket"
		servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			el := firstAfterOpen(t, a.http())
			if el.Name != "close" || el.Attr("see-other-uri") != want {
				return fmt.Errorf("got %s, want <close see-other-uri='%s'/>", el, want)
			}
			return nil
		})
	})
	t.Run("bosh session is refused with the redirect inside", func(t *testing.T) {
		servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			body := "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' rid='1000' to='localhost' wait='10' hold='1' ver='1.11' xmpp:version='1.0'/>"
			resp, err := http.Post("http://"+a.http()+"/http-bind", "text/xml; charset=utf-8", strings.NewReader(body))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			el, err := wire.Parse(raw, wire.Limits{})
			if err != nil {
				return fmt.Errorf("%q: %v", raw, err)
			}
			// The creation response may come first; the terminate follows.
			if el.Attr("type") != "terminate" {
				sid := el.Attr("sid")
				resp2, err := http.Post("http://"+a.http()+"/http-bind", "text/xml; charset=utf-8",
					strings.NewReader(fmt.Sprintf("<body xmlns='http://jabber.org/protocol/httpbind' rid='1001' sid='%s'/>", sid)))
				if err != nil {
					return err
				}
				defer resp2.Body.Close()
				raw, _ = io.ReadAll(resp2.Body)
				if el, err = wire.Parse(raw, wire.Limits{}); err != nil {
					return fmt.Errorf("%q: %v", raw, err)
				}
			}
			se := el.Child("stream:error", "")
			if se == nil {
				for _, c := range el.Children {
					if c.Name == "error" || strings.HasSuffix(c.Name, ":error") {
						se = c
					}
				}
			}
			if el.Attr("type") != "terminate" || el.Attr("condition") != "remote-stream-error" || se == nil ||
				strings.TrimSpace(se.ChildText("see-other-host", wire.NSStreams)) != b.http() {
				return fmt.Errorf("got %s, want a remote-stream-error terminate naming %s", el, b.http())
			}
			return nil
		})
	})
}
