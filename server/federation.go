package server

import (
	"context"
	"net"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/s2s"
)

// FederationService runs s2s for a node: it is a Service so the node starts
// it after the router and stops it before. With s2s.listen off it does
// nothing and remote domains get remote-server-not-found.
type FederationService struct {
	svc Running[*s2s.Service]
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
	svc := s2s.New(cfg.S2S, s2s.Deps{
		Domain: cfg.Domain, MaxStanzaBytes: cfg.C2S.MaxStanzaBytes, TLS: n.TLSConfig(),
		Deliver: n.Router().FromRemote, Logger: n.Logger().With("component", "s2s"),
	})
	// Service domains plugins claim (conference.DOMAIN) federate too.
	svc.ServesDomain = func(d string) bool { _, ok := n.Plugins().Service(d); return ok }
	if err := svc.Start(ctx); err != nil {
		return err
	}
	n.Router().SetFederation(svc)
	f.svc.Set(svc)
	return nil
}

// Stop closes s2s's streams.
func (f *FederationService) Stop(ctx context.Context) error { return f.svc.Stop(ctx) }

// Stats reports the live streams (nil before Start).
func (f *FederationService) Stats() s2s.Stats {
	if svc, ok := f.svc.Get(); ok {
		return svc.Stats()
	}
	return s2s.Stats{}
}

// Addr is the s2s listener's address (nil when off).
func (f *FederationService) Addr() net.Addr {
	if svc, ok := f.svc.Get(); ok {
		return svc.Addr()
	}
	return nil
}
