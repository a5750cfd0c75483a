package httpd_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/auth/authtest"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/wire"
	ws "github.com/coder/websocket"
)

// dialWSS opens a WebSocket over TLS to base (https://...) and returns it
// with the client's view of the TLS connection under it.
func dialWSS(t *testing.T, base string) (*wsClient, tls.ConnectionState) {
	t.Helper()
	var conn *tls.Conn
	tr := &http.Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}}).DialContext(ctx, network, addr)
		if err == nil {
			conn = c.(*tls.Conn)
		}
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "wss"+strings.TrimPrefix(base, "https")+httpd.PathWebSocket,
		&ws.DialOptions{Subprotocols: []string{"xmpp"}, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}, conn.ConnectionState()
}

// wsSCRAM runs RFC 6120 SASL with sc over the WebSocket; it returns
// "success" or the failure condition.
func wsSCRAM(w *wsClient, mech string, sc *authtest.SCRAM) string {
	w.t.Helper()
	w.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + mech + "'>" + base64.StdEncoding.EncodeToString(sc.First()) + "</auth>")
	for {
		el := w.next()
		switch el.Name {
		case "challenge":
			in, _ := base64.StdEncoding.DecodeString(el.AllText())
			out, err := sc.Final(in)
			if err != nil {
				w.t.Fatal(err)
			}
			w.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString(out) + "</response>")
		case "success":
			in, _ := base64.StdEncoding.DecodeString(el.AllText())
			if err := sc.Verify(in); err != nil {
				w.t.Fatal(err)
			}
			return "success"
		case "failure":
			return el.Children[0].Name
		default:
			w.t.Fatalf("unexpected %s", el)
		}
	}
}

// A WebSocket on the https listener binds to its TLS connection: the
// -PLUS mechanisms are offered with tls-exporter and tls-server-end-point
// (the node's one certificate), a client logs in with either, and a
// reverse proxy that terminates the client's TLS and opens its own to the
// server leaves the client's binding data wrong.
func TestWebSocketChannelBinding(t *testing.T) {
	svc := httpsNode(t)
	direct := "https://" + svc.Addr(httpd.ListenerHTTPS).String()

	target, _ := url.Parse(direct)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	proxy := httptest.NewTLSServer(rp)
	t.Cleanup(proxy.Close)

	for _, cbType := range []string{"tls-exporter", "tls-server-end-point"} {
		for _, via := range []struct{ name, base, want string }{
			{"direct", direct, "success"},
			{"through a TLS-terminating proxy", proxy.URL, "not-authorized"},
		} {
			w, cs := dialWSS(t, via.base)
			w.send(wsOpen)
			w.expect("open", named("open"))
			feat := w.expect("features", named("stream:features"))
			var types []string
			if cb := feat.Child("sasl-channel-binding", wire.NSSASLCB); cb != nil {
				for _, b := range cb.ChildrenNamed("channel-binding", "") {
					types = append(types, b.Attr("type"))
				}
			}
			if !slices.Equal(types, []string{"tls-exporter", "tls-server-end-point"}) || !strings.Contains(feat.String(), ">SCRAM-SHA-256-PLUS<") {
				t.Fatalf("%s: features %s, want -PLUS with tls-exporter and tls-server-end-point", via.name, feat)
			}
			data := authtest.Exporter(cs)
			if cbType == "tls-server-end-point" {
				var err error
				if data, err = authtest.ServerEndPoint(cs); err != nil {
					t.Fatal(err)
				}
			}
			sc := &authtest.SCRAM{Hash: sha256.New, User: "alice", Password: "pw-alice", GS2Flag: "p=" + cbType, CBData: data}
			if got := wsSCRAM(w, "SCRAM-SHA-256-PLUS", sc); got != via.want {
				t.Errorf("%s, %s: %s, want %s", cbType, via.name, got, via.want)
			}
		}
	}
}
