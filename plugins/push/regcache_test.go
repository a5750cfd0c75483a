package push_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/push"
)

// TestRegistrationsReadOncePerAccount: the registrations of an account
// without any are read once, not for every message stored offline for it
// (one query a message in a reconnection storm); an enable makes the
// next message read them again, and notify.
func TestRegistrationsReadOncePerAccount(t *testing.T) {
	base := plugintest.NewHost(t)
	st := &downStore{Store: base.St}
	h := plugintest.NewHostWithStore(t, st)
	m := h.Start(t, push.New())
	ctx := context.WithValue(context.Background(), onMessagePath{}, true)
	for range 3 {
		if _, err := m.Intercept(ctx, plugins.PointOffline, &plugins.Stanza{El: plugintest.Parse(t, chat)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.pathRead.Load(); n != 1 {
		t.Fatalf("%d registration reads for three offline messages to an account without registrations, want 1", n)
	}
	if got := h.IQ(t, m, plugins.ToServer, strings.Replace(enable, "%s", "", 1)); got != result {
		t.Fatalf("enable: %s", got)
	}
	if _, err := m.Intercept(ctx, plugins.PointOffline, &plugins.Stanza{El: plugintest.Parse(t, chat)}); err != nil {
		t.Fatal(err)
	}
	if n := st.pathRead.Load(); n != 2 {
		t.Errorf("%d registration reads after the enable, want 2", n)
	}
	if r := h.Routed(); len(r) != 1 {
		t.Fatalf("after the enable: %q, want one notification", r)
	}
}

// TestRegistrationChangesReachEveryNode: two nodes on one store. Node b
// learnt that juliet has no registrations; her enable through node a
// reaches b before it is answered, so b notifies the next message stored
// there; her disable through a stops it. A node the change could not
// reach goes on with what it knew (until the list is a minute old).
func TestRegistrationChangesReachEveryNode(t *testing.T) {
	a := plugintest.NewHost(t)
	b := plugintest.NewHostWithStore(t, a.St)
	a.Cfg.Cluster.NodeName, b.Cfg.Cluster.NodeName = "a", "b"
	plugintest.Join(a, b)
	ma, mb := a.Start(t, push.New()), b.Start(t, push.New())

	offline(t, b, mb, chat)
	if r := b.Routed(); len(r) != 0 {
		t.Fatalf("notified without registrations: %q", r)
	}
	if got := a.IQ(t, ma, plugins.ToServer, strings.Replace(enable, "%s", "", 1)); got != result {
		t.Fatalf("enable on a: %s", got)
	}
	offline(t, b, mb, chat)
	if r := b.Routed(); len(r) != 1 {
		t.Fatalf("node b after the enable on a: %q, want one notification", r)
	}
	if got := a.IQ(t, ma, plugins.ToServer, `<iq type='set' id='e1' from='juliet@example.com/phone'><disable xmlns='urn:xmpp:push:0' jid='push.app.example'/></iq>`); got != result {
		t.Fatalf("disable on a: %s", got)
	}
	offline(t, b, mb, chat)
	if r := b.Routed(); len(r) != 0 {
		t.Fatalf("node b after the disable on a: %q, want none", r)
	}

	// Partitioned: b keeps its (now stale) empty list.
	a.SetBroadcastError(errors.New("partitioned"))
	if got := a.IQ(t, ma, plugins.ToServer, strings.Replace(enable, "%s", "", 1)); got != result {
		t.Fatalf("enable on a while partitioned: %s", got)
	}
	offline(t, b, mb, chat)
	if r := b.Routed(); len(r) != 0 {
		t.Fatalf("node b learnt of a change it was not told of: %q (is the list read every time?)", r)
	}
	offline(t, a, ma, chat)
	if r := a.Routed(); len(r) != 1 {
		t.Fatalf("node a after its own enable: %q, want one notification", r)
	}
}
