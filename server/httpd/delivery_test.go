package httpd_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
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
// login receives it.
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
