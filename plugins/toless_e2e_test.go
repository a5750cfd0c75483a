package plugins_test

import (
	"slices"
	"testing"

	"github.com/aviary-im/aviary/wire"
)

// An IQ a client sends without 'to' is handled on behalf of its account
// (RFC 6120 §10.3.3). The exact disco#info aioxmpp sends answers with the
// account's identity and PEP features, as Prosody and ejabberd do (it
// used to describe the server, and aioxmpp concluded there was no PEP);
// the namespaces only the server answers keep working without 'to'.
func TestEndToEndToLessIQsActForTheAccount(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "alice", "home")

	el := iq(alice, `<iq type='get' id='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	q := el.Child("query", wire.NSDiscoInfo)
	if el.Type() != "result" || q == nil {
		t.Fatalf("to-less disco#info answered %s", el)
	}
	if el.From() != "" && el.From() != "alice@localhost" {
		t.Errorf("answer from %q, want none or the account", el.From())
	}
	var ids, feats []string
	for _, id := range q.ChildrenNamed("identity", "") {
		ids = append(ids, id.Attr("category")+"/"+id.Attr("type"))
	}
	for _, f := range q.ChildrenNamed("feature", "") {
		feats = append(feats, f.Attr("var"))
	}
	for _, want := range []string{"account/registered", "pubsub/pep"} {
		if !slices.Contains(ids, want) {
			t.Errorf("identities %v, want %s", ids, want)
		}
	}
	if slices.Contains(ids, "server/im") {
		t.Errorf("identities %v: the server's, not the account's", ids)
	}
	for _, want := range []string{"http://jabber.org/protocol/pubsub#publish", "http://jabber.org/protocol/pubsub#publish-options"} {
		if !slices.Contains(feats, want) {
			t.Errorf("features %v, want %s", feats, want)
		}
	}
	// The same answer as to the account's bare JID.
	bare := iq(alice, `<iq type='get' id='%s' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if got, want := q.String(), bare.Child("query", wire.NSDiscoInfo).String(); got != want {
		t.Errorf("to-less answer\n%s\ndiffers from the bare JID's\n%s", got, want)
	}
	// The server is still described when asked by name.
	srv := iq(alice, `<iq type='get' id='%s' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if id := srv.Child("query", wire.NSDiscoInfo).Child("identity", ""); id == nil || id.Attr("category") != "server" {
		t.Errorf("disco#info to the domain answered %s", srv)
	}

	// Namespaces only the server (or the router) answers, without 'to'.
	for _, c := range []struct{ name, xml, payload string }{
		{"roster", `<iq type='get' id='%s'><query xmlns='jabber:iq:roster'/></iq>`, wire.NSRoster},
		{"ping", `<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, ""},
		{"version", `<iq type='get' id='%s'><query xmlns='jabber:iq:version'/></iq>`, "jabber:iq:version"},
		{"session", `<iq type='set' id='%s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`, ""},
		{"carbons", `<iq type='set' id='%s'><enable xmlns='urn:xmpp:carbons:2'/></iq>`, ""},
		{"blocklist", `<iq type='get' id='%s'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, "urn:xmpp:blocking"},
		{"disco#items", `<iq type='get' id='%s'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`, wire.NSDiscoItems},
	} {
		el := iq(alice, c.xml)
		if el.Type() != "result" {
			t.Errorf("%s without 'to' answered %s", c.name, el)
			continue
		}
		if c.payload != "" && (el.FirstChild() == nil || el.FirstChild().NS() != c.payload) {
			t.Errorf("%s without 'to' answered %s, want a %s payload", c.name, el, c.payload)
		}
	}
	// Binding again is refused as before.
	if el := iq(alice, `<iq type='set' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`); condition(el) != "not-allowed" {
		t.Errorf("bind without 'to' after binding answered %s, want not-allowed", el)
	}
}
