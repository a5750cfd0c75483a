package c2s_test

import (
	"testing"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// canary logs in a user who is not under attack; checkCanary proves the
// node still serves it after the attack.
func canary(t *testing.T, n *server.Node) *servertest.Client {
	t.Helper()
	c := servertest.DialTLS(t, n)
	c.Login("carol", "carolpw", "canary")
	return c
}

func checkCanary(t *testing.T, c *servertest.Client) {
	t.Helper()
	id := c.NextID()
	c.Send("<iq type='get' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", id)
	if r := c.Await("canary ping", func(el *wire.Element) bool { return el.ID() == id }); r.Type() != "result" {
		t.Fatalf("canary: %s", r)
	}
}

// TestStreamHeaderNamespace: the stream header is the element "stream" in
// http://etherx.jabber.org/streams, whatever its prefix (RFC 6120 §4.8).
// Anything else ends the stream before any feature is offered; a header
// under another prefix is as good as the usual one.
func TestStreamHeaderNamespace(t *testing.T) {
	n := startServer(t, "alice", "carol")
	watcher := canary(t, n)
	addr := n.Addr(server.ListenerC2STLS).String()
	cases := []struct{ name, header, cond string }{
		{"other namespace", "<?xml version='1.0'?><x:stream xmlns:x='urn:not-streams' xmlns='jabber:client' to='localhost' version='1.0'>", "invalid-namespace"},
		{"html", "<html xmlns='jabber:client' to='localhost' version='1.0'>", "invalid-namespace"},
		{"no namespace at all", "<stream to='localhost' version='1.0'>", "invalid-namespace"},
		{"stream prefix bound elsewhere", "<stream:stream xmlns:stream='urn:not-streams' xmlns='jabber:client' to='localhost' version='1.0'>", "invalid-namespace"},
		{"undeclared prefix", "<stream:stream xmlns='jabber:client' to='localhost' version='1.0'>", "bad-namespace-prefix"},
		{"not a stream element", "<stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' to='localhost' version='1.0'>", "bad-format"},
		{"streams namespace as content namespace", "<stream xmlns='http://etherx.jabber.org/streams' to='localhost' version='1.0'>", "invalid-namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := servertest.DialRaw(t, addr, "localhost", true)
			c.SendRaw(tc.header)
			if _, err := c.ReadHeaderOnly(); err != nil {
				t.Fatalf("no stream header before the error: %v", err)
			}
			el := c.MustNext()
			if el.Name != "stream:error" || el.Child(tc.cond, wire.NSStreams) == nil {
				t.Fatalf("got %s, want stream error %s", el, tc.cond)
			}
		})
	}
	t.Run("other prefix logs in", func(t *testing.T) {
		c := servertest.DialRaw(t, addr, "localhost", true)
		c.SendRaw("<?xml version='1.0'?><x:stream xmlns:x='http://etherx.jabber.org/streams' xmlns='jabber:client' to='localhost' version='1.0'>")
		f := c.ReadHeaderAndFeatures()
		if f.Child("mechanisms", wire.NSSASL) == nil {
			t.Fatalf("features = %s", f)
		}
		if err := c.AuthPLAIN("alice", "alicepw"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Bind("x"); err != nil {
			t.Fatal(err)
		}
	})
	checkCanary(t, watcher)
}

// TestPrefixedStanzas: a prefix means the namespace it is bound to.
// <c:message xmlns:c='jabber:client'> is an ordinary message (it closed
// the stream as unsupported-stanza-type), negotiation elements may be
// prefixed too, an undeclared prefix is bad-namespace-prefix, and a stanza
// that puts itself in no namespace (xmlns="") is invalid-namespace
// instead of being routed as jabber:client.
func TestPrefixedStanzas(t *testing.T) {
	n := startServer(t, "alice", "bob", "carol")
	watcher := canary(t, n)
	bob := servertest.DialTLS(t, n)
	bob.Login("bob", "bobpw", "b")

	t.Run("prefixed negotiation and message", func(t *testing.T) {
		c := servertest.Dial(t, n)
		c.SendRaw("<tls:starttls xmlns:tls='urn:ietf:params:xml:ns:xmpp-tls'/>")
		c.ExpectName("proceed")
		c.StartTLSAfterProceed()
		c.Open()
		c.Send("<s:auth xmlns:s='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</s:auth>", servertest.Base64("\x00alice\x00alicepw"))
		c.ExpectName("success")
		c.Restart()
		if _, err := c.Bind("p"); err != nil {
			t.Fatal(err)
		}
		c.SendRaw("<c:message xmlns:c='jabber:client' to='bob@localhost/b' type='chat' id='m1'><c:body>prefixed</c:body></c:message>")
		m := bob.Await("the prefixed message", func(el *wire.Element) bool { return el.Name == "message" })
		if m.ChildText("body", "") != "prefixed" || m.From() != "alice@localhost/p" {
			t.Fatalf("bob got %s", m)
		}
	})
	expectStreamErrors(t, n, "alice", []streamErrorCase{
		{"undeclared prefix", "<y:message to='bob@localhost/b'><y:body>x</y:body></y:message>", "bad-namespace-prefix"},
		{"undeclared prefix on a payload", "<message to='bob@localhost/b'><y:body>x</y:body></message>", "bad-namespace-prefix"},
		{"xmlns='' on a message", "<message xmlns='' to='bob@localhost/b' type='chat'><body>no namespace</body></message>", "invalid-namespace"},
		{"xmlns='' on an iq", "<iq xmlns='' type='get' id='i1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", "invalid-namespace"},
	})
	// Nothing of the refused stanzas reached bob: the next message he
	// gets is this one.
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "after")
	c.Send("<message to='bob@localhost/b' type='chat' id='last'><body>last</body></message>")
	m := bob.Await("a message", func(el *wire.Element) bool { return el.Name == "message" })
	if m.ID() != "last" {
		t.Fatalf("bob got %s, want only the last message", m)
	}
	checkCanary(t, watcher)
}

// goXMPPHeader is the stream header the go-xmpp library writes, newlines
// and all.
const goXMPPHeader = "<?xml version='1.0'?>\n<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\n"

// dialGoXMPP connects to a listener and opens a stream as go-xmpp does;
// on the STARTTLS listener it sends starttls (and then, when set, the
// separate white space), runs TLS and opens the stream again.
func dialGoXMPP(t *testing.T, n *server.Node, directTLS bool, starttls, after string) *servertest.Client {
	t.Helper()
	listener := server.ListenerC2S
	if directTLS {
		listener = server.ListenerC2STLS
	}
	c := servertest.DialRaw(t, n.Addr(listener).String(), "localhost", directTLS)
	c.SendRaw(goXMPPHeader)
	c.ReadHeaderAndFeatures()
	if directTLS {
		return c
	}
	c.SendRaw(starttls)
	c.ExpectName("proceed")
	if after != "" {
		c.SendRaw(after)
	}
	c.StartTLSAfterProceed()
	c.SendRaw(goXMPPHeader)
	c.ReadHeaderAndFeatures()
	return c
}

// TestWhiteSpaceBetweenElements: RFC 6120 allows white space between
// elements, and the go-xmpp library (go-sendxmpp and many bots) writes a
// newline after <starttls/>, </auth> and </response>. The exact bytes of
// a go-xmpp login over STARTTLS, and over direct TLS.
func TestWhiteSpaceBetweenElements(t *testing.T) {
	n := startServer(t, "alice", "carol")
	watcher := canary(t, n)
	const starttls = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
	login := func(t *testing.T, c *servertest.Client) {
		t.Helper()
		c.SendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + servertest.Base64("\x00alice\x00alicepw") + "</auth>\n")
		c.ExpectName("success")
		c.SendRaw(goXMPPHeader)
		if f := c.ReadHeaderAndFeatures(); f.Child("bind", wire.NSBind) == nil {
			t.Fatalf("features after auth = %s", f)
		}
		c.SendRaw("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>go</resource></bind></iq>\n")
		if r := c.Await("bind", func(el *wire.Element) bool { return el.ID() == "b1" }); r.Type() != "result" {
			t.Fatalf("bind: %s", r)
		}
	}
	t.Run("starttls", func(t *testing.T) {
		login(t, dialGoXMPP(t, n, false, starttls+"\n", ""))
	})
	t.Run("newline after the handshake began", func(t *testing.T) {
		// The white space arrives on its own, after the server has read
		// <starttls/>: it comes before the client's first TLS record.
		login(t, dialGoXMPP(t, n, false, starttls, "\n \r\n"))
	})
	t.Run("direct TLS", func(t *testing.T) {
		login(t, dialGoXMPP(t, n, true, "", ""))
	})
	t.Run("after SCRAM's response", func(t *testing.T) {
		c := servertest.DialTLS(t, n)
		c.NewlineAfterElements = true
		if err := c.AuthSCRAM("SCRAM-SHA-256", "alice", "alicepw"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Bind("scram"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("data after starttls is still refused", func(t *testing.T) {
		c := servertest.DialRaw(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
		c.SendRaw(goXMPPHeader)
		c.ReadHeaderAndFeatures()
		c.SendRaw(starttls + "\n<presence/>")
		c.ExpectName("proceed")
		if err := c.ExpectClosed(); err == nil {
			t.Fatal("stream went on after data that followed <starttls/>")
		}
	})
	checkCanary(t, watcher)
}
