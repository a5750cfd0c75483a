package router

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
	"github.com/aviary-im/aviary/wire"
)

const domain = "example.com"

// fakeSession is a router.Session that records what it is sent.
type fakeSession struct {
	mu      sync.Mutex
	jid     wire.JID
	got     []*wire.Element
	closed  bool
	closeBy string
}

func (s *fakeSession) JID() wire.JID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jid
}

func (s *fakeSession) Send(el *wire.Element) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	// Serialize and parse back, as a real session writes bytes: the test
	// sees exactly what the client would, and sharing bugs show up.
	cp, err := wire.Parse(el.Bytes(), wire.Limits{})
	if err != nil {
		panic(err)
	}
	s.got = append(s.got, cp)
	return true
}

func (s *fakeSession) Close(condition, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.closeBy = condition
}

// take returns and forgets what the session received.
func (s *fakeSession) take() []*wire.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = nil
	return out
}

func (s *fakeSession) isClosed() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed, s.closeBy
}

// env is one router on one node with a real sqlite store.
type env struct {
	t     *testing.T
	r     *Router
	store storage.Store
	cfg   *conf.Config
	now   time.Time
}

type envOpt func(*conf.Config)

// template is a migrated, empty sqlite database made once per test
// binary; each test copies it, which is much cheaper than migrating.
var template struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	hztest.StopShared()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

func openStore(t testing.TB) storage.Store {
	t.Helper()
	template.once.Do(func() {
		template.dir, template.err = os.MkdirTemp("", "aviary-router-test-")
		if template.err != nil {
			return
		}
		template.path = filepath.Join(template.dir, "template.db")
		st, err := sqlite.Open(context.Background(), template.path)
		if err != nil {
			template.err = err
			return
		}
		template.err = st.Close()
	})
	if template.err != nil {
		t.Fatalf("sqlite template: %v", template.err)
	}
	data, err := os.ReadFile(template.path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "aviary.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func testConfig(opts ...envOpt) *conf.Config {
	cfg := &conf.Config{Domain: domain}
	cfg.ApplyDefaults()
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	st := openStore(t)
	return newEnvWith(t, st, local.New("node1"), opts...)
}

func newEnvWith(t *testing.T, st storage.Store, cl cluster.Cluster, opts ...envOpt) *env {
	t.Helper()
	cfg := testConfig(opts...)
	e := &env{t: t, store: st, cfg: cfg, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	e.r = New(Options{Config: ConfigFrom(cfg), Store: st, Cluster: cl, Now: func() time.Time { return e.now }})
	return e
}

func (e *env) user(names ...string) {
	e.t.Helper()
	for _, n := range names {
		err := e.store.CreateUser(context.Background(), storage.User{Username: n, CreatedAt: time.Now()})
		if err != nil && !strings.Contains(err.Error(), "exists") {
			e.t.Fatalf("CreateUser(%s): %v", n, err)
		}
	}
}

// bind binds user/res and returns the fake session.
func (e *env) bind(user, res string) *fakeSession {
	e.t.Helper()
	s := &fakeSession{}
	j, err := e.r.Bind(context.Background(), s, user, res)
	if err != nil {
		e.t.Fatalf("Bind(%s/%s): %v", user, res, err)
	}
	s.mu.Lock()
	s.jid = j
	s.mu.Unlock()
	return s
}

// online binds a session, requests the roster and sends initial presence,
// then forgets what it received.
func (e *env) online(user, res string, prio int) *fakeSession {
	e.t.Helper()
	s := e.bind(user, res)
	e.send(s, `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	if prio != 0 {
		e.send(s, fmt.Sprintf(`<presence><priority>%d</priority></presence>`, prio))
	} else {
		e.send(s, `<presence/>`)
	}
	s.take()
	return s
}

// send parses xml, stamps 'from' as a stream layer would, and hands it to
// the router.
func (e *env) send(s *fakeSession, xml string) {
	e.t.Helper()
	el := mustParse(e.t, xml)
	el.SetAttr("from", s.JID().String())
	e.r.FromClient(context.Background(), s, el)
}

// remote hands a stanza to the router as if it came over s2s or from a
// plugin.
func (e *env) route(xml string) {
	e.t.Helper()
	e.r.Route(context.Background(), mustParse(e.t, xml))
}

func (e *env) item(owner, contact string) (storage.RosterItem, bool) {
	e.t.Helper()
	it, err := e.store.GetRosterItem(context.Background(), owner, contact)
	if isNotFound(err) {
		return it, false
	}
	if err != nil {
		e.t.Fatalf("GetRosterItem: %v", err)
	}
	return it, true
}

func (e *env) setItem(owner, contact string, st subState, inRoster bool) {
	e.t.Helper()
	_, _, _, _, err := e.store.UpdateRosterItem(context.Background(), owner, contact, storage.RosterQuota{}, func(it storage.RosterItem, exists bool) (storage.RosterItem, bool, error) {
		it.Subscription, it.PendingOut, it.PendingIn, it.InRoster = st.Sub, st.PendingOut, st.PendingIn, inRoster
		return it, false, nil
	})
	if err != nil {
		e.t.Fatalf("UpdateRosterItem: %v", err)
	}
}

func mustParse(t testing.TB, xml string) *wire.Element {
	t.Helper()
	el, err := wire.Parse([]byte(xml), wire.Limits{})
	if err != nil {
		t.Fatalf("parse %q: %v", xml, err)
	}
	return el
}

// sig is a short signature of a stanza for assertions:
// "name type from→to [payload-ns-or-name]".
func sig(el *wire.Element) string {
	var b strings.Builder
	b.WriteString(el.Name)
	if t := el.Type(); t != "" {
		b.WriteString(" " + t)
	}
	b.WriteString(" " + el.From() + "→" + el.To())
	return b.String()
}

func sigs(els []*wire.Element) []string {
	out := make([]string, len(els))
	for i, el := range els {
		out[i] = sig(el)
	}
	return out
}

// only returns the stanzas with the given name.
func only(name string, els []*wire.Element) []*wire.Element {
	var out []*wire.Element
	for _, el := range els {
		if el.Name == name {
			out = append(out, el)
		}
	}
	return out
}

func errCond(el *wire.Element) string {
	e := el.Child("error", "")
	if e == nil || len(e.Children) == 0 {
		return ""
	}
	return e.Children[0].Name
}

func wantSigs(t *testing.T, what string, got []*wire.Element, want ...string) {
	t.Helper()
	g := sigs(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got  %q\n want %q", what, g, want)
	}
}

// pushItems returns the roster items pushed in a list of stanzas.
func pushItems(els []*wire.Element) []*wire.Element {
	var out []*wire.Element
	for _, el := range els {
		if el.Name == "iq" && el.Type() == "set" {
			if q := el.Child("query", wire.NSRoster); q != nil {
				out = append(out, q.ChildrenNamed("item", "")...)
			}
		}
	}
	return out
}

// fakePlugin is an IQ handler and interceptor for tests.
type fakePlugin struct {
	ns        map[string]plugins.Target
	handle    func(iq *plugins.IQ) (*wire.Element, error)
	points    []plugins.Point
	intercept func(p plugins.Point, st *plugins.Stanza) (plugins.Verdict, error)
}

func (p *fakePlugin) ID() string                                         { return "test.fake" }
func (p *fakePlugin) Start(ctx context.Context, host plugins.Host) error { return nil }
func (p *fakePlugin) Stop(ctx context.Context) error                     { return nil }
func (p *fakePlugin) IQNamespaces() map[string]plugins.Target            { return p.ns }
func (p *fakePlugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	return p.handle(iq)
}
func (p *fakePlugin) InterceptPoints() []plugins.Point { return p.points }
func (p *fakePlugin) Intercept(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
	return p.intercept(pt, st)
}

func userRecord(name string) storage.User {
	return storage.User{Username: name, CreatedAt: time.Now()}
}

// unsentOf wraps stanzas without receipts for Unbind.
func unsentOf(els []*wire.Element) []Unsent {
	out := make([]Unsent, len(els))
	for i, el := range els {
		out[i] = Unsent{El: el}
	}
	return out
}
