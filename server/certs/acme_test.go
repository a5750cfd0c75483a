package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/certs"
	"github.com/aviary-im/aviary/server/certs/pebbletest"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
	dto "github.com/prometheus/client_model/go"
)

// These tests get real certificates from Pebble, Let's Encrypt's ACME
// test server, which validates for real: its DNS sends every name to
// 127.0.0.1 and its validation authority connects to the node's HTTP
// listener (HTTP-01) or direct-TLS listener (TLS-ALPN-01) on the ports
// it is given.

func TestMain(m *testing.M) { pgtest.Main(m) }

const domain = "chat.aviary.test"

// logBuffer collects a node's log for assertions.
type logBuffer struct{ testutil.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// acmeConfig is a node of domain with ACME on, pointed at p.
func acmeConfig(t *testing.T, p *pebbletest.Pebble, node string) *conf.Config {
	cfg := servertest.DefaultConfig(t)
	cfg.Domain = domain
	cfg.Cluster.NodeName = node
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.TLS.ACME.Enabled = true
	cfg.TLS.ACME.Directory = p.Directory
	cfg.TLS.ACME.CAFile = p.CAFile
	cfg.TLS.ACME.Email = "admin@aviary.test"
	cfg.TLS.ACME.Names = []string{}
	return cfg
}

// waitForACME waits until n serves an ACME certificate for every name.
func waitForACME(t *testing.T, n *server.Node, names ...string) {
	t.Helper()
	servertest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		for _, name := range names {
			if c := n.Certs().Lookup(name); c == nil || c.Source != certs.SourceACME {
				return fmt.Errorf("%s: no ACME certificate yet (status %+v)", name, status(n))
			}
		}
		return nil
	})
}

func status(n *server.Node) []certs.NameStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, _ := n.Certs().Status(ctx)
	return st
}

// handshake connects with TLS to addr as SNI name and returns the chain.
func handshake(t *testing.T, addr net.Addr, name string) []*x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr.String(),
		&tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake with %s as %s: %v", addr, name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates
}

// verify checks that chain is valid for name under Pebble's root.
func verify(t *testing.T, chain []*x509.Certificate, roots *x509.CertPool, name string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("certificate served for %s does not verify under Pebble's root: %v", name, err)
	}
}

func serial(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber.Bytes()) }

// metric returns the value of a metric with the given labels, or -1.
func metric(t *testing.T, n *server.Node, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := n.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return value(m)
		}
	}
	return -1
}

func value(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// TestACMEHTTP01 gets certificates for the domain and its three service
// names by HTTP-01 on the node's HTTP listener, and serves each on direct
// TLS, STARTTLS and HTTPS, chained to Pebble's root.
func TestACMEHTTP01(t *testing.T) {
	httpPort := pebbletest.FreePort(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort})
	cfg := acmeConfig(t, p, "n1")
	cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", httpPort)
	cfg.HTTP.TLSListen = "127.0.0.1:0"
	cfg.TLS.ACME.Names = nil // the default service names
	cfg.TLS.ACME.Challenges = []string{"http-01"}
	var logs logBuffer
	web := httpd.NewService()
	n := servertest.RunServer(t, cfg, server.WithService(web), server.WithLogger(logs.logger()))

	names := cfg.ACMENames()
	if want := "chat.aviary.test conference.chat.aviary.test upload.chat.aviary.test pubsub.chat.aviary.test"; strings.Join(names, " ") != want {
		t.Fatalf("names %v, want %s", names, want)
	}
	waitForACME(t, n, names...)
	roots := p.Roots(t)
	for _, name := range names {
		stored := n.Certs().Lookup(name)
		chain := handshake(t, n.Addr(server.ListenerC2STLS), name)
		verify(t, chain, roots, name)
		if serial(chain[0]) != stored.Serial || len(chain[0].DNSNames) != 1 {
			t.Errorf("%s: served serial %s names %v, stored %s", name, serial(chain[0]), chain[0].DNSNames, stored.Serial)
		}
		if got := metric(t, n, "aviary_certificate_expiry_timestamp_seconds", map[string]string{"name": name}); got != float64(stored.NotAfter.Unix()) {
			t.Errorf("%s: expiry gauge %v, want %d", name, got, stored.NotAfter.Unix())
		}
		if got := metric(t, n, "aviary_certificate_renewals_total", map[string]string{"name": name}); got != 1 {
			t.Errorf("%s: renewals counter %v, want 1", name, got)
		}
	}
	verify(t, handshake(t, web.Addr(httpd.ListenerHTTPS), domain), roots, domain)

	c := servertest.Dial(t, n)
	c.StartTLS()
	verify(t, c.Conn.(*tls.Conn).ConnectionState().PeerCertificates, roots, domain)
	c.Close()

	if !strings.Contains(logs.String(), "answering HTTP-01 challenge") || !strings.Contains(logs.String(), "obtained certificate") {
		t.Errorf("log lacks the challenge answers or the obtained certificates:\n%s", logs.String())
	}
}

// TestACMETLSALPN01 validates by TLS-ALPN-01 on the direct-TLS listener,
// with no HTTP listener at all.
func TestACMETLSALPN01(t *testing.T) {
	tlsPort := pebbletest.FreePort(t)
	p := pebbletest.Start(t, pebbletest.Options{TLSPort: tlsPort})
	cfg := acmeConfig(t, p, "n1")
	cfg.HTTP.Listen = "off"
	cfg.C2S.TLSListen = fmt.Sprintf("127.0.0.1:%d", tlsPort)
	cfg.TLS.ACME.Challenges = []string{"tls-alpn-01"}
	var logs logBuffer
	n := servertest.RunServer(t, cfg, server.WithLogger(logs.logger()))
	waitForACME(t, n, domain)
	verify(t, handshake(t, n.Addr(server.ListenerC2STLS), domain), p.Roots(t), domain)
	if !strings.Contains(logs.String(), "answering TLS-ALPN-01 challenge") {
		t.Errorf("no TLS-ALPN-01 answer in the log:\n%s", logs.String())
	}
}

// TestACMEFailureThenOtherChallenge: HTTP-01 fails (Pebble's validation
// connects to a port nobody listens on); the failure is logged and
// counted, and the next attempt, after the retry delay, uses TLS-ALPN-01
// and succeeds, which clears the failure record.
func TestACMEFailureThenOtherChallenge(t *testing.T) {
	tlsPort, deadPort := pebbletest.FreePort(t), pebbletest.FreePort(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: deadPort, TLSPort: tlsPort})
	cfg := acmeConfig(t, p, "n1")
	cfg.C2S.TLSListen = fmt.Sprintf("127.0.0.1:%d", tlsPort)
	var logs logBuffer
	n := servertest.RunServer(t, cfg, server.WithService(httpd.NewService()), server.WithLogger(logs.logger()),
		server.WithCertOptions(func(o *certs.Options) { o.RetryBase = 300 * time.Millisecond }))
	waitForACME(t, n, domain)
	failed := ""
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "ACME order failed") {
			failed = line
			break
		}
	}
	if !strings.Contains(failed, "challenges=http-01,tls-alpn-01") || !strings.Contains(failed, "http-01 challenge") || !strings.Contains(failed, "failures=1") {
		t.Errorf("no failed http-01 attempt logged: %q", failed)
	}
	if !strings.Contains(logs.String(), "answering TLS-ALPN-01 challenge") {
		t.Error("the second attempt did not use TLS-ALPN-01")
	}
	if got := metric(t, n, "aviary_certificate_renewal_failures_total", map[string]string{"name": domain}); got != 1 {
		t.Errorf("failure counter %v, want 1", got)
	}
	if st := status(n); len(st) != 1 || st[0].Failures != 0 || st[0].LastError != "" {
		t.Errorf("after the success the failure record remains: %+v", st)
	}
}

// TestACMECluster: three nodes on one PostgreSQL database. Pebble
// validates HTTP-01 against node b, which has ACME off; node a orders, so
// b answers a's challenges from the shared store. b then serves a's
// certificates without a restart, and node c, started later with ACME
// on, serves them too without ordering its own.
func TestACMECluster(t *testing.T) {
	url := pgtest.Shared(t).NewSchema(t)
	conference := "conference." + domain

	var logsB logBuffer
	cfgB := servertest.DefaultConfig(t)
	cfgB.Domain, cfgB.Cluster.NodeName, cfgB.Database.URL = domain, "b", url
	cfgB.HTTP.Listen = "127.0.0.1:0"
	webB := httpd.NewService()
	b := servertest.RunServer(t, cfgB, server.WithService(webB), server.WithLogger(logsB.logger()))
	httpB := webB.Addr(httpd.ListenerHTTP).(*net.TCPAddr)

	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpB.Port})
	newACMENode := func(name string, opts ...server.Option) (*server.Node, *logBuffer) {
		cfg := acmeConfig(t, p, name)
		cfg.Database.URL = url
		cfg.TLS.ACME.Names = []string{conference}
		cfg.TLS.ACME.Challenges = []string{"http-01"}
		var logs logBuffer
		opts = append(opts, server.WithService(httpd.NewService()), server.WithLogger(logs.logger()))
		return servertest.RunServer(t, cfg, opts...), &logs
	}
	a, logsA := newACMENode("a")
	waitForACME(t, a, domain, conference)
	if !strings.Contains(logsB.String(), "answering HTTP-01 challenge") {
		t.Errorf("b did not answer a's challenges:\n%s", logsB.String())
	}
	if strings.Contains(logsA.String(), "answering HTTP-01 challenge") {
		t.Error("a answered a challenge itself, but Pebble validates on b's port")
	}

	roots := p.Roots(t)
	for _, name := range []string{domain, conference} {
		want := a.Certs().Lookup(name).Serial
		servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if got := serial(handshake(t, b.Addr(server.ListenerC2STLS), name)[0]); got != want {
				return fmt.Errorf("b serves %s for %s, a stored %s", got, name, want)
			}
			return nil
		})
		verify(t, handshake(t, b.Addr(server.ListenerC2STLS), name), roots, name)
	}

	checked := make(chan []string, 10)
	c, _ := newACMENode("c", server.WithCertOptions(func(o *certs.Options) {
		o.Checked = func(due []string) {
			select {
			case checked <- due:
			default: // later looks are not needed; never block c's loop
			}
		}
	}))
	select {
	case due := <-checked:
		if len(due) != 0 {
			t.Errorf("c found %v due although a's certificates are stored", due)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("c never looked at what is due")
	}
	for _, name := range []string{domain, conference} {
		stored := c.Certs().Lookup(name)
		if stored == nil || stored.Serial != a.Certs().Lookup(name).Serial || stored.Node != "a" {
			t.Errorf("c serves %+v for %s, want a's certificate", stored, name)
		}
		if got := serial(handshake(t, c.Addr(server.ListenerC2STLS), name)[0]); got != stored.Serial {
			t.Errorf("c's handshake for %s: serial %s, want %s", name, got, stored.Serial)
		}
		if got := metric(t, c, "aviary_certificate_renewals_total", map[string]string{"name": name}); got > 0 {
			t.Errorf("c ordered %s itself (%v)", name, got)
		}
	}
}

// TestACMERenewal: certificates that live 20 s with renew_before 17 s are
// renewed 3 s after issue; an open listener serves the new certificate at
// the next handshake, and a connection opened before stays up.
func TestACMERenewal(t *testing.T) {
	httpPort := pebbletest.FreePort(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort, Validity: 20 * time.Second})
	cfg := acmeConfig(t, p, "n1")
	cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", httpPort)
	cfg.TLS.ACME.RenewBefore = 17 * time.Second
	var logs logBuffer
	n := servertest.RunServer(t, cfg, server.WithService(httpd.NewService()), server.WithLogger(logs.logger()))
	waitForACME(t, n, domain)

	addr := n.Addr(server.ListenerC2STLS)
	first := serial(handshake(t, addr, domain)[0])
	servertest.CreateUser(t, n, "alice", "secret-pw")
	open := servertest.DialTLS(t, n)
	defer open.Close()
	open.Login("alice", "secret-pw", "before")
	servertest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		if got := serial(handshake(t, addr, domain)[0]); got == first {
			return fmt.Errorf("still serving %s", first)
		}
		return nil
	})
	if n.Addr(server.ListenerC2STLS).String() != addr.String() {
		t.Error("the listener changed")
	}
	verify(t, handshake(t, addr, domain), p.Roots(t), domain)
	if !strings.Contains(logs.String(), "renewed certificate") || !strings.Contains(logs.String(), "replaces="+first) {
		t.Errorf("the renewal of %s is not logged:\n%s", first, logs.String())
	}
	// The connection opened before the renewal still works.
	open.Send("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>", domain)
	open.Expect("an answer on the old connection", func(e *wire.Element) bool { return e.Attr("id") == "v1" && e.Attr("type") == "result" })
}
