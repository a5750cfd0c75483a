package component_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/component"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

const (
	botDomain = "bot." + plugintest.Domain
	botSecret = "bot secret"
)

// startNode runs the plugin on a host that is node name of net.
func startNode(t *testing.T, net *plugintest.Net, name string) (*plugintest.Host, *plugins.Manager, *component.Plugin) {
	t.Helper()
	h := plugintest.NewHost(t)
	h.Node = net.Join(name)
	h.Cfg.Cluster.NodeName = name
	h.Cfg.Components.Listen = "127.0.0.1:0"
	h.Cfg.Components.Secrets = map[string]string{botDomain: botSecret}
	h.Cfg.Components.HandshakeTimeout = 5 * time.Second
	p := component.New()
	return h, h.Start(t, p), p
}

const toBot = `<message from='romeo@example.com/orchard' to='echo@bot.example.com' type='chat'><body>%s</body></message>`

// TestRoutedToTheNodeWithTheConnection: a stanza for the component that
// arrives on a node without a connection goes to the node that has one;
// when that node crashes it bounces with remote-server-timeout, and once
// the cluster lists it gone, with service-unavailable.
func TestRoutedToTheNodeWithTheConnection(t *testing.T) {
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	_, _, p1 := startNode(t, net, "n1")
	h2, m2, _ := startNode(t, net, "n2")

	comp := servertest.DialComponent(t, p1.Addr().String(), botDomain, botSecret)
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		return h2.ToService(t, m2, fmt.Sprintf(toBot, "via n1"))
	})
	got := comp.ExpectName("message")
	if got.ChildText("body", "") != "via n1" || got.From() != "romeo@example.com/orchard" {
		t.Fatalf("component got %s", got)
	}

	net.Crash("n1")
	if err := h2.ToService(t, m2, fmt.Sprintf(toBot, "n1 crashed")); !errors.Is(err, wire.ErrRemoteServerTimeout) {
		t.Fatalf("with the connection's node crashed: %v, want remote-server-timeout", err)
	}
	net.Leave("n1")
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if err := h2.ToService(t, m2, fmt.Sprintf(toBot, "n1 gone")); !errors.Is(err, wire.ErrServiceUnavailable) {
			return fmt.Errorf("with no connection left: %v, want service-unavailable", err)
		}
		return nil
	})
}

// TestLateNodeLearnsConnections: a node that joins after the component
// connected learns of the connection and routes to it.
func TestLateNodeLearnsConnections(t *testing.T) {
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	_, _, p1 := startNode(t, net, "n1")
	comp := servertest.DialComponent(t, p1.Addr().String(), botDomain, botSecret)
	h3, m3, _ := startNode(t, net, "n3")
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		return h3.ToService(t, m3, fmt.Sprintf(toBot, "from the late node"))
	})
	if got := comp.ExpectName("message"); got.ChildText("body", "") != "from the late node" {
		t.Fatalf("component got %s", got)
	}
}

// TestComponentSends: what the component sends is routed with its from
// (the component's domain when it has none); a from outside its domain
// or a stanza without a to ends the stream.
func TestComponentSends(t *testing.T) {
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	h, _, p := startNode(t, net, "n1")
	comp := servertest.DialComponent(t, p.Addr().String(), botDomain, botSecret)
	comp.Send(`<message from='echo@bot.example.com/x' to='romeo@example.com'><body>one</body></message>`)
	comp.Send(`<presence to='romeo@example.com'/>`)
	// Routed forgets what it returns: keep what each poll saw, or a poll
	// that sees only the message makes the next ones see only the presence.
	var got []string
	servertest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		want := []string{
			`<message from="echo@bot.example.com/x" to="romeo@example.com"><body>one</body></message>`,
			`<presence to="romeo@example.com" from="bot.example.com"/>`,
		}
		if got = append(got, h.Routed()...); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("routed %v, want %v", got, want)
		}
		return nil
	})
	comp.Send(`<message from='iago@example.com' to='romeo@example.com'><body>spoofed</body></message>`)
	comp.ExpectStreamError("invalid-from")

	comp = servertest.DialComponent(t, p.Addr().String(), botDomain, botSecret)
	comp.Send(`<message from='bot.example.com'><body>to nobody</body></message>`)
	comp.ExpectStreamError("improper-addressing")
}
