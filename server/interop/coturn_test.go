package interop

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/builtin"
	"github.com/aviary-im/aviary/plugins/extdisco"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestCoturnTakesExtdiscoCredentials: coturn (Debian), started with
// use-auth-secret and the node's external_services.secret, lets a client
// allocate a relay (turnutils_uclient) with the TURN credentials a user
// got from the node over XMPP (XEP-0215), and refuses the same request
// with credentials the node issued past their expiry.
func TestCoturnTakesExtdiscoCredentials(t *testing.T) {
	_, errServer := exec.LookPath("turnserver")
	_, errClient := exec.LookPath("turnutils_uclient")
	need(t, errServer == nil && errClient == nil, "coturn")
	const secret = "a shared secret for the test"
	port := freeUDPAndTCPPort(t)
	startCoturn(t, port, secret)

	cfg := servertest.DefaultConfig(t)
	cfg.ExternalServices = conf.ExternalServicesConfig{Secret: secret, Services: []conf.ExternalService{
		{Type: "stun", Host: "127.0.0.1", Port: port},
		{Type: "turn", Host: "127.0.0.1", Port: port, Name: "test relay"},
	}}
	cfg.ApplyDefaults()
	// The node's own plugins, with the extdisco clock movable so that the
	// node itself issues credentials that are already expired.
	var shift atomic.Int64
	ed := extdisco.New()
	ed.Now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	list := []plugins.Plugin{ed}
	for _, p := range builtin.New(cfg) {
		if p.ID() != extdisco.ID {
			list = append(list, p)
		}
	}
	n := servertest.RunServer(t, cfg, server.WithPlugins(list...))
	servertest.CreateUser(t, n, "romeo", "pw")
	c := servertest.Dial(t, n)
	c.Login("romeo", "pw", "phone")

	c.Send(`<iq type='get' id='info' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := c.Await("disco#info result", func(el *wire.Element) bool { return el.ID() == "info" })
	if !strings.Contains(info.String(), `var="urn:xmpp:extdisco:2"`) {
		t.Errorf("disco#info has no extdisco feature: %s", info)
	}

	turn := func(id string) (user, pass string) {
		t.Helper()
		c.Send(`<iq type='get' id='%s' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='turn'/></iq>`, id)
		res := c.Await("services result", func(el *wire.Element) bool { return el.ID() == id })
		s := res.Child("services", extdisco.NS)
		if res.Type() != "result" || s == nil || s.Child("service", "") == nil {
			t.Fatalf("services: %s", res)
		}
		svc := s.Child("service", "")
		if svc.Attr("host") != "127.0.0.1" || svc.Attr("port") != strconv.Itoa(port) || svc.Attr("expires") == "" {
			t.Fatalf("service: %s", svc)
		}
		return svc.Attr("username"), svc.Attr("password")
	}

	user, pass := turn("fresh")
	if out, err := allocate(t, port, user, pass); err != nil {
		t.Fatalf("allocation with fresh credentials failed: %v\n%s", err, out)
	}

	shift.Store(int64(-cfg.ExternalServices.CredentialTTL - time.Minute))
	user, pass = turn("expired")
	if out, err := allocate(t, port, user, pass); err == nil {
		t.Fatalf("allocation with expired credentials %s succeeded:\n%s", user, out)
	} else if !strings.Contains(string(out), "Cannot complete Allocation") {
		t.Fatalf("allocation failed otherwise than refused: %v\n%s", err, out)
	}
	// And a forged password for a live username is refused as well.
	shift.Store(0)
	user, _ = turn("forged")
	if out, err := allocate(t, port, user, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="); err == nil {
		t.Fatalf("allocation with a wrong password succeeded:\n%s", out)
	}
}

// allocate runs turnutils_uclient in client-to-client mode: two
// allocations on the relay and a few packets through them.
func allocate(t *testing.T, port int, user, pass string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, "turnutils_uclient", "-y", "-n", "1", "-m", "1", "-l", "100",
		"-u", user, "-w", pass, "-p", strconv.Itoa(port), "127.0.0.1").CombinedOutput()
}

// startCoturn runs turnserver on loopback with the TURN REST API secret,
// its relay ports next to port, and waits until it answers STUN.
func startCoturn(t *testing.T, port int, secret string) {
	t.Helper()
	dir := t.TempDir()
	relay := freeUDPAndTCPPort(t)
	lo, hi := relay, relay+40
	if hi > 65535 {
		lo, hi = relay-40, relay
	}
	startDaemon(t, "turnserver", dir, "turnserver", "-n",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port="+strconv.Itoa(port),
		fmt.Sprintf("--min-port=%d", lo), fmt.Sprintf("--max-port=%d", hi),
		"--use-auth-secret", "--static-auth-secret="+secret, "--realm=localhost",
		"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
		"--db="+filepath.Join(dir, "turndb"), "--pidfile="+filepath.Join(dir, "pid"),
		"--log-file=stdout", "--simple-log")
	servertest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "turnutils_stunclient", "-p", strconv.Itoa(port), "127.0.0.1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("turnserver not answering STUN yet: %v %s", err, out)
		}
		return nil
	})
}

// freeUDPAndTCPPort returns a loopback port free for both UDP and TCP at
// the time of the call (a TURN server listens on both).
func freeUDPAndTCPPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}
