package c2s_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
	"mellium.im/sasl"
)

// sasl2Login runs SCRAM-SHA-256 over XEP-0388 with extra (a Bind 2
// request, or nothing) in <authenticate/>, and returns the <success/> or
// <failure/> that ends it.
func sasl2Login(t *testing.T, c *servertest.Client, user, password, extra string) *wire.Element {
	t.Helper()
	neg := sasl.NewClient(sasl.ScramSha256, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(password), nil
	}))
	_, first, err := neg.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'><initial-response>%s</initial-response>"+
		"<user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>test</software></user-agent>%s</authenticate>",
		base64.StdEncoding.EncodeToString(first), extra)
	for {
		el := c.MustNext()
		if el.NS() != wire.NSSASL2 {
			t.Fatalf("SASL2 answered outside its namespace: %s", el)
		}
		switch el.Name {
		case "challenge":
			in, err := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Text))
			if err != nil {
				t.Fatalf("bad challenge %s", el)
			}
			_, resp, err := neg.Step(in)
			if err != nil {
				t.Fatalf("sasl step: %v", err)
			}
			c.Send("<response xmlns='urn:xmpp:sasl:2'>%s</response>", base64.StdEncoding.EncodeToString(resp))
		case "success":
			in, err := base64.StdEncoding.DecodeString(strings.TrimSpace(el.ChildText("additional-data", "")))
			if err != nil {
				t.Fatalf("bad additional-data in %s", el)
			}
			if _, _, err := neg.Step(in); err != nil {
				t.Fatalf("server signature rejected: %v", err)
			}
			return el
		default:
			return el
		}
	}
}

// SASL2 with Bind 2: one exchange authenticates and binds, the stream is
// not restarted, the features that follow no longer offer binding, and
// the session works at once.
func TestSASL2WithBind2(t *testing.T) {
	n := startServer(t, "alice", "bob")
	c := servertest.Dial(t, n)
	f := c.StartTLS()
	a := f.Child("authentication", wire.NSSASL2)
	if a == nil || a.Child("inline", "") == nil || a.Child("inline", "").Child("bind", wire.NSBind2) == nil {
		t.Fatalf("features after TLS = %s, want SASL2 with Bind 2 inline", f)
	}
	if !strings.Contains(a.String(), ">SCRAM-SHA-256<") {
		t.Fatalf("SASL2 mechanisms %s, want the RFC 6120 ones", a)
	}
	el := sasl2Login(t, c, "alice", "alicepw", "<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag></bind>")
	if el.Name != "success" || el.Child("bound", wire.NSBind2) == nil {
		t.Fatalf("got %s, want success with <bound/>", el)
	}
	full := el.ChildText("authorization-identifier", "")
	if !strings.HasPrefix(full, "alice@"+n.Config().Domain+"/Phone-") {
		t.Fatalf("authorization-identifier %q, want alice's full JID with the tag", full)
	}
	feats := c.ExpectName("stream:features")
	if feats.Child("bind", wire.NSBind) != nil || feats.Child("sm", wire.NSSM) == nil {
		t.Fatalf("features after SASL2 + Bind 2 = %s, want sm and no bind", feats)
	}
	c.JID = full

	// A bound session: messages flow both ways.
	b := servertest.DialTLS(t, n)
	bob := b.Login("bob", "bobpw", "r")
	c.Send("<presence/>")
	c.Send("<message to='%s' type='chat' id='m1'><body>hi</body></message>", bob)
	got := b.Await("message from alice", func(el *wire.Element) bool { return el.Name == "message" })
	if got.From() != full || got.ChildText("body", "") != "hi" {
		t.Fatalf("bob got %s", got)
	}
	b.Send("<message to='%s' type='chat'><body>back</body></message>", full)
	c.Await("message from bob", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == "back"
	})
	// Stream management after Bind 2, the usual way.
	c.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	c.Await("sm enabled", func(el *wire.Element) bool { return el.Name == "enabled" })
}

// Bind 2 turns stream management and carbons on inside the exchange when
// the client asks, as Conversations does: <enabled/> comes inside <bound/>,
// the session counts stanzas from <success/> on and can be resumed, and
// carbon copies reach it without a carbons IQ.
func TestSASL2Bind2InlineFeatures(t *testing.T) {
	n := startServer(t, "alice", "bob")
	c := servertest.Dial(t, n)
	f := c.StartTLS()
	var offered []string
	if b := f.Child("authentication", wire.NSSASL2).Child("inline", "").Child("bind", wire.NSBind2); b.Child("inline", "") != nil {
		for _, ft := range b.Child("inline", "").Children {
			offered = append(offered, ft.Attr("var"))
		}
	}
	if !slices.Contains(offered, wire.NSSM) || !slices.Contains(offered, wire.NSCarbons) || !slices.Contains(offered, wire.NSCSI) {
		t.Fatalf("Bind 2 inline features %v, want stream management, carbons and CSI", offered)
	}
	el := sasl2Login(t, c, "alice", "alicepw", "<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag>"+
		"<enable xmlns='urn:xmpp:carbons:2'/><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>")
	en := el.Child("bound", wire.NSBind2).Child("enabled", wire.NSSM)
	if el.Name != "success" || en == nil || en.Attr("resume") != "true" || en.Attr("id") == "" {
		t.Fatalf("got %s, want success with <bound><enabled resume='true' id=.../></bound>", el)
	}
	c.JID = el.ChildText("authorization-identifier", "")
	if feats := c.ExpectName("stream:features"); feats.Child("sm", wire.NSSM) != nil {
		t.Fatalf("features %s offer stream management, which is on already", feats)
	}
	c.Send("<presence/>")

	// Carbons: a chat message to alice's other resource is copied here.
	other := servertest.DialTLS(t, n)
	otherJID := other.Login("alice", "alicepw", "laptop")
	b := servertest.DialTLS(t, n)
	b.Login("bob", "bobpw", "r")
	b.Send("<message to='%s' type='chat' id='c1'><body>to the laptop</body></message>", otherJID)
	cc := c.Await("carbon copy", func(el *wire.Element) bool { return el.Name == "message" })
	if cc.Child("received", wire.NSCarbons) == nil || !strings.Contains(cc.String(), "to the laptop") {
		t.Fatalf("alice/Phone got %s, want a received carbon of bob's message", cc)
	}

	// Stream management counted from <success/>: one stanza (the presence)
	// from the client, and the copy is unacknowledged, so a resumption
	// after a broken connection delivers it again.
	c.Send("<r xmlns='urn:xmpp:sm:3'/>")
	if a := c.Await("ack", func(el *wire.Element) bool { return el.Name == "a" }); a.Attr("h") != "1" {
		t.Fatalf("ack %s, want h='1' (the presence)", a)
	}
	_ = c.Conn.Close()
	c2 := servertest.DialTLS(t, n)
	if err := c2.AuthSCRAM("SCRAM-SHA-256", "alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
	c2.Send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", en.Attr("id"))
	if r := c2.ExpectName("resumed"); r.Attr("h") != "1" {
		t.Fatalf("resumed %s, want h='1'", r)
	}
	again := c2.Await("carbon copy again", func(el *wire.Element) bool { return el.Name == "message" })
	if again.Child("received", wire.NSCarbons) == nil {
		t.Fatalf("resumed session got %s first, want the unacknowledged carbon", again)
	}
}

// A client reconnecting with SASL2 resumes its detached session inside the
// exchange (XEP-0198 inline, as Conversations does): <success/> carries
// <resumed/> and the session's full JID, the features follow, then what
// the client had not acknowledged. An unknown session fails inside
// <success/> and Bind 2 binds a new one instead.
func TestSASL2InlineResume(t *testing.T) {
	n := startServer(t, "alice", "bob")
	c := servertest.DialTLS(t, n)
	el := sasl2Login(t, c, "alice", "alicepw", "<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag>"+
		"<enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>")
	id := el.Child("bound", wire.NSBind2).Child("enabled", wire.NSSM).Attr("id")
	full := el.ChildText("authorization-identifier", "")
	c.ExpectName("stream:features")
	c.Send("<presence/>")
	// The counts below assume the presence echo is the first stanza the
	// server sends: messages to a full JID do not wait for initial
	// presence, and on PostgreSQL the echo often came after m1 and m2, so
	// the resume's h='2' acknowledged m2 and nothing re-sent it.
	c.Await("own presence", func(el *wire.Element) bool { return el.Name == "presence" })
	b := servertest.DialTLS(t, n)
	b.Login("bob", "bobpw", "r")
	for i := 1; i <= 2; i++ {
		b.Send("<message to='%s' type='chat' id='m%d'><body>%d</body></message>", full, i, i)
		if m := c.Await("message", isMsg); m.ID() != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %s", m)
		}
	}
	c.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>") // m1 handled, m2 not
	pingServer(t, c)
	// The connection breaks; the server may not have noticed yet when the
	// client comes back (resume then closes the old transport itself).
	_ = c.Conn.Close()

	c2 := servertest.DialTLS(t, n)
	if c2.Features.Child("authentication", wire.NSSASL2).Child("inline", "").Child("sm", wire.NSSM) == nil {
		t.Fatalf("features %s, want <sm/> inline in SASL2", c2.Features)
	}
	el = sasl2Login(t, c2, "alice", "alicepw", "<resume xmlns='urn:xmpp:sm:3' previd='"+id+"' h='2'/>"+
		"<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag></bind>")
	r := el.Child("resumed", wire.NSSM)
	if el.Name != "success" || r == nil || r.Attr("previd") != id || r.Attr("h") != "2" || el.Child("bound", wire.NSBind2) != nil {
		t.Fatalf("got %s, want success with <resumed previd='%s' h='2'/> (presence and the ping) and no <bound/>", el, id)
	}
	if aid := el.ChildText("authorization-identifier", ""); aid != full {
		t.Fatalf("authorization-identifier %q, want the resumed session's %q", aid, full)
	}
	if f := c2.ExpectName("stream:features"); f.Child("bind", wire.NSBind) != nil {
		t.Fatalf("features after resumption %s offer bind", f)
	}
	if m := c2.Await("message", isMsg); m.ID() != "m2" {
		t.Fatalf("re-sent %s, want m2 (not acknowledged)", m)
	}
	c2.Send("<message to='bob@localhost/r' type='chat' id='back'><body>back</body></message>")
	b.Await("back", func(el *wire.Element) bool { return el.ID() == "back" })

	// Resuming what does not exist fails inside <success/>; Bind 2 goes on.
	c3 := servertest.DialTLS(t, n)
	el = sasl2Login(t, c3, "alice", "alicepw", "<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>"+
		"<bind xmlns='urn:xmpp:bind:0'><tag>Laptop</tag></bind>")
	f := el.Child("failed", wire.NSSM)
	if el.Name != "success" || f == nil || f.Child("item-not-found", wire.NSStanzas) == nil || el.Child("bound", wire.NSBind2) == nil {
		t.Fatalf("got %s, want success with <failed><item-not-found/></failed> and <bound/>", el)
	}
}

// SASL2 without Bind 2 authenticates and offers RFC 6120 binding on the
// same stream.
func TestSASL2ThenBind(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.Dial(t, n)
	c.StartTLS()
	el := sasl2Login(t, c, "alice", "alicepw", "")
	if el.Name != "success" || el.Child("bound", wire.NSBind2) != nil {
		t.Fatalf("got %s, want success without <bound/>", el)
	}
	if id := el.ChildText("authorization-identifier", ""); id != "alice@"+n.Config().Domain {
		t.Fatalf("authorization-identifier %q, want the bare JID", id)
	}
	feats := c.ExpectName("stream:features")
	if feats.Child("bind", wire.NSBind) == nil {
		t.Fatalf("features after SASL2 = %s, want bind", feats)
	}
	if j, err := c.Bind("laptop"); err != nil || !strings.HasSuffix(j, "/laptop") {
		t.Fatalf("bind after SASL2: %q %v", j, err)
	}
}

// Failures and aborts answer in the SASL2 namespace with the RFC 6120
// condition, and the client may try again.
func TestSASL2Failure(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.Dial(t, n)
	c.StartTLS()
	el := sasl2Login(t, c, "alice", "wrong", "<bind xmlns='urn:xmpp:bind:0'/>")
	if el.Name != "failure" || el.Child("not-authorized", wire.NSSASL) == nil {
		t.Fatalf("wrong password: %s, want failure with not-authorized", el)
	}
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'/>")
	if el := c.MustNext(); el.Name != "challenge" || el.NS() != wire.NSSASL2 {
		t.Fatalf("authenticate without initial response: %s, want an empty SASL2 challenge", el)
	}
	c.Send("<abort xmlns='urn:xmpp:sasl:2'/>")
	if el := c.MustNext(); el.Name != "failure" || el.Child("aborted", wire.NSSASL) == nil {
		t.Fatalf("abort: %s, want failure with aborted", el)
	}
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='NOPE'/>")
	if el := c.MustNext(); el.Name != "failure" || el.Child("invalid-mechanism", wire.NSSASL) == nil {
		t.Fatalf("unknown mechanism: %s, want failure with invalid-mechanism", el)
	}
	el = sasl2Login(t, c, "alice", "alicepw", "<bind xmlns='urn:xmpp:bind:0'/>")
	if el.Name != "success" || !strings.HasPrefix(el.ChildText("authorization-identifier", ""), "alice@") {
		t.Fatalf("retry: %s, want success", el)
	}
}

// SASL2 is not offered before TLS when TLS is required, like SASL.
func TestSASL2NotBeforeTLS(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.Dial(t, n)
	if c.Features.Child("authentication", wire.NSSASL2) != nil {
		t.Fatalf("SASL2 offered before TLS: %s", c.Features)
	}
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>AGFsaWNlAGFsaWNlcHc=</initial-response></authenticate>")
	if el := c.MustNext(); el.Name != "failure" || el.NS() != wire.NSSASL2 || el.Child("encryption-required", wire.NSSASL) == nil {
		t.Fatalf("SASL2 before TLS: %s, want failure with encryption-required", el)
	}
}
