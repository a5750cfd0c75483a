// Package plugintest runs plugins through a real plugins.Manager against a
// fake Host, for table tests that assert exact XML replies. Any plugin's
// tests (built-in or third-party) may use it.
//
//	h := plugintest.NewHost(t)
//	m := h.Start(t, ping.New())
//	reply := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='1' from='a@example.com/r'><ping xmlns='urn:xmpp:ping'/></iq>`)
package plugintest

import (
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
	"github.com/aviary-im/aviary/wire"
)

// Domain is the domain the fake host serves.
const Domain = "example.com"

// Host is a fake plugins.Host. Routed stanzas are recorded; resources are
// whatever the test sets; the user manager keeps passwords in memory and
// accounts in the store.
type Host struct {
	Cfg   *conf.Config
	St    storage.Store
	Log   *slog.Logger
	Bus   *plugins.Hooks
	Admin map[string]bool

	// Metrics, when set, is the registry plugins register their metrics
	// with (Registry), as a node's is; nil, they register none.
	Metrics *prometheus.Registry

	// Node is the host's node in an in-memory cluster (Host.Cluster);
	// NewHost makes it the only node of its own Net. Set it to a node of
	// a shared Net to run several hosts as one cluster.
	Node *NetNode

	mu      sync.Mutex
	routed  []*wire.Element
	res     map[string][]plugins.Resource // bare → resources
	carbons map[string]bool
	users   *Users
	m       *plugins.Manager // the manager Start made, for ServeDomain
	peers   []*Host          // other "nodes" Broadcast reaches (Join)
	// broadcastErr, when set, is what Broadcast returns instead of
	// reaching the peers (SetBroadcastError).
	broadcastErr error
}

var _ plugins.ScopedHost = (*Host)(nil)

// NewHost returns a fake host for Domain on the real embedded store
// (storage/sqlite) in a temporary directory, closed at cleanup.
func NewHost(t testing.TB) *Host {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "aviary.db"))
	if err != nil {
		t.Fatalf("open sqlite store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return NewHostWithStore(t, st)
}

// NewHostWithStore returns a fake host on the given store.
func NewHostWithStore(t testing.TB, st storage.Store) *Host {
	cfg := &conf.Config{Domain: Domain}
	h := &Host{
		Cfg: cfg, St: st, Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Bus: plugins.NewHooks(), Admin: map[string]bool{},
		res: map[string][]plugins.Resource{}, carbons: map[string]bool{},
	}
	h.users = &Users{h: h, passwords: map[string]string{}, kicked: map[string]int{}}
	net := NewNet()
	t.Cleanup(net.Close)
	h.Node = net.Join("test")
	return h
}

// ForPlugin implements plugins.ScopedHost: the plugin's cluster view is
// namespaced by its ID, its service claims are recorded under it.
func (h *Host) ForPlugin(id string) plugins.Host { return &scoped{Host: h, id: id} }

// Registry is the node's metrics registry plugins look for: Metrics, or
// none.
func (h *Host) Registry() prometheus.Registerer {
	if h.Metrics == nil {
		return nil
	}
	return h.Metrics
}

// Cluster implements plugins.Host (unscoped: plugin ID "").
func (h *Host) Cluster() plugins.Cluster { return h.Node.For("") }

// ServeDomain implements plugins.Host through the manager Start made.
func (h *Host) ServeDomain(s plugins.Service) (func(), error) { return h.serveDomain("", s) }

func (h *Host) serveDomain(plugin string, s plugins.Service) (func(), error) {
	h.mu.Lock()
	m := h.m
	h.mu.Unlock()
	if m == nil {
		return nil, errors.New("plugintest: ServeDomain before Host.Start")
	}
	return m.ServeDomain(plugin, s)
}

// Plugin returns a plugin the manager Start made runs, or nil (as the
// server's host does, for plugins that build on another).
func (h *Host) Plugin(id string) plugins.Plugin {
	h.mu.Lock()
	m := h.m
	h.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.Plugin(id)
}

// UseManager makes ServeDomain claim on m (Start does it for the
// manager it makes).
func (h *Host) UseManager(m *plugins.Manager) {
	h.mu.Lock()
	h.m = m
	h.mu.Unlock()
}

// scoped is the Host one plugin gets.
type scoped struct {
	*Host
	id string
}

func (s *scoped) Cluster() plugins.Cluster { return s.Host.Node.For(s.id) }
func (s *scoped) ServeDomain(svc plugins.Service) (func(), error) {
	return s.Host.serveDomain(s.id, svc)
}

// ToService hands a stanza to the service claimed for its 'to' domain,
// as the router does, and returns the handler's error; it fails the test
// when no plugin serves that domain.
func (h *Host) ToService(t testing.TB, m *plugins.Manager, xml string) error {
	t.Helper()
	el := Parse(t, xml)
	svc, ok := m.Service(domainOf(el.To()))
	if !ok {
		t.Fatalf("no service for %q", el.To())
	}
	return svc.Handle(context.Background(), el)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func (h *Host) Domain() string           { return h.Cfg.Domain }
func (h *Host) Config() *conf.Config     { return h.Cfg }
func (h *Host) Store() storage.Store     { return h.St }
func (h *Host) Logger() *slog.Logger     { return h.Log }
func (h *Host) Hooks() *plugins.Hooks    { return h.Bus }
func (h *Host) IsAdmin(bare string) bool { return h.Admin[bare] }

// UserManager returns the fake user manager, for assertions.
func (h *Host) UserManager() *Users { return h.users }

// Users implements plugins.Host.
func (h *Host) Users() plugins.UserManager { return h.users }

// Route records the stanza.
func (h *Host) Route(ctx context.Context, el *wire.Element) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.routed = append(h.routed, el)
}

// Routed returns and forgets the stanzas routed so far, serialized.
func (h *Host) Routed() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, len(h.routed))
	for i, el := range h.routed {
		out[i] = el.String()
	}
	h.routed = nil
	return out
}

// SetOnline marks full JIDs online (available, priority 0).
func (h *Host) SetOnline(bare string, full ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.res[bare] = nil
	for _, f := range full {
		h.res[bare] = append(h.res[bare], plugins.Resource{JID: f, Node: "test", Available: true})
	}
}

// SetResources sets a user's resources as given (any node, any state).
func (h *Host) SetResources(bare string, res ...plugins.Resource) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.res[bare] = res
}

// Resources implements plugins.Host.
func (h *Host) Resources(ctx context.Context, bare string) ([]plugins.Resource, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]plugins.Resource(nil), h.res[bare]...), nil
}

// SetCarbons implements plugins.Host.
func (h *Host) SetCarbons(ctx context.Context, full string, on bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.carbons[full] = on
	return nil
}

// Carbons reports the carbons state last set for a full JID.
func (h *Host) Carbons(full string) (on, set bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	on, set = h.carbons[full]
	return on, set
}

// OnlineBare returns the bare JIDs with resources, sorted (for counting).
func (h *Host) OnlineBare() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for b, r := range h.res {
		if len(r) > 0 {
			out = append(out, b)
		}
	}
	sort.Strings(out)
	return out
}

// Join makes hosts one fake cluster: Broadcast on any of them runs the
// event's hooks on each of the others, synchronously, as another node
// would before confirming. Give each a distinct Cfg.Cluster.NodeName.
func Join(hosts ...*Host) {
	for _, h := range hosts {
		h.mu.Lock()
		h.peers = nil
		for _, o := range hosts {
			if o != h {
				h.peers = append(h.peers, o)
			}
		}
		h.mu.Unlock()
	}
}

// SetBroadcastError makes Broadcast fail with err without reaching any
// peer (a partitioned node); nil restores it.
func (h *Host) SetBroadcastError(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.broadcastErr = err
}

// Broadcast implements plugins.Host: it runs ev's hooks on every host
// joined with this one (Join).
func (h *Host) Broadcast(ctx context.Context, ev plugins.Event, data []byte) error {
	h.mu.Lock()
	peers, err := h.peers, h.broadcastErr
	h.mu.Unlock()
	if err != nil {
		return err
	}
	for _, o := range peers {
		if err := o.Bus.Run(ctx, ev, &plugins.ClusterEvent{Node: h.Cfg.Cluster.NodeName, Data: data}); err != nil {
			return err
		}
	}
	return nil
}

// Start starts a manager over the given plugins and stops it at cleanup.
func (h *Host) Start(t testing.TB, list ...plugins.Plugin) *plugins.Manager {
	t.Helper()
	m := plugins.NewManager(h, h.Log, list)
	h.UseManager(m)
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start plugins: %v", err)
	}
	if got := len(m.Plugins()); got != len(list) {
		t.Fatalf("%d of %d plugins started", got, len(list))
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m
}

// Parse parses one element or fails the test.
func Parse(t testing.TB, s string) *wire.Element {
	t.Helper()
	el, err := wire.Parse([]byte(s), wire.Limits{})
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return el
}

// IQ dispatches an IQ through the manager like the router does and returns
// the serialized reply, or "" when no plugin handled it. IQ.To is the
// stanza's 'to', or the domain when it has none; FromLocal is true when
// 'from' is in the domain.
func (h *Host) IQ(t testing.TB, m *plugins.Manager, target plugins.Target, xml string) string {
	t.Helper()
	el := Parse(t, xml)
	to := el.To()
	if to == "" {
		to = h.Domain()
	}
	iq := &plugins.IQ{Stanza: el, From: el.From(), FromLocal: domainOf(el.From()) == h.Domain(), To: to}
	reply, ok := m.HandleIQ(context.Background(), iq, target)
	if !ok {
		return ""
	}
	return reply.String()
}

func domainOf(j string) string {
	for i := 0; i < len(j); i++ {
		if j[i] == '@' {
			j = j[i+1:]
			break
		}
	}
	for i := 0; i < len(j); i++ {
		if j[i] == '/' {
			return j[:i]
		}
	}
	return j
}

// Users is a fake plugins.UserManager: accounts in the store, passwords in
// memory (real hashing lives in the server).
type Users struct {
	h         *Host
	mu        sync.Mutex
	passwords map[string]string
	kicked    map[string]int
}

func (u *Users) CreateUser(ctx context.Context, username, password string) error {
	if err := u.h.St.CreateUser(ctx, storage.User{Username: username}); err != nil {
		return err
	}
	u.mu.Lock()
	u.passwords[username] = password
	u.mu.Unlock()
	return nil
}

// DeleteUser deletes the account from the store, then runs
// EventUserDeleted on the host's hooks, as the server's user manager does.
func (u *Users) DeleteUser(ctx context.Context, username string) error {
	if err := u.h.St.DeleteUser(ctx, username); err != nil {
		return err
	}
	u.mu.Lock()
	delete(u.passwords, username)
	u.mu.Unlock()
	_ = u.h.Bus.Run(ctx, plugins.EventUserDeleted, &plugins.UserEvent{Username: username})
	return nil
}

func (u *Users) SetPassword(ctx context.Context, username, password string) error {
	if _, err := u.h.St.GetUser(ctx, username); err != nil {
		return err
	}
	u.mu.Lock()
	u.passwords[username] = password
	u.mu.Unlock()
	return nil
}

func (u *Users) CheckPassword(ctx context.Context, username, password string) (bool, error) {
	if _, err := u.h.St.GetUser(ctx, username); err != nil {
		return false, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.passwords[username] == password, nil
}

func (u *Users) Kick(ctx context.Context, bare string, reason string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.kicked[bare]++
	return 1
}

// Password returns the password stored for a user ("" and false if none).
func (u *Users) Password(username string) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p, ok := u.passwords[username]
	return p, ok
}

// Kicked returns how often a bare JID was kicked.
func (u *Users) Kicked(bare string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.kicked[bare]
}
