package c2s_test

import (
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestStanzaNamespace: stanzas on a client stream are in jabber:client
// (RFC 6120 §4.9.3.10, §4.9.3.24); others end the stream instead of being
// routed.
func TestStanzaNamespace(t *testing.T) {
	n := startServer(t, "alice")
	expectStreamErrors(t, n, "alice", []streamErrorCase{
		{"jabber:server", "<message xmlns='jabber:server' to='alice@localhost'><body>x</body></message>", "invalid-namespace"},
		{"unknown namespace", "<iq xmlns='urn:example:nope' type='get' id='i1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", "unsupported-stanza-type"},
		{"unknown element", "<hello xmlns='jabber:client'/>", "unsupported-stanza-type"},
	})
	// An explicit jabber:client namespace is fine.
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	c.SendRaw("<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if r := c.Await("ping", func(el *wire.Element) bool { return el.ID() == "p1" }); r.Type() != "result" {
		t.Errorf("ping in jabber:client: %s", r)
	}
}

type streamErrorCase struct{ name, stanza, cond string }

// expectStreamErrors logs user in once per case, sends the case's bytes
// and expects the stream to end with its condition.
func expectStreamErrors(t *testing.T, n *server.Node, user string, cases []streamErrorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := servertest.DialTLS(t, n)
			c.Login(user, user+"pw", "r")
			c.SendRaw(tc.stanza)
			c.ExpectStreamError(tc.cond)
		})
	}
}

// TestIQSyntax: an IQ without an id, with an unknown type, or a get/set
// without exactly one payload gets bad-request (RFC 6120 §8.2.3, §8.3.3.1);
// the stream stays up.
func TestIQSyntax(t *testing.T) {
	n := startServer(t, "alice")
	cases := []struct{ name, iq, id string }{
		{"unknown type", "<iq type='bogus' id='x1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", "x1"},
		{"no id", "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", ""},
		{"two payloads", "<iq type='get' id='x3' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>", "x3"},
		{"no payload", "<iq type='set' id='x4'/>", "x4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := servertest.DialTLS(t, n)
			c.Login("alice", "alicepw", "r")
			c.SendRaw(tc.iq)
			el := c.Await("error", func(el *wire.Element) bool { return el.Name == "iq" })
			if el.Type() != "error" || el.ID() != tc.id || el.Child("error", "").Child("bad-request", wire.NSStanzas) == nil {
				t.Fatalf("got %s, want bad-request with id %q", el, tc.id)
			}
			c.Send("<iq type='get' id='ok' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
			if r := c.Await("ping", func(el *wire.Element) bool { return el.ID() == "ok" }); r.Type() != "result" {
				t.Errorf("stream unusable after the error: %s", r)
			}
		})
	}
	// A result or error without an id is dropped, not answered.
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	c.SendRaw("<iq type='result' to='localhost'/>")
	c.Send("<iq type='get' id='ok' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if r := c.Await("iq", func(el *wire.Element) bool { return el.Name == "iq" }); r.ID() != "ok" {
		t.Errorf("answered an id-less result: %s", r)
	}
}

// TestSMBadAck: a stream-management ack whose h is not a number is a
// bad-format stream error (RFC 6120 §4.9.3.1, XEP-0198).
func TestSMBadAck(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	enableSM(t, c)
	c.Send("<a xmlns='urn:xmpp:sm:3' h='abc'/>")
	c.ExpectStreamError("bad-format")
}

// TestWhitespaceKeepalive: whitespace from the client counts as activity,
// so a client that answers a ping with a whitespace keepalive alone is
// kept (and pinged again after more silence) rather than closed; silence
// after a ping closes it with connection-timeout.
func TestWhitespaceKeepalive(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.PingInterval = 200 * time.Millisecond
	cfg.C2S.IdleTimeout = 400 * time.Millisecond
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	isPing := func(el *wire.Element) bool {
		return el.Name == "iq" && el.Type() == "get" && el.Child("ping", wire.NSPing) != nil
	}
	first := c.Await("ping", isPing)
	c.SendRaw(" ")
	second := c.Await("second ping", isPing)
	if second.ID() == first.ID() {
		t.Errorf("ping id reused: %s", second.ID())
	}
	c.ExpectStreamError("connection-timeout")
}

// TestPresenceUnknownType: a presence type RFC 6121 §4.7.1 does not define
// gets bad-request instead of being broadcast or dropped.
func TestPresenceUnknownType(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.DialTLS(t, n)
	c.Login("alice", "alicepw", "r")
	c.SendRaw("<presence type='bogus' id='p1'/>")
	el := c.Await("error", func(el *wire.Element) bool { return el.Name == "presence" && el.ID() == "p1" })
	if el.Type() != "error" || el.Child("error", "").Child("bad-request", wire.NSStanzas) == nil {
		t.Fatalf("got %s, want bad-request", el)
	}
}

// TestBadFormat: text between stanzas, or a second stream header in the
// middle of a stream, ends it with bad-format (RFC 6120 §4.9.3.1) instead
// of being read as the start of one endless element.
func TestBadFormat(t *testing.T) {
	n := startServer(t, "alice")
	for name, in := range map[string]string{
		"text between stanzas": "hello<presence/>",
		"second stream header": "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><presence/>",
	} {
		t.Run(name, func(t *testing.T) {
			c := servertest.DialTLS(t, n)
			c.Login("alice", "alicepw", "r")
			c.SendRaw(in)
			c.ExpectStreamError("bad-format")
		})
	}
}
