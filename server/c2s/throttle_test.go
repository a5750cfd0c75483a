package c2s_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// metricValues reads the node's metrics as name/label.../label → value.
func metricValues(n *server.Node) (map[string]float64, error) {
	mfs, err := n.Gatherer().Gather()
	if err != nil {
		return nil, err
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return got, nil
}

// dialFrom opens a direct-TLS stream from the loopback address src
// (127.0.0.x), as a client at another address would.
func dialFrom(t *testing.T, n *server.Node, src string) *servertest.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", n.Addr(server.ListenerC2STLS).String())
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := servertest.NewClient(t, tc, "localhost")
	c.Open()
	return c
}

// guess sends a wrong PLAIN password for user: the attacker's bytes.
func guess(t *testing.T, c *servertest.Client, user string, i int) {
	t.Helper()
	c.SendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + servertest.Base64(fmt.Sprintf("\x00%s\x00guess%d", user, i)) + "</auth>")
	if f := c.ExpectName("failure"); f.Child("not-authorized", "") == nil {
		t.Errorf("guess %d: %s", i, f)
	}
}

// parallel runs fn for each client at once and waits for all.
func parallel(cs []*servertest.Client, fn func(i int, c *servertest.Client)) {
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); fn(i, c) }()
	}
	wg.Wait()
}

// TestSASLAttemptsQueuePerAddress: after a failure, parallel connections
// from one address wait their turn one after another instead of all
// waiting out one deadline and guessing together (300 connections gave
// 32.8 guesses a second). The schedule shows in the throttle's metrics:
// the first failure's delay has passed when the four attempts come, so
// without the queue none waits; queued they wait 0, 1, 2 and 3 delays
// (less the time between their arrivals).
func TestSASLAttemptsQueuePerAddress(t *testing.T) {
	const delay = 300 * time.Millisecond
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.SASLFailureDelay = delay
	cfg.C2S.SASLAccountFailures = -1 // the address gate alone
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "carol", "carolpw")
	watcher := canary(t, n)

	guess(t, dialFrom(t, n, "127.0.0.2"), "alice", 0)
	var cs []*servertest.Client
	for range 4 {
		cs = append(cs, dialFrom(t, n, "127.0.0.2"))
	}
	parallel(cs, func(i int, c *servertest.Client) { guess(t, c, "alice", i+1) })
	m, err := metricValues(n)
	if err != nil {
		t.Fatal(err)
	}
	if w := m["aviary_sasl_throttle_wait_seconds_total/address"]; w < (2 * delay).Seconds() {
		t.Errorf("four parallel attempts waited %.2fs in all; queued they wait about %.2fs", w, (6 * delay).Seconds())
	}
	checkCanary(t, watcher)
}

// TestSASLAccountThrottle: guesses at one account from many addresses
// are spaced out once the account has failed c2s.sasl_account_failures
// times, each address waiting its turn; the owner, at yet another
// address, still logs in (slowed by at most a few capped spacings,
// never locked out), and that clears the account's record.
func TestSASLAccountThrottle(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.SASLFailureDelay = 200 * time.Millisecond
	cfg.C2S.SASLAccountFailures = 2
	cfg.C2S.SASLMaxAccountDelay = time.Second
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "carol", "carolpw")
	watcher := canary(t, n)

	for i := range 3 { // three failures: the account's spacing starts
		guess(t, dialFrom(t, n, fmt.Sprintf("127.0.0.%d", 10+i)), "alice", i)
	}
	var cs []*servertest.Client
	for i := range 4 { // fresh addresses: no address delay of their own
		cs = append(cs, dialFrom(t, n, fmt.Sprintf("127.0.0.%d", 20+i)))
	}
	parallel(cs, func(i int, c *servertest.Client) { guess(t, c, "alice", 10+i) })
	m, err := metricValues(n)
	if err != nil {
		t.Fatal(err)
	}
	if m["aviary_sasl_throttle_waits_total/account"] < 3 || m["aviary_sasl_throttle_failures_total/account"] < 7 {
		t.Errorf("parallel guesses from four addresses were not spaced on the account: %v", m)
	}
	owner := dialFrom(t, n, "127.0.0.30")
	if err := owner.AuthPLAIN("alice", "alicepw"); err != nil {
		t.Fatalf("the owner is locked out: %v", err)
	}
	// The success cleared the account: the next guess does not wait on it.
	before := m["aviary_sasl_throttle_waits_total/account"]
	guess(t, dialFrom(t, n, "127.0.0.31"), "alice", 99)
	if m, _ = metricValues(n); m["aviary_sasl_throttle_waits_total/account"] > before+1 {
		t.Errorf("account waits went from %v to %v after the owner's success", before, m["aviary_sasl_throttle_waits_total/account"])
	}
	checkCanary(t, watcher)
}
