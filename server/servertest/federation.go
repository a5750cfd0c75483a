package servertest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
)

// RunFederatedPair starts two nodes for domains a and b that federate with
// each other over s2s on loopback (self-signed certificates, so Server
// Dialback), each with the built-in plugins.
func RunFederatedPair(t testing.TB, a, b string) (*server.Node, *server.Node) {
	t.Helper()
	return RunFederatedPairWith(t, a, b, FederatedPair{})
}

// FederatedPair adjusts RunFederatedPairWith.
type FederatedPair struct {
	// Subdomains are labels of service domains both nodes serve
	// ("rooms" for rooms.<domain>); each node finds the other's at the
	// other's s2s address, as SRV records would say.
	Subdomains []string
	// Options are added to both nodes (server.WithPlugins, ...).
	Options []server.Option
	// AToB, when set, is given b's s2s address and returns the address
	// node a dials for b (a proxy the test controls); b dials a directly.
	AToB func(addrB string) string
}

// RunFederatedPairWith is RunFederatedPair with service domains and node
// options.
func RunFederatedPairWith(t testing.TB, a, b string, fp FederatedPair) (*server.Node, *server.Node) {
	t.Helper()
	config := func(domain, listen, peer, peerAddr string) *conf.Config {
		cfg := DefaultConfig(t)
		cfg.Domain = domain
		cfg.S2S.Listen = listen
		cfg.S2S.Hosts = map[string]string{peer: peerAddr}
		for _, sub := range fp.Subdomains {
			cfg.S2S.Hosts[sub+"."+peer] = peerAddr
		}
		cfg.S2S.DialbackSecret = "shared-only-within-one-domain-" + domain
		cfg.S2S.ConnectTimeout = 10 * time.Second
		return cfg
	}
	for attempt := 1; ; attempt++ {
		// Each node must know the other's address before either listens,
		// so the ports are picked free and bound a moment later; another
		// process may take one in between (CI saw it once). Pick again.
		addrA, addrB := FreeAddr(t), FreeAddr(t)
		viaB := addrB
		if fp.AToB != nil {
			viaB = fp.AToB(addrB)
		}
		na, err := startServer(config(a, addrA, b, viaB), append([]server.Option{server.WithService(server.NewFederationService())}, fp.Options...)...)
		if err == nil {
			var nb *server.Node
			if nb, err = startServer(config(b, addrB, a, addrA), append([]server.Option{server.WithService(server.NewFederationService())}, fp.Options...)...); err == nil {
				stopAtCleanup(t, na)
				stopAtCleanup(t, nb)
				return na, nb
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = na.Stop(ctx)
			cancel()
		}
		if attempt == 3 || !(errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) {
			t.Fatalf("servertest: %v", err)
		}
	}
}

// FreeAddr returns a loopback address free at the time of the call (for a
// listener that must be known before it is opened, such as a peer's s2s).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// DialS2S opens a server-to-server stream to addr as a peer claiming
// domain from would, by hand: stream header, STARTTLS (no client
// certificate, the server's not verified) and the header again. It
// returns the client on the secure stream, with its features read and
// StreamHeader (whose id dialback keys use) set; nothing is
// authenticated. For tests that play a hostile or broken peer.
func DialS2S(t testing.TB, addr, from, to string) *Client {
	t.Helper()
	header := fmt.Sprintf("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "+
		"xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>", from, to)
	c := DialRaw(t, addr, to, false)
	c.SendRaw(header)
	c.ReadHeaderAndFeatures()
	c.SendRaw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	c.ExpectName("proceed")
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true, ServerName: to})
	_ = tc.SetDeadline(time.Now().Add(c.Timeout))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("servertest: TLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c = NewClient(t, tc, to)
	c.SendRaw(header)
	c.ReadHeaderAndFeatures()
	return c
}
