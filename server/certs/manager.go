package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme"
)

// Defaults of the timing options.
const (
	defaultRetryBase = 5 * time.Minute
	defaultRetryMax  = 12 * time.Hour
	defaultPoll      = time.Minute
	defaultOrderTime = 5 * time.Minute
)

// Options build a Manager.
type Options struct {
	// Config gives the domain, the names and tls.acme (ConfigFrom).
	// Its Domain is required.
	Config Config
	// Store holds the certificates every node serves. Required.
	Store Store
	// Fallback is served for names no stored certificate covers
	// (tls.cert_file or the self-signed certificate); may be nil.
	Fallback *Certificate
	// Node names this node in what it stores and logs.
	Node     string
	Logger   *slog.Logger
	Registry prometheus.Registerer

	// RetryBase is the wait after a failed order of a name; it doubles
	// with each further failure up to RetryMax. Defaults 5m and 12h (Let's
	// Encrypt allows five failed validations per name and hour).
	RetryBase, RetryMax time.Duration
	// Poll is how often the store is re-read even when no change was
	// heard, and how often a node that found the ordering lock taken looks
	// again. Default 1m.
	Poll time.Duration
	// OrderTimeout bounds one name's order. Default 5m.
	OrderTimeout time.Duration
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
	// Checked, when set, is called after every look at what ACME must
	// order, with the names that were due (tests wait on it).
	Checked func(due []string)
}

// Manager picks the certificate for every TLS handshake of the node and,
// with tls.acme.enabled, gets and renews certificates from an ACME CA. Its
// concurrency contract: handshakes read an immutable snapshot through an
// atomic pointer and never wait for the store or for an order; Reload
// builds a new snapshot and swaps it; one goroutine (Run) orders.
type Manager struct {
	o          Options
	log        *slog.Logger
	domain     string
	names      []string // ACME names, domain first
	challenges []string // ACME challenge types this node can answer
	metrics    *metrics

	snap atomic.Pointer[snapshot]

	reloadMu sync.Mutex // serializes Reload

	alpnMu    sync.Mutex
	alpnCerts map[string]alpnCert // name → challenge certificate built for keyAuth

	wake chan struct{}

	acmeMu sync.Mutex   // guards client, used by the Run goroutine only
	client *acme.Client // registered account, built on first order
}

// New builds a Manager; it serves Fallback until Reload reads the store.
func New(o Options) (*Manager, error) {
	if o.Config.Domain == "" || o.Store == nil {
		return nil, errors.New("certs: Config.Domain and Store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetryBase <= 0 {
		o.RetryBase = defaultRetryBase
	}
	if o.RetryMax <= 0 {
		o.RetryMax = defaultRetryMax
	}
	if o.Poll <= 0 {
		o.Poll = defaultPoll
	}
	if o.OrderTimeout <= 0 {
		o.OrderTimeout = defaultOrderTime
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Manager{
		o: o, log: o.Logger.With("part", "certs"),
		domain:    strings.ToLower(o.Config.Domain),
		names:     slices.Clone(o.Config.Names),
		alpnCerts: map[string]alpnCert{},
		wake:      make(chan struct{}, 1),
	}
	m.challenges = o.Config.usableChallenges()
	if o.Config.ACME.Enabled && len(m.challenges) == 0 {
		return nil, errors.New("certs: tls.acme.challenges: no listed challenge has a listener to answer it")
	}
	if o.Config.ACME.Enabled && o.Config.ACME.CAFile != "" {
		if _, err := os.ReadFile(o.Config.ACME.CAFile); err != nil {
			return nil, fmt.Errorf("certs: tls.acme.ca_file: %w", err)
		}
	}
	m.snap.Store(newSnapshot(nil, o.Fallback, o.Now()))
	m.metrics = newMetrics(m, o.Registry)
	return m, nil
}

// Config is what the manager reads of the node's configuration.
type Config struct {
	// Domain is the XMPP domain; its certificate is the default.
	Domain string
	// Names are the names ACME orders certificates for, the domain first
	// (conf.Config.ACMENames).
	Names []string
	// ACME is tls.acme.
	ACME conf.ACMEConfig
	// HTTPListener says the node serves plain HTTP (http.listen), which
	// HTTP-01 needs; TLSListener that it serves direct TLS (http.tls_listen
	// or c2s.tls_listen), which TLS-ALPN-01 needs.
	HTTPListener, TLSListener bool
}

// ConfigFrom takes the manager's part of a node's configuration.
func ConfigFrom(cfg *conf.Config) Config {
	return Config{
		Domain:       cfg.Domain,
		Names:        cfg.ACMENames(),
		ACME:         cfg.TLS.ACME,
		HTTPListener: !conf.Off(cfg.HTTP.Listen),
		TLSListener:  !conf.Off(cfg.HTTP.TLSListen) || !conf.Off(cfg.C2S.TLSListen),
	}
}

// usableChallenges keeps the configured challenge types a listener of
// this node can answer (conf validation refuses a list with none).
func (c Config) usableChallenges() []string {
	var out []string
	for _, ch := range c.ACME.Challenges {
		switch {
		case ch == acmeHTTP01 && c.HTTPListener:
		case ch == acmeTLSALPN01 && c.TLSListener:
		default:
			continue
		}
		out = append(out, ch)
	}
	return out
}

// Names returns the names ACME keeps a certificate for, the domain first.
func (m *Manager) Names() []string { return slices.Clone(m.names) }

// TLSConfig returns the node's server configuration: every listener (c2s
// STARTTLS and direct TLS, HTTPS, s2s) uses it or a clone, so a renewed
// certificate is served at the next handshake without a restart. It also
// answers TLS-ALPN-01 challenges (RFC 8737) on any of them.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetCertificate:     m.GetCertificate,
		GetConfigForClient: m.configForClient,
	}
}

// GetCertificate picks the certificate for a handshake by its server name
// (SNI; the domain when the client sent none): a stored certificate for
// exactly that name, else one for its wildcard, else the fallback. Among
// several, the one that expires last.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		name = m.domain
	}
	if c := m.snap.Load().lookup(name, m.o.Now()); c != nil {
		return &c.tls, nil
	}
	return nil, fmt.Errorf("certs: no certificate for %q", name)
}

// Lookup returns what GetCertificate serves for name, or nil.
func (m *Manager) Lookup(name string) *Certificate {
	return m.snap.Load().lookup(strings.ToLower(name), m.o.Now())
}

// Certificates describes what this node serves: the stored certificates
// (shared by the cluster), then its fallback.
func (m *Manager) Certificates() []Info {
	s := m.snap.Load()
	var out []Info
	for _, c := range s.stored {
		out = append(out, c.Info)
	}
	if s.fallback != nil {
		out = append(out, s.fallback.Info)
	}
	return out
}

// Reload reads the stored certificates and serves them from the next
// handshake on. A stored certificate that cannot be read is logged and
// left out; the others are served.
func (m *Manager) Reload(ctx context.Context) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	list, bad, err := List(ctx, m.o.Store)
	if err != nil {
		return err
	}
	for _, e := range bad {
		m.log.Error("certs: a stored certificate cannot be used", "err", e)
	}
	old := m.snap.Load()
	next := newSnapshot(list, old.fallback, m.o.Now())
	for _, c := range list {
		if prev := old.byID[c.ID]; prev == nil || prev.Serial != c.Serial {
			m.log.Info("certs: serving certificate", "id", c.ID, "names", strings.Join(c.Names, ","),
				"source", c.Source, "serial", c.Serial, "not_after", c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	m.snap.Store(next)
	return nil
}

// SetFallback replaces the certificate served for names no stored one
// covers, from the next handshake on: the node extends the self-signed
// certificate with the service domains its plugins claim.
func (m *Manager) SetFallback(c *Certificate) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	old := m.snap.Load()
	m.snap.Store(newSnapshot(old.stored, c, m.o.Now()))
}

// HTTPHandler answers HTTP-01 challenges (RFC 8555 §8.3) under
// /.well-known/acme-challenge/ from the shared store, so that whichever
// node the CA reaches answers for the node that ordered.
func (m *Manager) HTTPHandler() http.Handler { return http.HandlerFunc(m.serveHTTP01) }

// snapshot is what handshakes read: immutable once stored.
type snapshot struct {
	stored   []*Certificate          // sorted by ID
	byID     map[string]*Certificate // ID → certificate
	exact    map[string]*Certificate // name → best certificate naming it
	wildcard map[string]*Certificate // parent name → best "*.parent" certificate
	fallback *Certificate
}

func newSnapshot(list []*Certificate, fallback *Certificate, now time.Time) *snapshot {
	s := &snapshot{stored: list, byID: map[string]*Certificate{}, exact: map[string]*Certificate{}, wildcard: map[string]*Certificate{}, fallback: fallback}
	better := func(a, b *Certificate) bool { // is a better than b?
		if b == nil {
			return true
		}
		aLive, bLive := now.Before(a.NotAfter), now.Before(b.NotAfter)
		if aLive != bLive {
			return aLive
		}
		return a.NotAfter.After(b.NotAfter)
	}
	for _, c := range list {
		s.byID[c.ID] = c
		for _, n := range c.Names {
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				if better(c, s.wildcard[parent]) {
					s.wildcard[parent] = c
				}
			} else if better(c, s.exact[n]) {
				s.exact[n] = c
			}
		}
	}
	return s
}

// lookup: exact name, wildcard, fallback. An expired stored certificate
// is served only when there is no fallback (tls.cert_file may still be
// good).
func (s *snapshot) lookup(name string, now time.Time) *Certificate {
	c := s.stored1(name)
	if c == nil || (s.fallback != nil && now.After(c.NotAfter)) {
		return s.fallback
	}
	return c
}

// stored1 is lookup without the fallback: the stored certificate serving
// name, or nil.
func (s *snapshot) stored1(name string) *Certificate {
	if c := s.exact[name]; c != nil {
		return c
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if c := s.wildcard[parent]; c != nil {
			return c
		}
	}
	return nil
}
