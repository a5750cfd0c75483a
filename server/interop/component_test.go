package interop

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// TestComponentInClusterAndOverS2S: domain a.test runs on two clustered
// nodes, each with a component listener; the component bot.a.test
// connects to A1 only. Alice, on A2, reaches it (A2 sends her message to
// A1 over the node link) and gets its answer; bob, on b.test, reaches it
// over s2s and gets its answer on the outgoing stream of bot.a.test.
// With a second connection on A2, sessions spread over both. With none,
// stanzas to it bounce with service-unavailable. A wrong secret and an
// unknown domain are refused.
func TestComponentInClusterAndOverS2S(t *testing.T) {
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-component")
	a1S2S, a2S2S, bS2S := servertest.FreeAddr(t), servertest.FreeAddr(t), servertest.FreeAddr(t)
	a1Comp, a2Comp := servertest.FreeAddr(t), servertest.FreeAddr(t)
	const compSecret = "bot secret"

	startA := func(name, s2sAddr, compAddr string) (*server.Node, *hazelcast.Cluster) {
		return startFederatedClusterNode(t, pg, member, name, "comp.", s2sAddr, map[string]string{"b.test": bS2S}, func(cfg *conf.Config) {
			cfg.Components.Listen = compAddr
			cfg.Components.Secrets = map[string]string{"bot.a.test": compSecret}
		})
	}
	a1, c1 := startA("a1", a1S2S, a1Comp)
	a2, c2 := startA("a2", a2S2S, a2Comp)
	servertest.WaitClustered(t, c1, c2)

	cfgB := servertest.DefaultConfig(t)
	cfgB.Domain = "b.test"
	cfgB.S2S.Listen = bS2S
	cfgB.S2S.Hosts = map[string]string{"a.test": a1S2S, "bot.a.test": a1S2S}
	b := servertest.RunServer(t, cfgB, server.WithService(server.NewFederationService()))

	servertest.CreateUser(t, a1, "alice", "pw")
	servertest.CreateUser(t, b, "bob", "pw")

	// Refusals first: a wrong secret, an unknown component.
	bad := servertest.DialRaw(t, a1Comp, "bot.a.test", false)
	bad.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='bot.a.test'>")
	if _, err := bad.ReadHeaderOnly(); err != nil {
		t.Fatal(err)
	}
	bad.Send("<handshake>%s</handshake>", strings.Repeat("0", 40))
	bad.ExpectStreamError("not-authorized")
	unknown := servertest.DialRaw(t, a1Comp, "nope.a.test", false)
	unknown.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='nope.a.test'>")
	if _, err := unknown.ReadHeaderOnly(); err != nil {
		t.Fatal(err)
	}
	unknown.ExpectStreamError("host-unknown")

	comp1 := servertest.DialComponent(t, a1Comp, "bot.a.test", compSecret)
	echoComponent(comp1, "c1")
	alice := servertest.DialAddr(t, a2.Addr(server.ListenerC2S).String(), "a.test", false)
	aliceJID := alice.Login("alice", "pw", "phone")

	// alice (A2) → the connection on A1, once A2 has heard of it (before,
	// her message bounces; after, every one arrives).
	servertest.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		return echoOnce(alice, "hello bot", "c1")
	})
	for i := range 20 {
		if err := echoOnce(alice, fmt.Sprint("in order ", i), "c1"); err != nil {
			t.Fatal(err)
		}
	}

	// bob (b.test) → s2s → A1 → the component; its answer goes back on
	// A1's outgoing stream for bot.a.test, which b.test verifies by
	// dialback.
	bob := servertest.DialAddr(t, b.Addr(server.ListenerC2S).String(), "b.test", false)
	bob.Login("bob", "pw", "desk")
	if err := echoOnce(bob, "hello from b.test", "c1"); err != nil {
		t.Fatal(err)
	}

	// A second connection, on A2: sessions spread over both, each
	// session's messages stay on one.
	comp2 := servertest.DialComponent(t, a2Comp, "bot.a.test", compSecret)
	echoComponent(comp2, "c2")
	seen := map[string]string{}
	var sessions []*servertest.Client
	for i := range 6 {
		c := servertest.DialAddr(t, a2.Addr(server.ListenerC2S).String(), "a.test", false)
		c.Login("alice", "pw", fmt.Sprint("tab", i))
		sessions = append(sessions, c)
	}
	servertest.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		clear(seen)
		for i, c := range sessions {
			for range 3 {
				tag, err := echoTag(c, "spread")
				if err != nil {
					return err
				}
				if seen[fmt.Sprint(i)] != "" && seen[fmt.Sprint(i)] != tag {
					return fmt.Errorf("session %d answered by %s and %s", i, seen[fmt.Sprint(i)], tag)
				}
				seen[fmt.Sprint(i)] = tag
			}
		}
		var c1, c2 int
		for _, tag := range seen {
			switch tag {
			case "c1":
				c1++
			case "c2":
				c2++
			}
		}
		if c1 == 0 || c2 == 0 {
			return fmt.Errorf("sessions not spread over both connections: %v", seen)
		}
		return nil
	})

	// Both connections gone: a stanza to the component bounces.
	comp1.Close()
	comp2.Close()
	servertest.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		alice.Send(`<message to='echo@bot.a.test' type='chat' id='gone'><body>anyone?</body></message>`)
		el, err := alice.Next()
		if err != nil {
			return err
		}
		if !el.IsError() || el.From() != "echo@bot.a.test" {
			return fmt.Errorf("alice got %s", el)
		}
		if el.Child("error", "") == nil || el.Child("error", "").Child("service-unavailable", wire.NSStanzas) == nil {
			return fmt.Errorf("bounce is not service-unavailable: %s", el)
		}
		return nil
	})
	_ = aliceJID
}

// echoComponent answers every message the component gets with its body
// prefixed by tag, from the address it was sent to.
func echoComponent(c *servertest.Client, tag string) {
	c.Timeout = 5 * time.Minute
	go func() {
		for {
			el, err := c.Next()
			if err != nil {
				return
			}
			if el.Name != "message" || el.IsError() {
				continue
			}
			reply := wire.New("message", "from", el.To(), "to", el.From(), "type", "chat").
				Append(wire.New("body").SetText(tag + ": " + el.ChildText("body", "")))
			if _, err := c.Conn.Write([]byte(reply.String())); err != nil {
				return
			}
		}
	}()
}

// echoTag sends body to the component and returns the tag of the
// connection that answered, or an error (a bounce).
func echoTag(c *servertest.Client, body string) (string, error) {
	c.Send(`<message to='echo@bot.a.test' type='chat'><body>%s</body></message>`, body)
	el, err := c.Next()
	if err != nil {
		return "", err
	}
	if el.Name != "message" || el.IsError() || el.From() != "echo@bot.a.test" {
		return "", fmt.Errorf("got %s", el)
	}
	tag, rest, ok := strings.Cut(el.ChildText("body", ""), ": ")
	if !ok || rest != body {
		return "", fmt.Errorf("answer %s to %q", el, body)
	}
	return tag, nil
}

// echoOnce sends body and wants the answer from the connection tagged tag.
func echoOnce(c *servertest.Client, body, tag string) error {
	got, err := echoTag(c, body)
	if err == nil && got != tag {
		err = fmt.Errorf("answered by %s, want %s", got, tag)
	}
	return err
}
