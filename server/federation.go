package server

import (
	"context"
	"net"
	"sync"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/s2s"
)

// FederationService runs s2s for a node: it is a Service so the node starts
// it after the router and stops it before. With s2s.listen off it does
// nothing and remote domains get remote-server-not-found.
type FederationService struct {
	mu  sync.Mutex
	svc *s2s.Service
}

// NewFederationService returns the s2s service.
func NewFederationService() *FederationService { return &FederationService{} }

// Name is "s2s".
func (f *FederationService) Name() string { return "s2s" }

// Start wires s2s to the router in both directions and opens the listener.
func (f *FederationService) Start(ctx context.Context, n *Node) error {
	cfg := n.Config()
	if conf.Off(cfg.S2S.Listen) {
		return nil
	}
	svc := s2s.New(cfg, n.TLSConfig(), n.Router().FromRemote, n.Logger().With("component", "s2s"))
	// Service domains plugins claim (conference.DOMAIN) federate too.
	svc.ServesDomain = func(d string) bool { _, ok := n.Plugins().Service(d); return ok }
	if err := svc.Start(ctx); err != nil {
		return err
	}
	n.Router().SetFederation(svc)
	f.mu.Lock()
	f.svc = svc
	f.mu.Unlock()
	return nil
}

// Stop detaches s2s from the router and closes its streams.
func (f *FederationService) Stop(ctx context.Context) error {
	f.mu.Lock()
	svc := f.svc
	f.svc = nil
	f.mu.Unlock()
	if svc == nil {
		return nil
	}
	return svc.Stop(ctx)
}

// Stats reports the live streams (nil before Start).
func (f *FederationService) Stats() s2s.Stats {
	f.mu.Lock()
	svc := f.svc
	f.mu.Unlock()
	if svc == nil {
		return s2s.Stats{}
	}
	return svc.Stats()
}

// Addr is the s2s listener's address (nil when off).
func (f *FederationService) Addr() net.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.svc == nil {
		return nil
	}
	return f.svc.Addr()
}
