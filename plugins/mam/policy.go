package mam

import (
	"strings"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Namespaces of what counts as content (see archivable).
const (
	NSHints        = "urn:xmpp:hints"             // XEP-0334
	NSRetract      = "urn:xmpp:message-retract:1" // XEP-0424
	nsRetract0     = "urn:xmpp:message-retract:0" // XEP-0424 before 0.4 (inside apply-to)
	nsFasten       = "urn:xmpp:fasten:0"          // XEP-0422
	nsCorrect      = "urn:xmpp:message-correct:0" // XEP-0308
	nsReactions    = "urn:xmpp:reactions:0"       // XEP-0444
	nsMarkers      = "urn:xmpp:chat-markers:0"    // XEP-0333
	nsEME          = "urn:xmpp:eme:0"             // XEP-0380
	nsOMEMO2       = "urn:xmpp:omemo:2"           // XEP-0384
	nsOMEMOLegacy  = "eu.siacs.conversations.axolotl"
	nsOpenPGP      = "urn:xmpp:openpgp:0" // XEP-0373
	nsLegacyPGP    = "jabber:x:encrypted" // XEP-0027
	nsConference   = "jabber:x:conference"
	nsMUCUser      = "http://jabber.org/protocol/muc#user"
	nsJingleMsg0   = "urn:xmpp:jingle-message:0"
	nsJingleMsg1   = "urn:xmpp:jingle-message:1"
	nsOriginBodies = "jabber:client"
)

// archivable reports whether a message belongs in a user's archive: type
// chat or normal, not a carbon or a MAM result passing by, not marked
// no-store, and with content (a body, an encrypted payload, a correction,
// retraction, reaction, marker, invitation, call) or the store hint. These
// are the messages Prosody's mod_mam and ejabberd's mod_mam keep.
func archivable(el *wire.Element) bool {
	switch el.Type() {
	case "", "normal", "chat":
	default:
		return false // groupchat (the room keeps it), headline, error
	}
	content := false
	for _, c := range el.Children {
		ns := c.NS()
		switch c.Name {
		case "body", "subject":
			if ns == "" || ns == nsOriginBodies {
				content = true
			}
		case "store":
			if ns == NSHints {
				return true
			}
		case "no-store", "no-permanent-store":
			if ns == NSHints {
				return false
			}
		case "received", "sent", "private":
			if ns == wire.NSCarbons {
				return false
			}
		case "result":
			if ns == NS {
				return false
			}
		case "encrypted":
			// An OMEMO key transport element (no <payload/>) sets up or
			// repairs a session and is never shown: Prosody and
			// ejabberd keep it out too (it has no body), and Smack's
			// OmemoMamDecryptionTest counts the archive on that.
			if (ns == nsOMEMO2 || ns == nsOMEMOLegacy) && c.Child("payload", "") != nil {
				content = true
			}
		case "encryption":
			if ns == nsEME {
				content = true
			}
		case "openpgp":
			if ns == nsOpenPGP {
				content = true
			}
		case "x":
			if ns == nsLegacyPGP || ns == nsConference || (ns == nsMUCUser && c.Child("invite", "") != nil) {
				content = true
			}
		case "replace":
			if ns == nsCorrect {
				content = true
			}
		case "retract":
			if ns == NSRetract {
				content = true
			}
		case "apply-to":
			if ns == nsFasten && c.Child("retract", nsRetract0) != nil {
				content = true
			}
		case "reactions":
			if ns == nsReactions {
				content = true
			}
		case "markable", "displayed", "acknowledged":
			if ns == nsMarkers {
				content = true
			}
		case "propose", "accept", "proceed", "reject", "finish":
			if ns == nsJingleMsg0 || ns == nsJingleMsg1 {
				content = true
			}
		}
		// Names the switch above gives to other namespaces.
		if (c.Name == "received" && ns == nsMarkers) || (c.Name == "retract" && (ns == nsJingleMsg0 || ns == nsJingleMsg1)) {
			content = true
		}
	}
	return content
}

// isOurs reports whether a JID is of the domain: the domain itself or
// anything @domain or domain/….
func isOurs(jid, domain string) bool {
	if i := strings.IndexByte(jid, '/'); i >= 0 {
		jid = jid[:i]
	}
	if i := strings.IndexByte(jid, '@'); i >= 0 {
		jid = jid[i+1:]
	}
	return strings.EqualFold(jid, domain)
}

// dropOurStanzaIDs removes <stanza-id/> elements that claim to be made by
// an archive of domain (when domain is set) or by the archive of owner
// (when owner is set). It never changes the children slice in place (a
// carbon may share it): it gives the element a new one when it removes.
func dropOurStanzaIDs(el *wire.Element, domain, owner string) {
	n := 0
	for _, c := range el.Children {
		if c.Name == "stanza-id" && c.NS() == NSSID && claims(c.Attr("by"), domain, owner) {
			n++
		}
	}
	if n == 0 {
		return
	}
	kept := make([]*wire.Element, 0, len(el.Children)-n)
	for _, c := range el.Children {
		if c.Name == "stanza-id" && c.NS() == NSSID && claims(c.Attr("by"), domain, owner) {
			continue
		}
		kept = append(kept, c)
	}
	el.Children = kept
}

func claims(by, domain, owner string) bool {
	if domain != "" && isOurs(by, domain) {
		return true
	}
	return owner != "" && strings.EqualFold(by, owner)
}

// StampID puts <stanza-id by='by' id='…'/> on a message, in a new children
// slice (the old one may be shared with copies already on their way).
func StampID(el *wire.Element, by string, id int64) {
	sid := wire.NewNS("stanza-id", NSSID).SetAttr("by", by).SetAttr("id", storage.FormatArchiveID(id))
	children := make([]*wire.Element, 0, len(el.Children)+1)
	el.Children = append(append(children, el.Children...), sid)
}

// stored is what the archive keeps of a message: the message as routed,
// without any stanza-id (the entry's own ID is the one that counts; others
// are stale in a query result), in XML.
func stored(el *wire.Element) []byte {
	c := &wire.Element{Name: el.Name, Text: el.Text}
	c.Attrs = make([]wire.Attr, 0, len(el.Attrs))
	for _, a := range el.Attrs {
		if a.Name != "xmlns" {
			c.Attrs = append(c.Attrs, a)
		}
	}
	c.Children = make([]*wire.Element, 0, len(el.Children))
	for _, ch := range el.Children {
		if ch.Name == "stanza-id" && ch.NS() == NSSID {
			continue
		}
		c.Children = append(c.Children, ch)
	}
	return c.Bytes()
}
