package httpd_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/bosh"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	dto "github.com/prometheus/client_model/go"
)

// TestBOSHClosedTabMessageGoesOffline is issue 17's lost message: carol is
// online over BOSH, her tab closes while a request is held (the HTTP
// connection goes away), and dave sends her a message before her session
// times out. The message must not be written to the abandoned request:
// when the session ends it goes to offline storage, and carol's next
// login receives it. Here the server notices the closed connection before
// the message comes; TestBOSHMessageWrittenToClosedTabGoesOffline is the
// other order.
func TestBOSHClosedTabMessageGoesOffline(t *testing.T) {
	n, svc, base := node(t, func(c *conf.Config) { c.HTTP.BOSHInactivity = time.Second })
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "dave", "pw-dave")
	dave := servertest.Dial(t, n)
	dave.Login("dave", "pw-dave", "desk")

	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 100, wait: "10"}
	b.login("carol", "pw-carol", "tab")
	b.post("", "<presence xmlns='jabber:client'/>") // available: messages to her bare JID come here

	// The tab's last request is held; then the tab closes: its own
	// connection (a transport of its own) goes away with it.
	tab := &http.Transport{}
	ctx, closeTab := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		body := fmt.Sprintf("<body xmlns='%s' rid='%d' sid='%s'/>", bosh.NSHTTPBind, b.rid+1, b.sid)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.url, strings.NewReader(body))
		resp, err := (&http.Client{Transport: tab}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	awaitHeld(t, svc.Server().BOSH(), b.sid, 1)
	closeTab()
	<-held
	tab.CloseIdleConnections()
	awaitHeld(t, svc.Server().BOSH(), b.sid, 0) // the server saw the tab go

	dave.Send("<message to='carol@localhost' type='chat' id='m1'><body>while you were away</body></message>")

	// The session ends (inactivity, counted from when the tab left) and
	// takes the message to offline storage.
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if res, _ := n.Router().Resources(context.Background(), "carol@localhost"); len(res) != 0 {
			return fmt.Errorf("carol still has %v", res)
		}
		return nil
	})
	carol := servertest.Dial(t, n)
	carol.Login("carol", "pw-carol", "desk")
	carol.Send("<presence/>")
	if m := carol.Await("the message sent after the tab closed", isMsg("while you were away")); m.ID() != "m1" {
		t.Errorf("got %s", m)
	}
}

// TestBOSHMessageWrittenToClosedTabGoesOffline is issue 17's lost message
// in the order that lost it: the message reaches carol's held request
// before the server notices that her tab has closed, so it is written,
// without error, into a connection whose page is gone (here: read off the
// socket by a client that then closes it, as a tab closing while the
// answer is on its way). Nothing confirms that carol has it (no later
// request), so when the session ends it goes to offline storage like
// anything else she was not shown to have.
func TestBOSHMessageWrittenToClosedTabGoesOffline(t *testing.T) {
	n, svc, base := node(t, func(c *conf.Config) { c.HTTP.BOSHInactivity = time.Second })
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "dave", "pw-dave")
	dave := servertest.Dial(t, n)
	dave.Login("dave", "pw-dave", "desk")

	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 100, wait: "10"}
	b.login("carol", "pw-carol", "tab")
	b.post("", "<presence xmlns='jabber:client'/>")

	// The tab's last request, on a connection of its own.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := fmt.Sprintf("<body xmlns='%s' rid='%d' sid='%s'/>", bosh.NSHTTPBind, b.rid+1, b.sid)
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s", httpd.PathBOSH, len(body), body)
	awaitHeld(t, svc.Server().BOSH(), b.sid, 1)

	dave.Send("<message to='carol@localhost' type='chat' id='m1'><body>while you were away</body></message>")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(got), "while you were away") {
		t.Fatalf("held request answered %q, %v; want the message", got, err)
	}
	conn.Close() // the page that would have shown it is gone

	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if res, _ := n.Router().Resources(context.Background(), "carol@localhost"); len(res) != 0 {
			return fmt.Errorf("carol still has %v", res)
		}
		return nil
	})
	carol := servertest.Dial(t, n)
	carol.Login("carol", "pw-carol", "desk")
	carol.Send("<presence/>")
	if m := carol.Await("the message written to the closed tab", isMsg("while you were away")); m.ID() != "m1" {
		t.Errorf("got %s", m)
	}
}

// A message the client acknowledged with stream management (XEP-0198)
// is delivered, whatever BOSH could confirm: when the session ends before
// a later request confirmed the response that carried it, it is not
// stored offline again.
func TestBOSHStreamAckedMessageNotRepeated(t *testing.T) {
	n, _, base := node(t, func(c *conf.Config) { c.HTTP.BOSHInactivity = time.Second })
	servertest.CreateUser(t, n, "carol", "pw-carol")
	servertest.CreateUser(t, n, "dave", "pw-dave")
	dave := servertest.Dial(t, n)
	dave.Login("dave", "pw-dave", "desk")
	closed := make(chan struct{})
	remove := n.Hooks().Add(plugins.EventSessionClosed, 0, func(ctx context.Context, payload any) error {
		if ev, ok := payload.(*plugins.SessionEvent); ok && ev.JID == "carol@localhost/tab" {
			close(closed)
		}
		return nil
	})
	defer remove()

	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 100}
	b.login("carol", "pw-carol", "tab")
	b.post("", "<enable xmlns='urn:xmpp:sm:3'/>")
	b.expect("enabled", named("enabled"))
	dave.Send("<message to='carol@localhost/tab' type='chat' id='m1'><body>acknowledged</body></message>")
	b.expect("the message", isMsg("acknowledged"))
	b.post("", "<a xmlns='urn:xmpp:sm:3' h='1'/>") // the only stanza since <enabled/>
	// The tab closes: no further request confirms the response that
	// carried the message.
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("carol's BOSH session did not end")
	}
	if c, err := n.Store().CountOffline(context.Background(), "carol@localhost"); err != nil || c != 0 {
		t.Errorf("%d offline messages (%v); the acknowledged message was stored again", c, err)
	}
}

// awaitHeld waits until the session sid holds want requests.
func awaitHeld(t *testing.T, m *bosh.Manager, sid string, want int) {
	t.Helper()
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		s := m.Session(sid)
		if s == nil {
			return fmt.Errorf("no session %s", sid)
		}
		if got := s.Held(); got != want {
			return fmt.Errorf("session holds %d requests, want %d", got, want)
		}
		return nil
	})
}

// TestBOSHInactivityIsLoggedAsSuch: a BOSH session whose client stops
// sending requests ends as inactivity_timeout (it was counted and logged
// as read_error, which sent operators looking for network faults), and
// while it lasts the node counts and describes it as a BOSH session.
func TestBOSHInactivityIsLoggedAsSuch(t *testing.T) {
	n, _, base := node(t, func(c *conf.Config) { c.HTTP.BOSHInactivity = time.Second })
	servertest.CreateUser(t, n, "carol", "pw-carol")
	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 100, wait: "1"}
	b.login("carol", "pw-carol", "tab")
	if got := gaugeValue(t, n, "aviary_c2s_sessions_by_transport", "transport", "bosh"); got != 1 {
		t.Errorf("bosh sessions = %v, want 1", got)
	}
	var info c2s.SessionInfo
	for _, s := range n.Router().LocalSessions() {
		info = s.(*c2s.Session).Info()
	}
	if info.Transport != c2s.TransportBOSH || info.Addr != "127.0.0.1" || info.JID != "carol@localhost/tab" || info.Since.IsZero() {
		t.Errorf("session info %+v", info)
	}
	// The client goes away without terminating.
	servertest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := counterValue(t, n, "aviary_c2s_closes_total", "reason", "inactivity_timeout"); got != 1 {
			return fmt.Errorf("closes by inactivity = %v", got)
		}
		return nil
	})
	if got := counterValue(t, n, "aviary_c2s_closes_total", "reason", "read_error"); got > 0 {
		t.Errorf("closes by read_error = %v, want 0", got)
	}
	if got := gaugeValue(t, n, "aviary_c2s_sessions_by_transport", "transport", "bosh"); got != 0 {
		t.Errorf("bosh sessions after the timeout = %v, want 0", got)
	}
}

// metricValue reads one series of the node's metrics (-1 when absent).
func metricValue(t *testing.T, n *server.Node, name, label, value string, read func(*dto.Metric) float64) float64 {
	t.Helper()
	mfs, err := n.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return read(m)
				}
			}
		}
	}
	return -1
}

func gaugeValue(t *testing.T, n *server.Node, name, label, value string) float64 {
	return metricValue(t, n, name, label, value, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

func counterValue(t *testing.T, n *server.Node, name, label, value string) float64 {
	return metricValue(t, n, name, label, value, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}
