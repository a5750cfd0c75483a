package server_test

import (
	"context"
	"testing"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// addrService reads the node's listener address and context from its
// Start, as server/balance does; Node.Start holds its lock meanwhile.
type addrService struct {
	addr string
	ctx  context.Context
}

func (s *addrService) Name() string { return "addr-probe" }

func (s *addrService) Start(ctx context.Context, n *server.Node) error {
	if a := n.Addr(server.ListenerC2S); a != nil {
		s.addr = a.String()
	}
	s.ctx = n.Context()
	return nil
}

func (s *addrService) Stop(context.Context) error { return nil }

// TestServiceStartSeesListeners: a service may call Addr and Context from
// Start without deadlocking, and sees the bound client listener.
func TestServiceStartSeesListeners(t *testing.T) {
	svc := &addrService{}
	n := servertest.RunServer(t, servertest.DefaultConfig(t), server.WithService(svc))
	if want := n.Addr(server.ListenerC2S).String(); svc.addr != want {
		t.Errorf("service saw c2s addr %q, want %q", svc.addr, want)
	}
	if svc.ctx == nil || svc.ctx.Err() != nil {
		t.Errorf("service got context %v", svc.ctx)
	}
}
