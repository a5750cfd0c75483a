package router

import (
	"context"
	"errors"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/wire"
)

// A session's backlog is what waited for it: subscription requests
// (RFC 6121 §3.1.3, replayed at each login) and the offline queue
// (XEP-0160). It is handed over a portion at a time, as the client reads:
// a pump reads from the store only what the session says it can take now
// (Paced.Backlog), delivers it, and when the session has no room left it
// stops and is called again once the client has read (c2s: the writer
// took the queue, or the client acknowledged). So a queue of any size
// reaches a client that reads, never ends the session as a slow consumer,
// and whatever was not handed over stays stored; what was handed over
// and then lost with the session (not written, or with stream management
// not acknowledged) goes back through Unbind's rerouting. A handed-over
// message's row is deleted only once the message is safe on a second
// node (offlinehand.go).
//
// One pump per session at a time (session.pumping). A kick while it runs
// sets session.again, so it looks at the store once more before it stops:
// a message stored during a hand-over is never left for the next login.
// Kicks come from initial presence, a priority becoming non-negative, a
// message stored while the user has an available resource (flushOffline,
// over the node link with KindBacklog when the session is on another
// node), the clustered re-check after a login, and a retry after a read
// of the queue failed (retryBacklog).

// KindBacklog asks the node that owns a session to hand it its backlog
// (payload: the full JID; reply "1"). The stored queue is shared, so any
// node's pump can take it; this one paces it for its own session.
const KindBacklog = "backlog"

// kickBacklog starts a pump for a local session, or tells the running one
// to look again.
func (r *Router) kickBacklog(ctx context.Context, full string) {
	r.mu.Lock()
	s := r.sessions[full]
	if s == nil {
		r.mu.Unlock()
		return
	}
	if s.pumping {
		s.again = true
		r.mu.Unlock()
		return
	}
	s.pumping = true
	r.mu.Unlock()
	r.pumpBacklog(ctx, s)
}

// pumpBacklog hands s its backlog until nothing is left, the session has
// no room (it calls back when it has), or the session is gone. The caller
// has set s.pumping.
func (r *Router) pumpBacklog(ctx context.Context, s *session) {
	// The pump may run on after the routing that kicked it has ended: what
	// it hands over is stored already, so no hold waits for it.
	ctx = withoutHold(context.WithoutCancel(ctx))
	for {
		budget := backlogBudget(s.s, func() { go r.pumpBacklog(ctx, s) })
		if budget == 0 {
			return // ready runs the pump again; s.pumping stays set
		}
		r.mu.Lock()
		if r.sessions[s.full] != s {
			r.mu.Unlock()
			return // gone: what was not handed over stays stored
		}
		subs := takeSubs(&s.subs, budget)
		eligible := s.available && s.priority >= 0
		r.mu.Unlock()
		if len(subs) > 0 {
			// Not delivered (the session went): the request stays pending
			// in the roster and is replayed at the next login.
			for _, el := range subs {
				r.deliverLocal(ctx, s.full, el)
			}
			continue
		}
		if eligible && r.handOffline(ctx, s, budget) {
			continue
		}
		r.mu.Lock()
		if s.again && r.sessions[s.full] == s {
			s.again = false
			r.mu.Unlock()
			continue
		}
		s.pumping = false
		r.mu.Unlock()
		return
	}
}

// backlogBudget is how many bytes of backlog a session takes now; -1 is
// no limit (a session that is not Paced).
func backlogBudget(s Session, ready func()) int {
	p, ok := s.(Paced)
	if !ok {
		return -1
	}
	return p.Backlog(ready)
}

// takeSubs removes from list the requests that fit in budget (at least
// one; all with no limit).
func takeSubs(list *[]*wire.Element, budget int) []*wire.Element {
	all := *list
	if len(all) == 0 {
		return nil
	}
	n, size := 0, 0
	for n < len(all) && (budget < 0 || n == 0 || size+subSize(all[n]) <= budget) {
		size += subSize(all[n])
		n++
	}
	taken := all[:n:n]
	if n == len(all) {
		*list = nil
	} else {
		*list = all[n:]
	}
	return taken
}

// subSize is about the size of a replayed subscription request.
func subSize(el *wire.Element) int { return len(el.From()) + len(el.To()) + 48 }

// handOffline reads at most budget bytes of the offline queue (all with
// no limit), passing over what was handed over already, and delivers
// them to s; they are deleted once safe (offlinehand.go). It reports
// whether more may wait.
func (r *Router) handOffline(ctx context.Context, s *session, budget int) bool {
	if r.store == nil {
		return false
	}
	dctx, cancel := r.dbCtx(ctx)
	stored, more, err := r.store.ReadOfflineUpTo(dctx, s.bare, r.handed.skip(s.bare), max(budget, 0))
	cancel()
	if err != nil {
		r.log.Warn("router: reading offline messages failed", "jid", s.bare, "err", err)
		r.retryBacklog(s)
		return false
	}
	r.mu.Lock()
	s.backlogFailures = 0
	r.mu.Unlock()
	if !r.handOverOffline(ctx, s.full, s.bare, stored) {
		return false
	}
	return more
}

// retryBacklog kicks s's pump again later, after its offline read failed:
// from a second (Router.backlogRetryFirst), doubling, to half a minute,
// for as long as the session lasts.
// Without it the queue waited for the user's next login or the next
// message stored for the user: in a reconnection storm, whose logins
// time the database out, a user back online was not given the messages
// stored for it while it was away (six in a 33,000-user storm, the
// load tool counting them lost).
func (r *Router) retryBacklog(s *session) {
	r.mu.Lock()
	if r.sessions[s.full] != s || s.backlogRetry {
		r.mu.Unlock()
		return
	}
	s.backlogFailures++
	s.backlogRetry = true
	d := min(r.backlogRetryFirst<<min(s.backlogFailures-1, 5), r.backlogRetryMax)
	r.mu.Unlock()
	time.AfterFunc(d, func() {
		r.mu.Lock()
		s.backlogRetry = false
		same := r.sessions[s.full] == s
		r.mu.Unlock()
		if same {
			r.kickBacklog(context.Background(), s.full)
		}
	})
}

// kickRemoteBacklog asks the node owning rt to hand its session the
// backlog. A node that does not know KindBacklog (an older version during
// a rolling upgrade) gets the queue handed over as before: all of it.
func (r *Router) kickRemoteBacklog(ctx context.Context, rt cluster.Route, bare string) {
	cctx, cancel := r.clusterCtx(ctx)
	_, err := r.cluster.Call(cctx, rt.Node, KindBacklog, []byte(rt.JID))
	cancel()
	switch {
	case errors.Is(err, cluster.ErrNoHandler):
		msgs := r.takeOffline(ctx, bare)
		for i, el := range msgs {
			if !r.deliver(ctx, &rt, el) {
				r.restoreOffline(ctx, bare, msgs[i:])
				return
			}
		}
	case err != nil:
		// The messages stay stored: the next login, or the next message
		// stored for the user, hands them over.
		r.log.Debug("router: asking another node to hand over a backlog failed", "node", rt.Node, "jid", rt.JID, "err", err)
	}
}

// handleBacklog is KindBacklog's handler: the pump runs on its own, so the
// calling node does not wait for the hand-over.
func (r *Router) handleBacklog(ctx context.Context, fromNode string, payload []byte) ([]byte, error) {
	full := string(payload)
	go r.kickBacklog(context.WithoutCancel(ctx), full)
	return []byte("1"), nil
}
