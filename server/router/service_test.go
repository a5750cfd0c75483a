package router

import (
	"context"
	"sync"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/wire"
)

// echoService claims conference.example.com: it records every stanza,
// answers a message with one from the room JID, and refuses IQs it does
// not know.
type echoService struct {
	host plugins.Host
	mu   sync.Mutex
	got  []string
}

func (s *echoService) ID() string                     { return "test.echo" }
func (s *echoService) Stop(ctx context.Context) error { return nil }
func (s *echoService) Start(ctx context.Context, h plugins.Host) error {
	s.host = h
	_, err := h.ServeDomain(plugins.Service{Domain: "conference.example.com", Name: "Rooms", Handle: s.handle})
	return err
}

func (s *echoService) handle(ctx context.Context, el *wire.Element) error {
	s.mu.Lock()
	s.got = append(s.got, sig(el))
	s.mu.Unlock()
	switch {
	case el.Name == "message" && el.Type() != "error":
		s.host.Route(ctx, wire.New("message", "from", el.To(), "to", el.From(), "type", "chat").
			Append(wire.New("body").SetText("echo "+el.ChildText("body", ""))))
	case el.Name == "iq" && (el.Type() == "get" || el.Type() == "set"):
		return wire.ErrServiceUnavailable.WithText("no such room feature")
	}
	return nil
}

func (s *echoService) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = nil
	return out
}

// withService installs svc on the env's router through a real plugin
// manager, as a node does.
func withService(t *testing.T, e *env, svc plugins.Plugin) {
	t.Helper()
	ph := plugintest.NewHostWithStore(t, e.store)
	ph.Cfg = e.cfg
	h := &routerHost{Host: ph, r: e.r}
	m := plugins.NewManager(h, e.r.log, []plugins.Plugin{svc})
	ph.UseManager(m)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(m.Plugins()) != 1 {
		t.Fatal("the service did not start")
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	e.r.SetPlugins(m)
}

// TestServiceDomain: a claimed subdomain gets every stanza addressed to
// it or a JID at it, from local clients, from s2s and from the server;
// what it sends reaches local users and other domains; what it refuses
// bounces to the sender; an unclaimed subdomain still goes to s2s.
func TestServiceDomain(t *testing.T) {
	e := newEnv(t)
	fed := &capFed{}
	e.r.SetFederation(fed)
	svc := &echoService{}
	withService(t, e, svc)
	e.user("juliet")
	j := e.online("juliet", "balcony", 0)
	jid := j.JID().String()

	e.send(j, `<message to='lobby@conference.example.com' id='m1'><body>hi</body></message>`)
	wantSigs(t, "juliet gets the answer", j.take(), "message chat lobby@conference.example.com→"+jid)
	e.send(j, `<presence to='lobby@conference.example.com/juliet'/>`)
	e.send(j, `<iq type='get' id='q1' to='conference.example.com'><query xmlns='urn:test:nothing'/></iq>`)
	got := j.take()
	wantSigs(t, "juliet's refused IQ", got, "iq error conference.example.com→"+jid)
	if errCond(got[0]) != "service-unavailable" {
		t.Fatalf("bounce %s", got[0])
	}
	e.route(`<message from='romeo@remote.net/x' to='lobby@conference.example.com' id='m2'><body>from afar</body></message>`)
	e.r.FromRemote(context.Background(), mustParse(t, `<presence from='romeo@remote.net/x' to='lobby@conference.example.com/romeo'/>`))
	want := []string{
		"message " + jid + "→lobby@conference.example.com",
		"presence " + jid + "→lobby@conference.example.com/juliet",
		"iq get " + jid + "→conference.example.com",
		"message romeo@remote.net/x→lobby@conference.example.com",
		"presence romeo@remote.net/x→lobby@conference.example.com/romeo",
	}
	if got := svc.take(); !equal(got, want) {
		t.Fatalf("the service got\n %q\nwant\n %q", got, want)
	}
	// The answer to romeo's message went out over s2s from the room.
	wantSigs(t, "s2s", fed.take(), "message chat lobby@conference.example.com→romeo@remote.net/x")

	// juliet leaves: the room she sent directed presence to is told.
	e.r.Unbind(context.Background(), j, nil)
	if got := svc.take(); !equal(got, []string{"presence unavailable " + jid + "→lobby@conference.example.com/juliet"}) {
		t.Fatalf("after logout the service got %q", got)
	}

	// A subdomain nobody claimed is another server's.
	e.route(`<message from='juliet@example.com/balcony' to='news@pubsub.example.com'><body>x</body></message>`)
	wantSigs(t, "unclaimed subdomain", fed.take(), "message juliet@example.com/balcony→news@pubsub.example.com")
	e.r.FromRemote(context.Background(), mustParse(t, `<message from='romeo@remote.net/x' to='news@pubsub.example.com'><body>x</body></message>`))
	if got := svc.take(); len(got) != 0 {
		t.Fatalf("the service got %q", got)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
