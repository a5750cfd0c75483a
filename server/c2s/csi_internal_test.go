package c2s

import (
	"testing"

	"github.com/aviary-im/aviary/wire"
)

func TestCSIUrgent(t *testing.T) {
	for _, tc := range []struct {
		xml    string
		urgent bool
	}{
		{"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", true},
		{"<iq type='result' id='1'/>", true},
		{"<presence/>", false},
		{"<presence type='unavailable'/>", false},
		{"<presence type='subscribe'/>", true},
		{"<presence type='error'/>", true},
		{"<message type='chat'><body>hi</body></message>", true},
		{"<message type='groupchat'><subject>topic</subject></message>", true},
		{"<message><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>", true},
		{"<message type='error'><error type='cancel'/></message>", true},
		{"<message><x xmlns='jabber:x:conference' jid='room@muc'/></message>", true},
		{"<message><x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@b'/></x></message>", true},
		{"<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message><body>x</body></message></forwarded></received></message>", true},
		{"<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", false},
		{"<message><received xmlns='urn:xmpp:receipts' id='m1'/></message>", false},
		{"<message><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>", false},
		{"<message><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:avatar:metadata'/></event></message>", false},
		{"<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message><active xmlns='http://jabber.org/protocol/chatstates'/></message></forwarded></received></message>", false},
	} {
		el, err := wire.Parse([]byte(tc.xml), wire.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if got := csiUrgent(el); got != tc.urgent {
			t.Errorf("csiUrgent(%s) = %v, want %v", tc.xml, got, tc.urgent)
		}
	}
}
