package wire

import "testing"

// TestStanzaErrorApp: an application-specific condition follows the
// defined condition and the text (RFC 6120 §8.3.2), and WithApp leaves
// the error it copies alone.
func TestStanzaErrorApp(t *testing.T) {
	base := ErrConflict.WithText("access model differs")
	e := base.WithApp(NewNS("precondition-not-met", "http://jabber.org/protocol/pubsub#errors"))
	want := `<error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">access model differs</text><precondition-not-met xmlns="http://jabber.org/protocol/pubsub#errors"/></error>`
	if got := e.Element().String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if base.App != nil || ErrConflict.App != nil {
		t.Error("WithApp changed the error it copied")
	}
	if got := ErrConflict.Element().String(); got != `<error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>` {
		t.Errorf("plain error: %s", got)
	}
}
