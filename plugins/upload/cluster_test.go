package upload_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sharedStore is a new PostgreSQL database, the store every node of a
// cluster shares.
func sharedStore(t *testing.T) storage.Store {
	t.Helper()
	url := pgtest.Shared(t).NewDatabase(t)
	st, err := postgres.Open(context.Background(), url, postgres.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// twoNodes runs the plugin on nodes "a" and "b" of one (in-memory)
// cluster over st, with one clock and the accounts romeo and juliet.
// cfgB, when set, configures b instead of cfg (a node restarted with
// another configuration).
func twoNodes(t *testing.T, st storage.Store, cfg, cfgB func(*conf.UploadConfig)) (a, b *fixture) {
	t.Helper()
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	c := newClock()
	node := func(name string, cfg func(*conf.UploadConfig)) *fixture {
		h := plugintest.NewHostWithStore(t, st)
		h.Node = net.Join(name)
		h.Cfg.Cluster.NodeName = name
		return startOn(t, h, c, cfg)
	}
	if cfgB == nil {
		cfgB = cfg
	}
	a, b = node("a", cfg), node("b", cfgB)
	for _, u := range []string{"romeo", "juliet"} {
		if err := a.h.Users().CreateUser(context.Background(), u, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// ask asks for a slot as user and returns the refusal, or nil when a
// slot was routed back; any goroutine may call it.
func (f *fixture) ask(user, name string, size int) error {
	el, err := wire.Parse([]byte(fmt.Sprintf(`<iq type='get' id='%s' from='%s@example.com/r' to='upload.example.com'><request xmlns='urn:xmpp:http:upload:0' filename='%s' size='%d' content-type='text/plain'/></iq>`, name, user, name, size)), wire.Limits{})
	if err != nil {
		return err
	}
	svc, ok := f.m.Service("upload.example.com")
	if !ok {
		return errors.New("no upload service")
	}
	return svc.Handle(context.Background(), el)
}

// slotFor asks for a slot as user: the PUT and GET URLs, or the refusal.
func (f *fixture) slotFor(user, name string, size int) (put, get string, err error) {
	f.t.Helper()
	if err := f.ask(user, name, size); err != nil {
		return "", "", err
	}
	var slot *wire.Element
	for _, r := range f.h.Routed() {
		if res := plugintest.Parse(f.t, r); res.ID() == name {
			slot = res.Child("slot", "urn:xmpp:http:upload:0")
		}
	}
	if slot == nil {
		f.t.Fatalf("no slot %s routed", name)
	}
	return slot.Child("put", "").Attr("url"), slot.Child("get", "").Attr("url"), nil
}

// mustSlot is slotFor that fails the test on a refusal.
func (f *fixture) mustSlot(user, name string, size int) (put, get string) {
	f.t.Helper()
	put, get, err := f.slotFor(user, name, size)
	if err != nil {
		f.t.Fatalf("slot %s for %s: %v", name, user, err)
	}
	return put, get
}

// usage is the domain's counted usage.
func (f *fixture) usage() int64 {
	f.t.Helper()
	n, err := f.p.DomainUsage(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// refusedFor checks that err is resource-constraint with want in its
// text.
func refusedFor(t *testing.T, err error, want string) {
	t.Helper()
	var se *wire.StanzaError
	if !errors.As(err, &se) || se.Condition != "resource-constraint" || !strings.Contains(se.Text, want) {
		t.Errorf("got %v, want resource-constraint with %q", err, want)
	}
}

// fileID is the ID in a slot's URL.
func fileID(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/upload/"), "/")
	return id
}
