package router

import (
	"context"
	"sync"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// The offline hand-over reads messages from the queue without deleting
// them (storage ReadOfflineUpTo), delivers them, and deletes each one's
// row only once the message is safe elsewhere: before that, a node dying
// between the delete and its buddy having the deposited copy lost them
// (CRASHSAFETY.md). One hold (custody.go) per portion handed over: each
// local copy deposited with a buddy takes a reference (keepLocal), as do
// plugins holding the message (the archive's write), and when the last
// is released the delivered rows are deleted. Without a buddy (one node,
// crash safety off, a session without receipts) nothing takes a
// reference and the rows are deleted once queued, as before.
//
// The rows a session of this node was handed and not deleted yet are
// claimed for their user (offlineHanded): the next read skips them, so a
// paced pump does not read the same rows again, and two sessions of one
// user on this node never both get one. A message not delivered (the
// session went away on the way) is simply not deleted, and unclaimed; a
// session on another node reading at the same time may get the same rows
// (each message at least once, never lost). Deleted rows stay claimed
// for a while (linger): a hand-over that read them just before the delete
// and claims them just after (a flush asked by another node racing the
// session's own, seen as a message delivered twice in
// server/clustertest TestCrashResumeOnce) must still skip them.

// offlineHanded is the offline rows handed over on this node and not yet
// deleted, by bare JID.
type offlineHanded struct {
	mu  sync.Mutex
	ids map[string]map[int64]struct{}

	// first and max bound the backoff between delete attempts, attempts
	// how many are made, linger how long deleted rows stay claimed; tests
	// shorten them.
	first, max, linger time.Duration
	attempts           int
}

const (
	deleteFirst    = 100 * time.Millisecond
	deleteMax      = 5 * time.Second
	deleteAttempts = 10 // about 25 s with the backoff above
	// deletedLinger is far longer than a read of the queue can take (its
	// database timeout) between reading rows and claiming them.
	deletedLinger = 30 * time.Second
)

func newOfflineHanded() *offlineHanded {
	return &offlineHanded{ids: map[string]map[int64]struct{}{}, first: deleteFirst, max: deleteMax, linger: deletedLinger, attempts: deleteAttempts}
}

// skip returns the IDs of bare's rows handed over and not deleted.
func (h *offlineHanded) skip(bare string) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.ids[bare]
	if len(m) == 0 {
		return nil
	}
	out := make([]int64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	return out
}

// claim keeps of stored those no other reader on this node claimed since
// it read them, and claims them.
func (h *offlineHanded) claim(bare string, stored []storage.OfflineMessage) []storage.OfflineMessage {
	if len(stored) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.ids[bare]
	if m == nil {
		m = map[int64]struct{}{}
		h.ids[bare] = m
	}
	out := stored[:0:0]
	for _, msg := range stored {
		if _, taken := m[msg.ID]; !taken {
			m[msg.ID] = struct{}{}
			out = append(out, msg)
		}
	}
	return out
}

// unclaim lets rows be read again: deleted, or not delivered.
func (h *offlineHanded) unclaim(bare string, ids []int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.ids[bare]
	for _, id := range ids {
		delete(m, id)
	}
	if len(m) == 0 {
		delete(h.ids, bare)
	}
}

// count is how many rows are claimed (tests).
func (h *offlineHanded) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.ids {
		n += len(m)
	}
	return n
}

// handOverOffline delivers offline messages read from the queue to the
// local session full, each stamped with XEP-0203 <delay/>, and has the
// delivered ones deleted once they are safe. It reports false when the
// session did not take one (it is gone): that one and the rest stay
// stored.
func (r *Router) handOverOffline(ctx context.Context, full, bare string, stored []storage.OfflineMessage) bool {
	stored = r.handed.claim(bare, stored)
	if len(stored) == 0 {
		return true
	}
	// settled is complete before the routing's own reference is released
	// below, and done runs only after that.
	var settled []int64
	h := newHold(func() { go r.deleteHanded(bare, settled) })
	hctx := withHold(ctx, h)
	ok := true
	for i, m := range stored {
		el := r.stampOne(bare, m)
		if el != nil && !r.deliverLocal(hctx, full, el) {
			rest := make([]int64, 0, len(stored)-i)
			for _, m := range stored[i:] {
				rest = append(rest, m.ID)
			}
			r.handed.unclaim(bare, rest)
			ok = false
			break
		}
		// Delivered, taken by a plugin, or unparsable (never deliverable).
		settled = append(settled, m.ID)
	}
	h.release()
	return ok
}

// deleteHanded deletes rows whose messages are safe elsewhere, retrying
// with backoff while the database does not answer. A failure leaves them
// stored: they come again (a duplicate, not a loss).
func (r *Router) deleteHanded(bare string, ids []int64) {
	if len(ids) == 0 {
		return
	}
	backoff := r.handed.first
	for attempt := 1; ; attempt++ {
		ctx, cancel := r.dbCtx(context.Background())
		err := r.store.DeleteOffline(ctx, bare, ids)
		cancel()
		if err == nil {
			// Gone; a read from just before the delete may still claim them.
			time.AfterFunc(r.handed.linger, func() { r.handed.unclaim(bare, ids) })
			return
		}
		if attempt >= r.handed.attempts {
			r.handed.unclaim(bare, ids) // still stored: delivered again later
			r.m.offlineDeleteFailed.Inc()
			r.log.Error("router: could not delete offline messages that were handed over; they will be delivered again", "jid", bare, "messages", len(ids), "err", err)
			return
		}
		r.log.Debug("router: deleting offline messages that were handed over failed; retrying", "jid", bare, "attempt", attempt, "err", err)
		time.Sleep(jitter(backoff)) // a goroutine of its own (done above)
		backoff = min(2*backoff, r.handed.max)
	}
}
