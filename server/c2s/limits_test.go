package c2s_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestRegistrationRateLimit: one address registered 904 accounts a
// second in-band; past c2s.registration_limit it gets resource-constraint
// with a text, on the same stream, and nothing is created. A user of the
// same address still logs in.
func TestRegistrationRateLimit(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.AllowRegistration = true
	cfg.C2S.RegistrationLimit = 3
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "carol", "carolpw")
	c := servertest.DialTLS(t, n)
	for i := 1; i <= 4; i++ {
		c.Send("<iq type='set' id='reg%d'><query xmlns='jabber:iq:register'><username>bot%d</username><password>pw</password></query></iq>", i, i)
		r := c.Expect("registration answer", func(el *wire.Element) bool { return el.ID() == fmt.Sprintf("reg%d", i) })
		if i <= 3 {
			if r.Type() != "result" {
				t.Fatalf("registration %d: %s", i, r)
			}
			continue
		}
		e := r.Child("error", "")
		if r.Type() != "error" || e == nil || e.Type() != "wait" || e.Child("resource-constraint", wire.NSStanzas) == nil || e.ChildText("text", wire.NSStanzas) == "" {
			t.Fatalf("registration past the limit: %s", r)
		}
	}
	if _, err := n.Store().GetUser(t.Context(), "bot4"); err == nil {
		t.Error("bot4 was created past the limit")
	}
	checkCanary(t, canary(t, n))
}

// TestPreAuthStanzaLimit: before authentication an element may be
// c2s.preauth_max_stanza_bytes (16 KiB), not the full 256 KiB: 2,000
// unauthenticated connections each holding a partial stanza took 1 GB.
// Logins with long credentials still fit, and once authenticated the full
// limit applies again.
func TestPreAuthStanzaLimit(t *testing.T) {
	n := startServer(t, "alice", "carol")
	long := strings.Repeat("p", 4000)
	servertest.CreateUser(t, n, "longpw", long)
	watcher := canary(t, n)

	t.Run("oversized auth", func(t *testing.T) {
		c := servertest.DialTLS(t, n)
		c.SendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + strings.Repeat("A", 17<<10) + "</auth>")
		c.ExpectStreamError("policy-violation")
	})
	t.Run("oversized before starttls", func(t *testing.T) {
		c := servertest.Dial(t, n)
		c.SendRaw("<iq type='get' id='r1'><query xmlns='jabber:iq:register'><x>" + strings.Repeat("x", 17<<10) + "</x></query></iq>")
		c.ExpectStreamError("policy-violation")
	})
	t.Run("long password fits", func(t *testing.T) {
		c := servertest.DialTLS(t, n)
		if err := c.AuthPLAIN("longpw", long); err != nil {
			t.Fatal(err)
		}
		if err := servertest.DialTLS(t, n).AuthSCRAM("SCRAM-SHA-256", "longpw", long); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("full limit after authentication", func(t *testing.T) {
		c := servertest.DialTLS(t, n)
		c.Login("alice", "alicepw", "big")
		big := strings.Repeat("b", 100<<10)
		c.Send("<message to='carol@localhost/canary' type='chat' id='big'><body>%s</body></message>", big)
		m := watcher.Await("the large message", func(el *wire.Element) bool { return el.Name == "message" })
		if m.ChildText("body", "") != big {
			t.Fatalf("got %d bytes of body", len(m.ChildText("body", "")))
		}
	})
	checkCanary(t, watcher)
}

// TestUnauthenticatedPerAddress: one address may hold
// c2s.max_unauthenticated_per_address streams that have not
// authenticated; the next one gets policy-violation after its header. A
// stream that authenticates frees its place, and authenticated sessions
// of the same address are not counted.
func TestUnauthenticatedPerAddress(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.MaxUnauthenticatedPerAddress = 3
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	servertest.CreateUser(t, n, "carol", "carolpw")
	watcher := canary(t, n)

	var held []*servertest.Client
	for i := 0; i < 3; i++ {
		held = append(held, servertest.DialTLS(t, n)) // header sent, features read
	}
	over := servertest.DialRaw(t, n.Addr(server.ListenerC2STLS).String(), "localhost", true)
	over.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
	if _, err := over.ReadHeaderOnly(); err != nil {
		t.Fatal(err)
	}
	over.ExpectStreamError("policy-violation")

	// One of the three authenticates: a new stream is served again.
	held[0].Login("alice", "alicepw", "a")
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		c := servertest.DialRaw(t, n.Addr(server.ListenerC2STLS).String(), "localhost", true)
		defer c.Close()
		c.SendRaw("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
		if _, err := c.ReadHeaderOnly(); err != nil {
			return err
		}
		if el := c.MustNext(); el.Name != "stream:features" {
			return fmt.Errorf("got %s", el)
		}
		return nil
	})
	checkCanary(t, watcher)
}
