package balance

import (
	"context"
	"math"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/c2s"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// Drain makes the node stop accepting sessions and move its clients to
// other nodes; it returns at once (the drain runs in the background) and
// is a no-op when a drain is under way. It is the admin backend's Drain
// hook (admin API POST /api/nodes/{node}/drain, `aviary node drain`).
//
// What happens:
//  1. The node publishes draining=true; from now on every new stream is
//     redirected (see-other-host to the least-loaded node that accepts) or,
//     with no such node, refused with system-shutdown. Other nodes and the
//     dispatcher stop naming it once they see the flag, and its health
//     checks (/dispatch/health, the admin listener's /readyz) fail. It
//     keeps only announcing this for balance.drain_notice, so that load
//     balancers have taken it out before its clients reconnect: otherwise
//     they are sent straight back and refused.
//  2. Every stream that has not bound a resource yet is closed the same
//     way at once (it has nothing to lose, and would otherwise keep the
//     drain waiting until c2s.auth_timeout), and so is every bound
//     session, with see-other-host (the target picked
//     per transport and spread over the nodes that accept), or
//     system-shutdown when no node can take it. A stream-management
//     session with resumption stays detached for a short window
//     (server/c2s): its client resumes it on the node it was sent to,
//     which takes it over through the cluster. Otherwise, everything it
//     was sent but did not acknowledge, like everything a plain session
//     had queued, goes back to the router (c2s.Session.Redirect →
//     router.Unbind), which delivers messages to the user's other
//     resources or stores them offline.
//     At most balance.drain_rate sessions per second are sent away, so
//     the other nodes are not hit by every reconnection at once.
//  3. Streams still negotiating are swept again every SweepInterval once
//     they bind; when no stream is left, or at balance.drain_deadline, the
//     drain ends: the onDrained callback runs (`aviary serve` stops the node, exit 0).
func (s *Service) Drain(ctx context.Context) error {
	s.mu.Lock()
	if s.n == nil {
		s.mu.Unlock()
		return ErrNotRunning
	}
	if s.draining {
		s.mu.Unlock()
		return nil
	}
	s.draining = true
	stop := s.ctx
	s.report = Report{Node: s.n.Cluster().NodeName(), Started: time.Now()}
	s.mu.Unlock()
	s.log.Info("balance: draining the node", "deadline", s.cfg.Balance.DrainDeadline)
	s.publish(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go s.drainLoop(stop)
	return nil
}

func (s *Service) drainLoop(stop context.Context) {
	defer s.wg.Done()
	every := s.SweepInterval
	if every <= 0 {
		every = DefaultSweepInterval
	}
	deadline := time.NewTimer(s.cfg.Balance.DrainDeadline)
	defer deadline.Stop()
	reason := "empty"
	if notice := s.cfg.Balance.DrainNotice; notice > 0 {
		s.log.Info("balance: announcing the drain before moving sessions", "notice", notice.String())
		wait := time.NewTimer(notice)
		select {
		case <-wait.C:
		case <-deadline.C:
			reason = "deadline"
		case <-stop.Done():
			reason = "stopped"
		}
		wait.Stop()
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	sent := map[router.Session]bool{}
	budget := sweepBudget(s.cfg.Balance.DrainRate, every)
loop:
	for reason == "empty" {
		s.sweep(sent, budget)
		if s.empty() {
			break
		}
		select {
		case <-deadline.C:
			reason = "deadline"
			break loop
		case <-stop.Done():
			reason = "stopped"
			break loop
		case <-tick.C:
		}
	}
	s.mu.Lock()
	s.report.Ended = time.Now()
	s.report.Reason = reason
	s.report.Finished = true
	if s.n != nil {
		s.report.Left = s.n.C2S().Active()
	}
	r := s.report
	drained := s.drained
	s.mu.Unlock()
	s.metrics.drainSecs.Set(r.Took().Seconds())
	s.log.Info("balance: drain ended", "reason", reason, "took", r.Took().String(), "moved", r.Moved, "refused", r.Refused, "left", r.Left)
	close(drained)
	if s.onDrained != nil && reason != "stopped" {
		go s.onDrained(r)
	}
}

// empty reports whether no client stream is left: none open and none
// bound (a detached stream-management session is still bound).
func (s *Service) empty() bool {
	s.mu.Lock()
	n := s.n
	s.mu.Unlock()
	if n == nil {
		return true
	}
	return n.C2S().Active() == 0 && len(n.Router().LocalSessions()) == 0
}

// sweepBudget is how many sessions one sweep may send away to keep to
// rate per second (at least one; rate 0 means no limit).
func sweepBudget(rate int, every time.Duration) int {
	if rate <= 0 {
		return math.MaxInt
	}
	n := int(float64(rate) * every.Seconds())
	if n < 1 {
		n = 1
	}
	return n
}

// sweep closes up to budget bound sessions not closed yet, sending them
// elsewhere.
func (s *Service) sweep(sent map[router.Session]bool, budget int) {
	s.mu.Lock()
	n := s.n
	s.mu.Unlock()
	if n == nil {
		return
	}
	if k := n.C2S().RedirectUnbound(s.sendAway(n)); k > 0 {
		s.log.Debug("balance: closed streams that had not bound a resource", "streams", k)
	}
	for _, rs := range n.Router().LocalSessions() {
		if sent[rs] {
			continue
		}
		if budget <= 0 {
			return
		}
		budget--
		sent[rs] = true
		cs, ok := rs.(*c2s.Session)
		if !ok {
			rs.Close(CondSystemShutdown, "this node is shutting down")
			continue
		}
		tr := transportOf(n, cs.Transport())
		d := s.decide(tr, 0)
		if d.Addr != "" {
			s.metrics.redirects.WithLabelValues("drain").Inc()
			s.mu.Lock()
			s.report.Moved++
			s.mu.Unlock()
			s.log.Debug("balance: moving a session", "jid", cs.JID().String(), "to", d.Node, "addr", d.Addr)
			cs.Redirect(c2s.SeeOtherHost(d.Addr))
			continue
		}
		s.metrics.refusals.WithLabelValues(CondSystemShutdown).Inc()
		s.mu.Lock()
		s.report.Refused++
		s.mu.Unlock()
		cs.Redirect(wire.StreamError(CondSystemShutdown, "this node is shutting down and no other node can take the session"))
	}
}

// sendAway returns the stream error for a stream of transport t that this
// draining node closes: see-other-host naming a node that accepts, or
// system-shutdown.
func (s *Service) sendAway(n *server.Node) func(t c2s.Transport) *wire.Element {
	return func(t c2s.Transport) *wire.Element {
		if d := s.decide(transportOf(n, t), 0); d.Addr != "" {
			s.metrics.redirects.WithLabelValues("drain").Inc()
			return c2s.SeeOtherHost(d.Addr)
		}
		s.metrics.refusals.WithLabelValues(CondSystemShutdown).Inc()
		return wire.StreamError(CondSystemShutdown, refuseText(CondSystemShutdown))
	}
}

// DrainOnSignal is what `aviary serve` does with its first SIGTERM (what
// systemd and Kubernetes send to stop a process): when the node is
// clustered and another live node that is not draining can take its
// clients, it starts the same drain as `aviary node drain` and returns
// true; the process then exits when the drain ends (NewService's onDrained). It also
// returns true while a drain is already under way (the signal changes
// nothing). It returns false when the node is alone in the cluster (or not
// clustered), or its drain has ended: the caller then shuts down at once,
// as a second SIGTERM or SIGINT does.
func (s *Service) DrainOnSignal(ctx context.Context) bool {
	s.mu.Lock()
	n, draining, drained := s.n, s.draining, s.drained
	s.mu.Unlock()
	if n == nil {
		return false
	}
	if draining {
		select {
		case <-drained:
			return false
		default:
			return true
		}
	}
	if !n.Cluster().Clustered() {
		return false
	}
	s.refresh(ctx)
	if !s.othersTakeClients() {
		s.log.Info("balance: no other live node to move clients to; stopping without a drain")
		return false
	}
	return s.Drain(ctx) == nil
}

// othersTakeClients reports whether another node is live and not draining.
func (s *Service) othersTakeClients() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		return false
	}
	self, now := s.n.Cluster().NodeName(), time.Now()
	for _, m := range s.members {
		if m.Name != self && !m.Draining && s.policy.Live(m, now) {
			return true
		}
	}
	return false
}
