package plugins

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aviary-im/aviary/wire"
)

// This file is service domains: a plugin claims a subdomain of the node's
// domain (conference.example.org) and receives every stanza addressed to
// it or to any JID at it (room@conference.example.org/nick).

// Service is a subdomain of the node's domain that a plugin serves.
type Service struct {
	// Domain is a subdomain of Host.Domain(), such as
	// "conference.example.org", usually named in the plugin's settings.
	Domain string
	// Name is what the domain's disco#items shows for it ("Chatrooms").
	Name string
	// Handle receives every stanza (message, presence, IQ of any
	// namespace, results and errors too) addressed to Domain or to a JID
	// at it, on the node where it arrived: from local clients on any
	// transport, from the server itself and from federated servers over
	// s2s, its 'from' checked by then. Every node of a cluster runs the
	// plugin, so each one's Handle gets the stanzas that arrive there; to
	// keep state on one node per key, pass them on with plugins/placement.
	//
	// It runs on the router's goroutine (the sender's reader): hand long
	// work elsewhere. It may keep el. A *wire.StanzaError is bounced to
	// the sender as is, any other error as internal-server-error; nil means
	// the plugin took the stanza (and answers it, if anything).
	Handle func(ctx context.Context, el *wire.Element) error
}

// ScopedHost is a Host that gives each plugin a view of its own: Cluster
// namespaced by the plugin's ID, ServeDomain recording who claims what.
// The Manager starts every plugin with HostFor(p); the server's Host and
// plugintest's implement it.
type ScopedHost interface {
	Host
	ForPlugin(id string) Host
}

// HostFor returns the Host plugin p is started with: h's view for p when
// h is a ScopedHost, h itself otherwise.
func HostFor(h Host, p Plugin) Host {
	if s, ok := h.(ScopedHost); ok {
		return s.ForPlugin(p.ID())
	}
	return h
}

// HostFor returns the Host the manager starts plugin p with.
func (m *Manager) HostFor(p Plugin) Host { return HostFor(m.host, p) }

// services is the registry of claimed service domains: a copy-on-write
// map read without a lock on the stanza path (every stanza for another
// domain asks it).
type services struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]*claim]
}

type claim struct {
	Service
	plugin string
}

// ServeDomain registers s for plugin (what Host.ServeDomain does): the
// domain must be a subdomain of the node's domain, not claimed by another
// plugin, and have a handler. The same plugin claiming it again replaces
// its handler (a new version taking over). The returned function releases
// the claim, unless a later claim replaced it; Stop and a failed Start
// release a plugin's claims as well.
func (m *Manager) ServeDomain(plugin string, s Service) (release func(), err error) {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s.Domain)), ".")
	domain := strings.ToLower(m.host.Domain())
	switch {
	case s.Handle == nil:
		return nil, fmt.Errorf("plugins: %s: service %q has no handler", plugin, s.Domain)
	case d == "" || !strings.HasSuffix(d, "."+domain) || strings.ContainsAny(d, "@/ ") || strings.HasPrefix(d, "."):
		return nil, fmt.Errorf("plugins: %s: service domain %q is not a subdomain of %s", plugin, s.Domain, domain)
	}
	s.Domain = d
	c := &claim{Service: s, plugin: plugin}
	m.svc.mu.Lock()
	defer m.svc.mu.Unlock()
	cur := m.svc.snapshot()
	if old, ok := cur[d]; ok && old.plugin != plugin {
		return nil, fmt.Errorf("plugins: %s: service domain %s is already served by %s", plugin, d, old.plugin)
	}
	next := make(map[string]*claim, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[d] = c
	m.svc.m.Store(&next)
	return func() {
		m.svc.mu.Lock()
		defer m.svc.mu.Unlock()
		m.svc.removeLocked(func(x *claim) bool { return x == c })
	}, nil
}

func (s *services) snapshot() map[string]*claim {
	if p := s.m.Load(); p != nil {
		return *p
	}
	return nil
}

// removeLocked drops the claims drop selects. Needs mu held.
func (s *services) removeLocked(drop func(*claim) bool) {
	cur := s.snapshot()
	next := make(map[string]*claim, len(cur))
	for k, v := range cur {
		if !drop(v) {
			next[k] = v
		}
	}
	s.m.Store(&next)
}

// releaseServices drops every claim of plugin (it stopped or failed to start).
func (m *Manager) releaseServices(plugin string) {
	m.svc.mu.Lock()
	defer m.svc.mu.Unlock()
	m.svc.removeLocked(func(x *claim) bool { return x.plugin == plugin })
}

// Service returns the service claimed for domain (lower case, as parsed
// from a JID), if any. The router asks it for every stanza to a domain
// other than the node's own.
func (m *Manager) Service(domain string) (Service, bool) {
	c, ok := m.svc.snapshot()[domain]
	if !ok {
		return Service{}, false
	}
	return c.Service, true
}

// Services returns every claimed service, sorted by domain (the disco
// plugin lists them in the domain's disco#items).
func (m *Manager) Services() []Service {
	cur := m.svc.snapshot()
	out := make([]Service, 0, len(cur))
	for _, c := range cur {
		out = append(out, c.Service)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}
