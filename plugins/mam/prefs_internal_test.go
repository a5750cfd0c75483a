package mam

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

// TestPreferencesChangeReachesEveryNode: two nodes on one store. Node b
// checked juliet's preferences (archive everything) and keeps them; her
// change to "never" through node a reaches b before it is answered, so b
// stops archiving at once (it used to go on for the cache's lifetime). A
// node the change could not reach goes on with what it knew.
func TestPreferencesChangeReachesEveryNode(t *testing.T) {
	ctx := context.Background()
	ha := plugintest.NewHost(t)
	hb := plugintest.NewHostWithStore(t, ha.St)
	ha.Cfg.Cluster.NodeName, hb.Cfg.Cluster.NodeName = "a", "b"
	for _, h := range []*plugintest.Host{ha, hb} {
		h.Cfg.MAM.Default = "always"
	}
	plugintest.Join(ha, hb)
	pa, pb := New(), New()
	ma := ha.Start(t, pa)
	hb.Start(t, pb)
	const juliet, romeo = "juliet@example.com", "romeo@example.net"

	if !pb.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("archiving refused before any preference was set")
	}
	set := func(def string) {
		t.Helper()
		got := ha.IQ(t, ma, plugins.ToAccount, `<iq type='set' id='p1' from='juliet@example.com/r' to='juliet@example.com'><prefs xmlns='urn:xmpp:mam:2' default='`+def+`'/></iq>`)
		if !strings.Contains(got, `type="result"`) {
			t.Fatalf("prefs set: %s", got)
		}
	}
	set("never")
	if pb.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node b still archives for juliet after she set default='never' through node a")
	}
	if pa.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node a still archives after the change it made")
	}

	ha.SetBroadcastError(errors.New("partitioned"))
	set("always")
	if pb.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node b learnt of a change it was not told of (are preferences read for every message?)")
	}
	if !pa.prefs.allows(ctx, juliet, romeo) {
		t.Fatal("node a does not archive after its own change to always")
	}
}
