package plugins_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/disco"
	"github.com/aviary-im/aviary/plugins/pep"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// newFeature is a plugin enabled while the node runs, adding one feature
// to the server's disco#info.
type newFeature struct{}

func (newFeature) ID() string                                         { return "test.new-feature" }
func (newFeature) Start(ctx context.Context, host plugins.Host) error { return nil }
func (newFeature) Stop(ctx context.Context) error                     { return nil }
func (newFeature) DiscoFeatures() []string                            { return []string{"urn:example:new"} }

// capsOf returns the server's XEP-0115 <c/> in stream features.
func capsOf(t *testing.T, features *wire.Element) *wire.Element {
	t.Helper()
	c := features.Child("c", "http://jabber.org/protocol/caps")
	if c == nil || c.Attr("hash") != "sha-1" || c.Attr("node") != disco.CapsNode || c.Attr("ver") == "" {
		t.Fatalf("stream features %s, want the server's caps <c hash='sha-1' node='%s' ver='...'/>", features, disco.CapsNode)
	}
	return c
}

// The server's entity capabilities (XEP-0115 §6.3) are in its stream
// features before and after authentication; their ver is the hash of the
// server's disco#info, which carries the XEP-0157 contact addresses of
// the configuration; node#ver is answered; and enabling a plugin while
// the node runs changes the ver to that of the new disco#info.
func TestEndToEndServerCapsAndContactAddresses(t *testing.T) {
	n := startNode(t, func(cfg *confT) {
		cfg.ServerInfo.Abuse = []string{"mailto:abuse@localhost", "xmpp:abuse@localhost"}
		cfg.ServerInfo.Security = []string{"mailto:security@localhost"}
		cfg.ServerInfo.Status = []string{"https://status.example.com"}
	})
	c := servertest.Dial(t, n)
	t.Cleanup(c.Close)
	ver := capsOf(t, c.StartTLS()).Attr("ver")
	c.Login("alice", "pw-alice", "home")
	if got := capsOf(t, c.Features).Attr("ver"); got != ver {
		t.Errorf("caps ver after authentication %q, before %q", got, ver)
	}

	info := func(node string) *wire.Element {
		t.Helper()
		x := "<query xmlns='http://jabber.org/protocol/disco#info'/>"
		if node != "" {
			x = "<query xmlns='http://jabber.org/protocol/disco#info' node='" + node + "'/>"
		}
		el := iq(c, `<iq type='get' id='%s' to='localhost'>`+x+`</iq>`)
		q := el.Child("query", wire.NSDiscoInfo)
		if el.Type() != "result" || q == nil {
			t.Fatalf("disco#info node %q answered %s", node, el)
		}
		return q
	}
	q := info("")
	if got := pep.CapsHash(q); got != ver {
		t.Errorf("caps ver %q, but the server's disco#info hashes to %q: %s", ver, got, q)
	}
	var form *wire.Element
	for _, x := range q.ChildrenNamed("x", "jabber:x:data") {
		if f := x.Child("field", ""); f != nil && f.Attr("var") == "FORM_TYPE" && f.ChildText("value", "") == disco.NSServerInfo {
			form = x
		}
	}
	if form == nil {
		t.Fatalf("disco#info %s has no %s form", q, disco.NSServerInfo)
	}
	fields := map[string][]string{}
	for _, f := range form.ChildrenNamed("field", "") {
		for _, v := range f.ChildrenNamed("value", "") {
			fields[f.Attr("var")] = append(fields[f.Attr("var")], v.AllText())
		}
	}
	for field, want := range map[string][]string{
		"abuse-addresses":    {"mailto:abuse@localhost", "xmpp:abuse@localhost"},
		"security-addresses": {"mailto:security@localhost"},
		"status-addresses":   {"https://status.example.com"},
	} {
		if !slices.Equal(fields[field], want) {
			t.Errorf("%s = %v, want %v", field, fields[field], want)
		}
	}
	if _, ok := fields["support-addresses"]; ok {
		t.Errorf("unconfigured support-addresses published: %s", form)
	}
	if byNode := info(disco.CapsNode + "#" + ver); byNode.Attr("node") != disco.CapsNode+"#"+ver || pep.CapsHash(byNode) != ver {
		t.Errorf("disco#info of node#ver answered %s", byNode)
	}

	// A plugin enabled at run time changes the server's disco#info, and
	// the next stream's caps follow.
	n.Plugins().Swap(newFeature{})
	c2 := servertest.DialTLS(t, n)
	t.Cleanup(c2.Close)
	ver2 := capsOf(t, c2.Features).Attr("ver")
	if ver2 == ver {
		t.Fatalf("caps ver unchanged (%q) after a plugin was enabled", ver)
	}
	q2 := info("")
	if !strings.Contains(q2.String(), "urn:example:new") || pep.CapsHash(q2) != ver2 {
		t.Errorf("caps ver %q after the change; disco#info %s hashes to %q", ver2, q2, pep.CapsHash(q2))
	}
}
