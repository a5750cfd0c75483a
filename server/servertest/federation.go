package servertest

import (
	"net"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
)

// RunFederatedPair starts two nodes for domains a and b that federate with
// each other over s2s on loopback (self-signed certificates, so Server
// Dialback), each with the built-in plugins.
func RunFederatedPair(t testing.TB, a, b string) (*server.Node, *server.Node) {
	t.Helper()
	addrA, addrB := FreeAddr(t), FreeAddr(t)
	start := func(domain, listen string, peers map[string]string) *server.Node {
		cfg := DefaultConfig(t)
		cfg.Domain = domain
		cfg.S2S.Listen = listen
		cfg.S2S.Hosts = peers
		cfg.S2S.DialbackSecret = "shared-only-within-one-domain-" + domain
		cfg.S2S.ConnectTimeout = 10 * time.Second
		return RunServer(t, cfg, server.WithService(server.NewFederationService()))
	}
	return start(a, addrA, map[string]string{b: addrB}), start(b, addrB, map[string]string{a: addrA})
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
