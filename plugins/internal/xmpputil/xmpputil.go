// Package xmpputil holds the small helpers the built-in plugins share:
// JID handling and "whose account does this IQ address".
package xmpputil

import (
	"github.com/aviary-im/aviary/plugins"
	"mellium.im/xmpp/jid"
)

// Bare returns the normalized bare JID of s, or "" when s is not a JID.
func Bare(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return ""
	}
	return j.Bare().String()
}

// Normalize returns the normalized form of s (PRECIS), or "" when s is not
// a valid JID.
func Normalize(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return ""
	}
	return j.String()
}

// Local returns the localpart of a JID ("" when none or invalid).
func Local(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return ""
	}
	return j.Localpart()
}

// Requester returns the bare JID of the IQ's sender.
func Requester(iq *plugins.IQ) string { return Bare(iq.From) }

// Self reports whether the IQ addresses its sender's own account: a local
// user who sent it with no 'to', or to their own bare JID. It returns the
// account's bare JID.
func Self(iq *plugins.IQ) (string, bool) {
	if !iq.FromLocal {
		return "", false
	}
	me := Bare(iq.From)
	if me == "" {
		return "", false
	}
	to := iq.Stanza.To()
	if to == "" || Bare(to) == me {
		return me, true
	}
	return me, false
}

// Target returns the account an IQ addresses: the sender's own account when
// the IQ has no 'to', else the bare JID in 'to'.
func Target(iq *plugins.IQ) string {
	if iq.Stanza.To() == "" {
		return Bare(iq.From)
	}
	return Bare(iq.Stanza.To())
}
