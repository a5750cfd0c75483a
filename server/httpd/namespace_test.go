package httpd_test

import (
	"testing"

	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestWebNamespaces: over WebSocket and BOSH as over TCP, a prefix means
// the namespace it is bound to (a <c:message xmlns:c='jabber:client'> is
// delivered), and a stanza in no namespace (xmlns="") ends the stream
// with invalid-namespace instead of being routed.
func TestWebNamespaces(t *testing.T) {
	n, _, base := node(t, nil)
	for _, u := range []string{"alice", "bob", "carol"} {
		servertest.CreateUser(t, n, u, "pw-"+u)
	}
	tcp := servertest.Dial(t, n)
	tcpJID := tcp.Login("carol", "pw-carol", "desk")

	w := dialWS(t, base)
	w.login("bob", "pw-bob", "tab")
	w.send("<c:message xmlns:c='jabber:client' to='" + tcpJID + "' type='chat'><c:body>prefixed ws</c:body></c:message>")
	tcp.Await("prefixed message over WebSocket", isMsg("prefixed ws"))
	w.send("<message xmlns='' to='" + tcpJID + "' type='chat'><body>no namespace ws</body></message>")
	if se := w.expect("stream error", named("stream:error")); se.Child("invalid-namespace", wire.NSStreams) == nil {
		t.Errorf("websocket, xmlns='': %s", se)
	}

	b := &boshClient{t: t, url: base + httpd.PathBOSH, rid: 100}
	b.login("alice", "pw-alice", "web")
	b.post("", "<c:message xmlns:c='jabber:client' to='"+tcpJID+"' type='chat'><c:body>prefixed bosh</c:body></c:message>")
	tcp.Await("prefixed message over BOSH", isMsg("prefixed bosh"))
	r := b.postRaw("", "<message xmlns='' to='"+tcpJID+"' type='chat'><body>no namespace bosh</body></message>")
	for r.Attr("type") != "terminate" {
		r = b.postRaw("", "")
	}
	if se := r.Child("stream:error", ""); se == nil || se.Child("invalid-namespace", wire.NSStreams) == nil {
		t.Errorf("bosh, xmlns='': %s", r)
	}

	// The refused stanzas never reached carol.
	tcp.Send("<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if el := tcp.Await("ping", func(el *wire.Element) bool { return el.Name == "iq" || el.Name == "message" }); el.ID() != "last" {
		t.Fatalf("carol got %s", el)
	}
}
