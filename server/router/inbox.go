package router

import "sync"

// The stanzas other nodes send for local sessions (KindStanza, KindHeld)
// are delivered off the link's reader, in one queue per recipient. A
// link's messages are handled in the order they were sent, one at a time,
// and delivering one runs the recipient's interceptors, which may wait:
// the block list of a user who logged in a moment ago is still being read
// (a reconnection storm queues thousands of such reads on the database),
// and until it is known the message may not be shown. Handled on the
// reader, that wait held up every later message from the node, to every
// other recipient: in a storm, sessions the storm never touched waited
// seconds for messages. A queue per recipient keeps what the recipient
// must see in order (the link's order, per recipient) and lets the others
// go by.
//
// A message waiting in a queue has been acknowledged to the sending node.
// That is as safe as before for the protected messages: their sender
// keeps its copy until the recipient's client has them (custody.go) and
// routes it again if this node dies first. The others (presence, IQ) were
// never kept across a crash.

// inboxSlots bounds the stanzas waiting in the queues of one node; past it
// the link's reader waits for room (and the sender's link queue fills, as
// when a node cannot keep up at all).
const inboxSlots = 16384

// linkInbox holds one queue per recipient full JID, each drained by a
// goroutine that exists while the queue has work.
type linkInbox struct {
	slots chan struct{}
	// inline delivers on the caller's goroutine: for the in-memory
	// clusters of the router's unit tests (syncCluster).
	inline bool

	mu     sync.Mutex
	queues map[string][]func()
}

func newLinkInbox() *linkInbox {
	return &linkInbox{slots: make(chan struct{}, inboxSlots), queues: map[string][]func(){}}
}

// syncCluster is implemented by the in-memory clusters of the router's
// unit tests, whose Send runs the handler and looks for its effect as soon
// as it returns. The queues are tested on their own (inbox_test.go) and
// on real links by the cluster tests.
type syncCluster interface{ deliversSynchronously() }

// run queues deliver for the recipient full, behind what waits for it.
func (b *linkInbox) run(full string, deliver func()) {
	if b.inline {
		deliver()
		return
	}
	b.slots <- struct{}{}
	b.mu.Lock()
	if q, busy := b.queues[full]; busy {
		b.queues[full] = append(q, deliver)
		b.mu.Unlock()
		return
	}
	b.queues[full] = nil // busy, nothing behind
	b.mu.Unlock()
	go b.drain(full, deliver)
}

func (b *linkInbox) drain(full string, deliver func()) {
	for {
		deliver()
		<-b.slots
		b.mu.Lock()
		q := b.queues[full]
		if len(q) == 0 {
			delete(b.queues, full)
			b.mu.Unlock()
			return
		}
		deliver = q[0]
		q[0] = nil
		b.queues[full] = q[1:]
		b.mu.Unlock()
	}
}
