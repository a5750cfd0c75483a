package router

import (
	"context"

	"github.com/aviary-im/aviary/wire"
)

// Session is a local client session, whatever carries it (TCP, BOSH,
// WebSocket). The router never writes to a socket: it queues.
type Session interface {
	// JID is the session's bound full JID.
	JID() wire.JID
	// Send queues a stanza for the client and never blocks. It returns false
	// when the session is closing and did not take the stanza; the router
	// then treats the resource as gone (offline storage or bounce).
	Send(el *wire.Element) bool
	// Close ends the session with a stream error condition such as
	// "conflict" or "system-shutdown" (RFC 6120 §4.9.3).
	Close(condition, text string)
}

// Paced is implemented by sessions that bound what they queue for their
// client (c2s.Session, over TCP, BOSH and WebSocket alike). The router
// hands such a session its backlog (the offline queue, subscription
// requests waiting since the last login) a portion at a time, as the
// client reads, instead of all at once (backlog.go). A Session that is
// not Paced gets its backlog in one go.
type Paced interface {
	// Backlog returns how many bytes of backlog the session can take now.
	// When it can take none it keeps ready (unless nil) and calls it once
	// when it can, with no lock held; ready must not block. A session that
	// ends never calls it.
	Backlog(ready func()) int
}

// Federation sends stanzas to other domains; s2s implements it. Failures
// are reported back as error stanzas routed to the sender, not as errors.
type Federation interface {
	Send(ctx context.Context, el *wire.Element)
}

// NotifyingFederation is a Federation that reports when a stanza has left
// the node: written to the remote domain's stream, or bounced to its
// sender (s2s.Service.SendNotify). The router holds the sender's
// acknowledgement of a protected message until then (crash safety).
type NotifyingFederation interface {
	SendNotify(ctx context.Context, el *wire.Element, settled func())
}

// AckHolder is implemented by sessions whose client counts on the
// server's acknowledgements (XEP-0198 stream management; c2s.Session
// whenever it is enabled). The router calls HoldAck while it routes a
// message the session sent (inside FromClient, on the session's reader)
// for each copy that still has to reach a second node (crash safety) and
// for a message that waits for offline storage to answer
// (offlineretry.go), and calls the returned function once it has: the
// session acknowledges that stanza, and every later one, only then. A nil function means the
// session acknowledges nothing (stream management is off) and need not
// wait. The function must not block and may be called from any goroutine.
type AckHolder interface {
	HoldAck() func()
}

// Receipted is implemented by sessions that tell the router when their
// client has a stanza (c2s.Session): SendReceipted queues el like Send and
// keeps rc with it until the client acknowledged it (XEP-0198), or, without
// stream management, until it was written; then the session passes rc to
// Router.Release. A session that ends hands the receipts of what it never
// delivered back with Unbind's unsent stanzas.
type Receipted interface {
	SendReceipted(el *wire.Element, rc *Receipt) bool
}
