package disco_test

import (
	"context"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/disco"
	"github.com/aviary-im/aviary/plugins/ping"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/plugins/version"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// nodePlugin owns one disco node, like the ad-hoc commands plugin.
type nodePlugin struct{}

func (nodePlugin) ID() string                                         { return "test.node" }
func (nodePlugin) Start(ctx context.Context, host plugins.Host) error { return nil }
func (nodePlugin) Stop(ctx context.Context) error                     { return nil }
func (nodePlugin) AccountFeatures() []string                          { return []string{"urn:test:account"} }
func (nodePlugin) DiscoIdentities() []plugins.Identity {
	return []plugins.Identity{{Category: "server", Type: "im", Name: "Aviary"}, {Category: "pubsub", Type: "pep"}}
}
func (nodePlugin) DiscoItems(ctx context.Context, from string) []plugins.DiscoItem {
	return []plugins.DiscoItem{{JID: "upload.example.com", Name: "Upload"}}
}
func (nodePlugin) DiscoNodeInfo(ctx context.Context, from, node string) ([]plugins.Identity, []string, bool) {
	if node != "cmds" {
		return nil, nil, false
	}
	return []plugins.Identity{{Category: "automation", Type: "command-list"}}, []string{"urn:test:node"}, true
}
func (nodePlugin) DiscoNodeItems(ctx context.Context, from, node string) ([]plugins.DiscoItem, bool) {
	if node != "cmds" {
		return nil, false
	}
	return []plugins.DiscoItem{{JID: "example.com", Node: "cmd1", Name: "One"}}, true
}

func TestDisco(t *testing.T) {
	h := plugintest.NewHost(t)
	if err := h.St.CreateUser(context.Background(), storage.User{Username: "juliet"}); err != nil {
		t.Fatal(err)
	}
	m := h.Start(t, disco.New(), ping.New(), version.New(), nodePlugin{})
	cases := []struct {
		name   string
		target plugins.Target
		in     string
		want   string
	}{
		{"server info", plugins.ToServer,
			`<iq type='get' id='1' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			`<iq type="result" id="1" from="example.com" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#info">` +
				`<identity category="server" type="im" name="Aviary"/><identity category="pubsub" type="pep"/>` +
				`<feature var="http://jabber.org/protocol/disco#info"/><feature var="http://jabber.org/protocol/disco#items"/>` +
				`<feature var="jabber:iq:version"/><feature var="msgoffline"/><feature var="urn:xmpp:ping"/></query></iq>`},
		{"server info without to", plugins.ToServer,
			`<iq type='get' id='2' from='romeo@example.com/a'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			`<iq type="result" id="2" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#info">` +
				`<identity category="server" type="im" name="Aviary"/><identity category="pubsub" type="pep"/>` +
				`<feature var="http://jabber.org/protocol/disco#info"/><feature var="http://jabber.org/protocol/disco#items"/>` +
				`<feature var="jabber:iq:version"/><feature var="msgoffline"/><feature var="urn:xmpp:ping"/></query></iq>`},
		{"server items", plugins.ToServer,
			`<iq type='get' id='3' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`,
			`<iq type="result" id="3" from="example.com" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#items"><item jid="upload.example.com" name="Upload"/></query></iq>`},
		{"known node info", plugins.ToServer,
			`<iq type='get' id='4' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info' node='cmds'/></iq>`,
			`<iq type="result" id="4" from="example.com" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#info" node="cmds"><identity category="automation" type="command-list"/><feature var="urn:test:node"/></query></iq>`},
		{"known node items", plugins.ToServer,
			`<iq type='get' id='5' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items' node='cmds'/></iq>`,
			`<iq type="result" id="5" from="example.com" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#items" node="cmds"><item jid="example.com" node="cmd1" name="One"/></query></iq>`},
		{"unknown node info", plugins.ToServer,
			`<iq type='get' id='6' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info' node='nope'/></iq>`,
			`<iq id="6" from="example.com" to="romeo@example.com/a" type="error"><query xmlns="http://jabber.org/protocol/disco#info" node="nope"/><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"unknown node items", plugins.ToServer,
			`<iq type='get' id='7' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items' node='nope'/></iq>`,
			`<iq id="7" from="example.com" to="romeo@example.com/a" type="error"><query xmlns="http://jabber.org/protocol/disco#items" node="nope"/><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"set is bad request", plugins.ToServer,
			`<iq type='set' id='8' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			`<iq id="8" from="example.com" to="romeo@example.com/a" type="error"><query xmlns="http://jabber.org/protocol/disco#info"/><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"account info", plugins.ToAccount,
			`<iq type='get' id='9' from='romeo@example.com/a' to='juliet@example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			`<iq type="result" id="9" from="juliet@example.com" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#info"><identity category="account" type="registered"/>` +
				`<feature var="http://jabber.org/protocol/disco#info"/><feature var="http://jabber.org/protocol/disco#items"/><feature var="urn:test:account"/></query></iq>`},
		{"account items", plugins.ToAccount,
			`<iq type='get' id='10' from='romeo@example.com/a' to='juliet@example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`,
			`<iq type="result" id="10" from="juliet@example.com" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#items"/></iq>`},
		{"account node", plugins.ToAccount,
			`<iq type='get' id='11' from='romeo@example.com/a' to='juliet@example.com'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>`,
			`<iq id="11" from="juliet@example.com" to="romeo@example.com/a" type="error"><query xmlns="http://jabber.org/protocol/disco#info" node="x"/><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"no such account", plugins.ToAccount,
			`<iq type='get' id='12' from='romeo@example.com/a' to='nobody@example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			`<iq id="12" from="nobody@example.com" to="romeo@example.com/a" type="error"><query xmlns="http://jabber.org/protocol/disco#info"/><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.IQ(t, m, c.target, c.in); got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestDiscoAlone(t *testing.T) {
	// Without other plugins disco still reports itself.
	h := plugintest.NewHost(t)
	m := h.Start(t, disco.New())
	got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='1' from='a@example.com/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	want := `<iq type="result" id="1" to="a@example.com/r"><query xmlns="http://jabber.org/protocol/disco#info"><identity category="server" type="im" name="Aviary"/>` +
		`<feature var="http://jabber.org/protocol/disco#info"/><feature var="http://jabber.org/protocol/disco#items"/><feature var="msgoffline"/></query></iq>`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// servicePlugin claims a service domain, as group chat will.
type servicePlugin struct{ domain, name string }

func (p servicePlugin) ID() string                     { return "test.service." + p.domain }
func (p servicePlugin) Stop(ctx context.Context) error { return nil }
func (p servicePlugin) Start(ctx context.Context, host plugins.Host) error {
	_, err := host.ServeDomain(plugins.Service{Domain: p.domain, Name: p.name,
		Handle: func(ctx context.Context, el *wire.Element) error { return nil }})
	return err
}

// TestDiscoItemsListsServices: the domain's disco#items lists every
// claimed service domain with its name, once even when a plugin also
// contributes an item for the same JID.
func TestDiscoItemsListsServices(t *testing.T) {
	h := plugintest.NewHost(t)
	m := h.Start(t, disco.New(), servicePlugin{"conference.example.com", "Chatrooms"},
		servicePlugin{"upload.example.com", "File upload"}, nodePlugin{})
	got := h.IQ(t, m, plugins.ToServer, `<iq type='get' id='i' from='romeo@example.com/a' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	want := `<iq type="result" id="i" from="example.com" to="romeo@example.com/a"><query xmlns="http://jabber.org/protocol/disco#items">` +
		`<item jid="conference.example.com" name="Chatrooms"/><item jid="upload.example.com" name="File upload"/></query></iq>`
	if got != want {
		t.Errorf("disco#items\n got %s\nwant %s", got, want)
	}
}
