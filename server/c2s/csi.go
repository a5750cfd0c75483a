package c2s

import (
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// Client state indication (XEP-0352). A phone that puts its app in the
// background says <inactive/>; from then on what only updates the screen
// (presence changes, chat states, receipts, markers, PEP notifications)
// waits in the session's queue instead of waking the radio, and goes out
// in order, in one write, with the next stanza that cannot wait, with
// anything the session itself sends (an answer to the client, a ping), on
// <active/>, or once csiMaxHeld stanzas or half the slow-consumer limit
// are waiting. Nothing is dropped or reordered: holding only delays the
// writer. This is what Prosody's mod_csi_simple and ejabberd's
// mod_client_state do by default.

// csiMaxHeld bounds how many stanzas an inactive session holds back.
const csiMaxHeld = 128

// handleCSI handles <active/> and <inactive/>.
func (s *Session) handleCSI(el *wire.Element) bool {
	switch el.Name {
	case "active":
		s.mu.Lock()
		s.inactive = false
		s.held = 0
		s.signalLocked()
		s.mu.Unlock()
		if full := s.JID(); !full.IsZero() { // before binding: see bindResource
			s.srv.fire(s.ctx, plugins.EventClientActive, full.String(), "")
		}
	case "inactive":
		s.mu.Lock()
		s.inactive = true
		s.mu.Unlock()
		if full := s.JID(); !full.IsZero() {
			s.srv.fire(s.ctx, plugins.EventClientInactive, full.String(), "")
		}
	default:
		s.streamError("unsupported-stanza-type", "")
		return true
	}
	return false
}

// holdLocked decides, for el just queued by Send, whether the writer may
// leave it (and what waits before it) for later.
func (s *Session) holdLocked(el *wire.Element) bool {
	if !s.inactive || csiUrgent(el) || s.held >= csiMaxHeld || s.pending > s.srv.maxPending()/2 {
		s.held = 0
		return false
	}
	s.held++
	return true
}

// csiUrgent reports whether a stanza must reach an inactive client at
// once: IQs (the client must answer, or waits for the answer); messages a
// person is notified of — with a body, a subject, an encrypted payload or
// an invitation, also inside a carbon or archive wrapper — and errors;
// subscription requests and answers. Available and unavailable presence,
// chat states, receipts, markers and PEP notifications can wait.
func csiUrgent(el *wire.Element) bool {
	switch el.Name {
	case "presence":
		t := el.Type()
		return t != "" && t != "unavailable"
	case "message":
		return el.Type() == "error" || notifiable(el, 4)
	}
	return true
}

// notifiable looks depth levels down for what makes a message worth a
// notification.
func notifiable(el *wire.Element, depth int) bool {
	for _, c := range el.Children {
		switch c.LocalName() {
		case "body", "subject", "encrypted", "invite":
			return true
		case "x":
			if c.NS() == "jabber:x:conference" { // XEP-0249 direct invitation
				return true
			}
		}
		if depth > 1 && notifiable(c, depth-1) {
			return true
		}
	}
	return false
}
