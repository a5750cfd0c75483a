package server_test

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/disco"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// roomsPlugin serves rooms.<domain>: it answers a message with one from
// the room and disco#info on its own domain.
type roomsPlugin struct{ host plugins.Host }

func (p *roomsPlugin) ID() string                     { return "test.rooms" }
func (p *roomsPlugin) Stop(ctx context.Context) error { return nil }
func (p *roomsPlugin) Start(ctx context.Context, h plugins.Host) error {
	p.host = h
	_, err := h.ServeDomain(plugins.Service{Domain: "rooms." + h.Domain(), Name: "Rooms", Handle: p.handle})
	return err
}

func (p *roomsPlugin) handle(ctx context.Context, el *wire.Element) error {
	switch {
	case el.Name == "iq" && el.Type() == "get" && el.Child("query", wire.NSDiscoInfo) != nil:
		p.host.Route(ctx, wire.IQResult(el, disco.InfoElement("", []plugins.Identity{{Category: "conference", Type: "text", Name: "Rooms"}}, nil)))
	case el.Name == "message" && el.Type() != "error":
		p.host.Route(ctx, wire.New("message", "from", el.To(), "to", el.From(), "type", "groupchat").
			Append(wire.New("body").SetText("echo "+el.ChildText("body", ""))))
	default:
		return wire.ErrServiceUnavailable
	}
	return nil
}

// TestServiceDomainOnNode: a plugin's service domain on a real node is
// listed in the domain's disco#items, answers its own disco#info and
// messages from a client over TCP, and is named in the generated
// certificate.
func TestServiceDomainOnNode(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	n := servertest.RunServer(t, cfg, server.WithPlugins(disco.New(), &roomsPlugin{}))
	servertest.CreateUser(t, n, "alice", "pw")
	c := servertest.Dial(t, n)
	me := c.Login("alice", "pw", "r")

	c.Send(`<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	items := c.Await("disco#items", func(el *wire.Element) bool { return el.ID() == "i1" })
	if it := items.Child("query", wire.NSDiscoItems).Child("item", ""); it == nil || it.Attr("jid") != "rooms.localhost" || it.Attr("name") != "Rooms" {
		t.Fatalf("disco#items: %s", items)
	}
	c.Send(`<iq type='get' id='i2' to='rooms.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := c.Await("disco#info", func(el *wire.Element) bool { return el.ID() == "i2" })
	if info.Type() != "result" || info.From() != "rooms.localhost" || info.Child("query", wire.NSDiscoInfo).Child("identity", "").Attr("category") != "conference" {
		t.Fatalf("disco#info: %s", info)
	}
	c.Send(`<message to='lobby@rooms.localhost' type='groupchat'><body>hi</body></message>`)
	m := c.Await("echo", func(el *wire.Element) bool { return el.Name == "message" })
	if m.From() != "lobby@rooms.localhost" || m.To() != me || m.ChildText("body", "") != "echo hi" {
		t.Fatalf("answer: %s", m)
	}
	c.Send(`<presence to='lobby@rooms.localhost/alice' type='probe'/><iq type='set' id='i3' to='lobby@rooms.localhost'><query xmlns='urn:test:none'/></iq>`)
	e := c.Await("bounce", func(el *wire.Element) bool { return el.ID() == "i3" })
	if e.Type() != "error" || e.Child("error", "").Child("service-unavailable", wire.NSStanzas) == nil {
		t.Fatalf("refused IQ: %s", e)
	}

	// A peer dialling the service domain is served a certificate naming it.
	conn, err := tls.Dial("tcp", n.Addr(server.ListenerC2STLS).String(), &tls.Config{ServerName: "rooms.localhost", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	if !slices.Contains(leaf.DNSNames, "rooms.localhost") {
		t.Fatalf("the self-signed certificate names %v, not the service domain", leaf.DNSNames)
	}
}

// TestServiceDomainFederates: two real nodes of two domains federate
// over s2s (self-signed certificates, so dialback): bob@b.test reaches
// lobby@rooms.a.test, and the room's answer comes back to him from
// rooms.a.test, authenticated for that subdomain.
func TestServiceDomainFederates(t *testing.T) {
	_, b := servertest.RunFederatedPairWith(t, "a.test", "b.test", servertest.FederatedPair{
		Subdomains: []string{"rooms"},
		Options:    []server.Option{server.WithPlugins(disco.New(), &roomsPlugin{})},
	})
	servertest.CreateUser(t, b, "bob", "pw")
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	me := bob.Login("bob", "pw", "desk")
	bob.Send(`<message to='lobby@rooms.a.test' type='groupchat'><body>over s2s</body></message>`)
	m := bob.Await("the room's answer", func(el *wire.Element) bool { return el.Name == "message" })
	if m.Type() == "error" || m.From() != "lobby@rooms.a.test" || m.To() != me || m.ChildText("body", "") != "echo over s2s" {
		t.Fatalf("answer: %s", m)
	}
	bob.Send(`<iq type='get' id='d1' to='rooms.a.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if info := bob.Await("disco#info", func(el *wire.Element) bool { return el.ID() == "d1" }); info.Type() != "result" || info.From() != "rooms.a.test" {
		t.Fatalf("disco#info over s2s: %s", info)
	}
}
