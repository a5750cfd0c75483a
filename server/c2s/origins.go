package c2s

import (
	"hash/maphash"
	"strings"

	"github.com/aviary-im/aviary/wire"
)

// Resent messages: dropped when the session already has them.
//
// When a node dies, its clients reconnect elsewhere and resend what the
// server had not acknowledged to them. Some of it had been delivered:
// the dead node made the message safe and routed it, and died before it
// acknowledged it to its sender (acknowledgements lag behind delivery;
// the `<failed h/>` a failed resumption answers covers only what the
// dead node had heard back about). Measured in the crash runs
// (server/router/CRASHSAFETY.md): about 3% of the ring's messages came
// twice that way.
//
// A client that resends marks its messages with a XEP-0359 origin-id,
// unique for the sender (Conversations, Dino, Gajim, Monal do). A session
// remembers the origin-ids of the last originWindow messages it was
// given, keyed with their sender's bare JID, and drops a message it was
// already given: the client has it, or will (the first copy is queued
// and protected as any other, by stream management and crash safety).
// What a session remembers is a hash (64 bits), allocated at its first
// such message, so an idle session costs nothing and a busy one 1 KiB.
//
// Not dropped: group chat messages (a room's history on a rejoin repeats
// what the session had live, and clients expect it), errors, and
// messages without an origin-id. A resend that reaches the recipient on
// another session (it reconnected too) or through offline storage is not
// recognised: the clients' own deduplication by origin-id covers those.
const originWindow = 128

// originRing holds the hashes of the last originWindow origin keys.
type originRing struct {
	keys [originWindow]uint64
	next int
	full bool
}

var originSeed = maphash.MakeSeed()

// originKey is the hash of a message's sender and origin-id, or false
// when the message is not one to deduplicate (see above).
func originKey(el *wire.Element) (uint64, bool) {
	if el.Name != "message" {
		return 0, false
	}
	switch el.Type() {
	case "groupchat", "error":
		return 0, false
	}
	o := el.Child("origin-id", "urn:xmpp:sid:0")
	if o == nil {
		return 0, false
	}
	id := o.Attr("id")
	if id == "" {
		return 0, false
	}
	from := el.From()
	if i := strings.IndexByte(from, '/'); i >= 0 {
		from = from[:i]
	}
	var h maphash.Hash
	h.SetSeed(originSeed)
	h.WriteString(from)
	h.WriteByte(0)
	h.WriteString(id)
	return h.Sum64(), true
}

// seen reports whether k is among the remembered keys, and remembers it
// when not.
func (r *originRing) seen(k uint64) bool {
	n := r.next
	if r.full {
		n = originWindow
	}
	for _, x := range r.keys[:n] {
		if x == k {
			return true
		}
	}
	r.keys[r.next] = k
	if r.next++; r.next == originWindow {
		r.next, r.full = 0, true
	}
	return false
}

// noteOriginLocked remembers el's origin key, if it has one (a stanza
// moved to this session by a resumption on another node); s.mu held.
func (s *Session) noteOriginLocked(el *wire.Element) {
	if k, ok := originKey(el); ok {
		if s.origins == nil {
			s.origins = new(originRing)
		}
		s.origins.seen(k)
	}
}
