package servertest

import (
	"context"
	"errors"
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
	config := func(domain, listen, peer, peerAddr string) *conf.Config {
		cfg := DefaultConfig(t)
		cfg.Domain = domain
		cfg.S2S.Listen = listen
		cfg.S2S.Hosts = map[string]string{peer: peerAddr}
		cfg.S2S.DialbackSecret = "shared-only-within-one-domain-" + domain
		cfg.S2S.ConnectTimeout = 10 * time.Second
		return cfg
	}
	for attempt := 1; ; attempt++ {
		// Each node must know the other's address before either listens,
		// so the ports are picked free and bound a moment later; another
		// process may take one in between (CI saw it once). Pick again.
		addrA, addrB := FreeAddr(t), FreeAddr(t)
		na, err := startServer(config(a, addrA, b, addrB), server.WithService(server.NewFederationService()))
		if err == nil {
			var nb *server.Node
			if nb, err = startServer(config(b, addrB, a, addrA), server.WithService(server.NewFederationService())); err == nil {
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
