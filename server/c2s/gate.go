package c2s

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/wire"
)

// Overload protection: how fast a node takes on new streams.
//
// When a node dies, its clients reconnect within seconds, and the nodes
// left take every one of them at once: thousands of TLS handshakes and
// logins (each a few database calls) competing with the established
// sessions for the CPU and the database pool. Measured on three nodes of
// one machine (issue 23): the survivors' own sessions starved, missed their
// pings and were closed, and their clients joined the storm. A node now
// paces what a new stream costs and sheds what it cannot pace:
//
//   - TLS handshakes (c2s.max_tls_handshakes_per_second) and SASL logins
//     (c2s.max_logins_per_second) each take a turn from a pacer. A stream
//     reserves its turns when its first header arrives (a direct-TLS
//     connection its handshake turn at accept) and waits for them, at
//     most c2s.admission_wait: the bounded queue of a node at its rate is
//     that wait, spread smoothly instead of all at once.
//   - A stream whose turn is further away than that is shed: sent to a
//     less loaded node with see-other-host (the balancer's choice, see
//     SetShedTarget), or refused with resource-constraint when no node can
//     take it. Direct TLS cannot speak XMPP before its handshake, so such
//     a connection is closed at once, as a full accept queue would.
//   - c2s.max_negotiating caps the streams accepted and not authenticated
//     on the node (all addresses, all transports): past it, shed at once.
//   - While its turns run more than half the admission wait ahead, or it
//     shed a stream within shedHold, the node reports Shedding: the
//     balancer publishes it, and the dispatcher and the other nodes stop
//     sending it clients until it has caught up.
//
// Nothing here touches an established session: its reader and writer never
// wait on a pacer, so they keep their latency while the node sheds.

// shedHold is how long after its last shed stream a node still reports
// Shedding: long enough for the cluster to hear it (balance publishes
// every few seconds), short enough that a node back at ease takes clients
// again soon.
const shedHold = 5 * time.Second

// pacer hands out turns at a fixed rate with bursts of up to one second's
// worth (a generic cell rate algorithm: next is the theoretical time of
// the next turn). Safe for concurrent use.
type pacer struct {
	base time.Duration // between turns at the ceiling

	mu       sync.Mutex
	interval time.Duration // between turns now (the governor's share of the ceiling)
	burst    time.Duration // how far next may run ahead of now without waiting
	next     time.Time
}

// newPacer returns a pacer of perSecond turns, or nil (no limit) for
// perSecond <= 0.
func newPacer(perSecond int) *pacer {
	if perSecond <= 0 {
		return nil
	}
	iv := time.Second / time.Duration(perSecond)
	if iv <= 0 {
		iv = 1
	}
	return &pacer{base: iv, interval: iv, burst: time.Second - iv}
}

// setShare runs the pacer at share (0 < share <= 1) of its ceiling: a
// turn every base/share, bursts of a second's worth. Turns already given
// keep their time. A nil pacer has no ceiling to share.
func (p *pacer) setShare(share float64) {
	if p == nil || share <= 0 {
		return
	}
	iv := time.Duration(float64(p.base) / share)
	p.mu.Lock()
	p.interval = iv
	p.burst = max(time.Second-iv, 0)
	p.mu.Unlock()
}

// reserve takes the next turn if it comes within maxWait and returns how
// long to wait for it; false takes nothing. A nil pacer never waits.
func (p *pacer) reserve(now time.Time, maxWait time.Duration) (time.Duration, bool) {
	if p == nil {
		return 0, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.next
	if t.Before(now) {
		t = now
	}
	wait := max(t.Sub(now)-p.burst, 0)
	if wait > maxWait {
		return 0, false
	}
	p.next = t.Add(p.interval)
	return wait, true
}

// backlog is how long a turn taken now would wait.
func (p *pacer) backlog(now time.Time) time.Duration {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.next.After(now) {
		// Idle (or never used: next.Sub(now) of a zero next saturates and
		// the subtraction below would overflow into a huge backlog).
		return 0
	}
	return max(p.next.Sub(now)-p.burst, 0)
}

// Shed reasons, the label of aviary_c2s_shed_total.
const (
	ShedNegotiating = "negotiating" // c2s.max_negotiating reached
	ShedHandshakes  = "handshakes"  // no TLS handshake turn within the admission wait
	ShedLogins      = "logins"      // no login turn within the admission wait
)

// gate is a Server's admission control; see the top of this file.
type gate struct {
	handshakes *pacer // nil: no limit
	logins     *pacer
	wait       time.Duration
	maxNeg     int64 // <= 0: no limit
	gov        *governor

	// negotiating counts streams from Serve until they authenticate or
	// close; handshaking the direct-TLS connections in their handshake,
	// before Serve.
	negotiating atomic.Int64
	handshaking atomic.Int64
	lastShed    atomic.Int64 // monotonic() of the last shed stream, 0: never
	onShed      atomic.Pointer[func()]
}

func newGate(c conf.C2SConfig) *gate {
	return &gate{
		handshakes: newPacer(c.MaxTLSHandshakesPerSecond),
		logins:     newPacer(c.MaxLoginsPerSecond),
		wait:       c.AdmissionWait,
		maxNeg:     int64(c.MaxNegotiating),
		gov:        newGovernor(c.AdmissionLatency),
	}
}

// full reports whether the accept queue holds more than
// c2s.max_negotiating streams, counting the one asking (already counted
// in negotiating when it has reached Serve, not yet at accept).
func (g *gate) full(counted bool) bool {
	n := g.negotiating.Load() + g.handshaking.Load()
	if !counted {
		n++
	}
	return g.maxNeg > 0 && n > g.maxNeg
}

// shed records a stream shed for reason.
func (g *gate) shed(m *Metrics, reason string) {
	prev := g.lastShed.Swap(monotonic())
	m.shed(reason)
	if prev == 0 || time.Duration(monotonic()-prev) > shedHold {
		if fn := g.onShed.Load(); fn != nil {
			go (*fn)()
		}
	}
}

// shedding reports whether the node sheds load now (see Server.Shedding).
func (g *gate) shedding(now time.Time) bool {
	if last := g.lastShed.Load(); last != 0 && time.Duration(monotonic()-last) < shedHold {
		return true
	}
	half := g.wait / 2
	return g.logins.backlog(now) > half || g.handshakes.backlog(now) > half
}

// Shedding reports whether the node is shedding new streams: it shed one
// within the last few seconds, or its handshake or login turns run more
// than half of c2s.admission_wait ahead. The balancer publishes it so that
// the dispatcher and the other nodes send new clients elsewhere.
func (srv *Server) Shedding() bool { return srv.gate.shedding(time.Now()) }

// Negotiating returns how many streams are accepted and not yet
// authenticated (the accept queue c2s.max_negotiating bounds).
func (srv *Server) Negotiating() int {
	return int(srv.gate.negotiating.Load() + srv.gate.handshaking.Load())
}

// OnShed registers fn (nil removes it), run on its own goroutine when the
// node sheds a stream after not having shed any for a while: the balancer
// publishes the change at once instead of at its next interval.
func (srv *Server) OnShed(fn func()) {
	if fn == nil {
		srv.gate.onShed.Store(nil)
		return
	}
	srv.gate.onShed.Store(&fn)
}

// ShedTarget names where a stream this node sheds should go: for
// transport t, a see-other-host stream error naming a node that takes new
// clients, or nil when none does (the stream is then refused with
// resource-constraint). It must not block.
type ShedTarget func(t Transport) *wire.Element

// SetShedTarget installs fn (nil removes it: shed streams are refused).
func (srv *Server) SetShedTarget(fn ShedTarget) {
	if fn == nil {
		srv.shedTarget.Store(nil)
		return
	}
	srv.shedTarget.Store(&fn)
}

// shedError is the stream error a shed stream is closed with.
func (srv *Server) shedError(t Transport) *wire.Element {
	if p := srv.shedTarget.Load(); p != nil {
		if se := (*p)(t); se != nil {
			return se
		}
	}
	return wire.StreamError("resource-constraint", "this server is busy; try again shortly")
}

// admitLoad runs at a stream's first header, after the balancer's
// admission: it reserves the stream's turns (a TLS handshake when the
// stream will upgrade with STARTTLS, a login) or sheds it. It returns the
// stream error to close with, or nil to serve it.
func (s *Session) admitLoad() *wire.Element {
	g := s.srv.gate
	if g.full(true) {
		g.shed(s.srv.d.Metrics, ShedNegotiating)
		return s.srv.shedError(s.t)
	}
	now := time.Now()
	if s.t.CanStartTLS() && s.srv.d.TLS != nil {
		wait, ok := g.handshakes.reserve(now, g.wait)
		if !ok {
			g.shed(s.srv.d.Metrics, ShedHandshakes)
			return s.srv.shedError(s.t)
		}
		s.tlsTurn = now.Add(wait)
	}
	wait, ok := g.logins.reserve(now, g.wait)
	if !ok {
		g.shed(s.srv.d.Metrics, ShedLogins)
		return s.srv.shedError(s.t)
	}
	s.loginTurn = now.Add(wait)
	return nil
}

// awaitTurn waits until at (a turn admitLoad reserved), or until the
// session ends; false when it ended.
func (s *Session) awaitTurn(at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// acceptTLS admits a direct-TLS connection before its handshake: false
// (the caller closes it) when the accept queue is full or no handshake
// turn comes within the admission wait; otherwise it waits for the turn
// (until ctx ends) and counts the connection as handshaking until done is
// called.
func (g *gate) acceptTLS(ctx context.Context, m *Metrics) (done func(), ok bool) {
	if g.full(false) {
		g.shed(m, ShedNegotiating)
		return nil, false
	}
	wait, ok := g.handshakes.reserve(time.Now(), g.wait)
	if !ok {
		g.shed(m, ShedHandshakes)
		return nil, false
	}
	g.handshaking.Add(1)
	done = func() { g.handshaking.Add(-1) }
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			done()
			return nil, false
		}
	}
	return done, true
}
