package push

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// A notification needs the account's registrations from the store. When
// the database does not answer, each read waits database.timeout (5s by
// default) on the path of the message being stored offline or delivered,
// and the notification used to be dropped. Now the first failure defers
// the notification, and until the deferred ones are sent every new one
// queues behind them (in order, so message-count keeps counting up)
// without touching the store: one goroutine retries the oldest with
// backoff. A deferred notification waits at most maxDeferWait, and at
// most maxDeferred wait on a node; past either it is dropped and counted
// (the message itself is not concerned: it is stored or delivered as
// usual).

const (
	maxDeferred  = 10000
	maxDeferWait = 10 * time.Minute
)

// Backoff between retries of the oldest deferred notification (vars for
// tests).
var (
	deferBackoffMin = 100 * time.Millisecond
	deferBackoffMax = 5 * time.Second
)

// deferredNote is a notification waiting for the store.
type deferredNote struct {
	owner   string
	msg     *wire.Element // a copy: the router goes on with the original
	content *wire.Element // contentOf(the original): names it for remember
	session string        // PointDeliver's quiet session; "" offline
	at      time.Time
}

// notifyOrDefer notifies now, unless notifications are deferred already
// or the registrations cannot be read; then it defers this one.
func (p *Plugin) notifyOrDefer(ctx context.Context, owner string, msg *wire.Element, session string) {
	n := deferredNote{owner: owner, msg: msg, content: contentOf(msg), session: session}
	p.deferMu.Lock()
	queued := p.retrying
	if queued {
		p.deferLocked(n)
	}
	p.deferMu.Unlock()
	if queued {
		return
	}
	sent, err := p.notify(ctx, owner, msg, session)
	if err != nil {
		p.host.Logger().Warn("push: could not read registrations; the notification waits for the database", "owner", owner, "err", err)
		p.deferMu.Lock()
		p.deferLocked(n)
		p.deferMu.Unlock()
		return
	}
	p.notified(n, sent, false)
}

// notified records a notification sent to a quiet session's app servers,
// so that the message does not notify again if it goes offline. On the
// message's path that holds even if the session closed meanwhile (its
// unacknowledged messages are about to go offline: the case it is for);
// a deferred one is remembered only for a session still quiet, since a
// closed session's entries may have been forgotten already and would
// then stay.
func (p *Plugin) notified(n deferredNote, sent int, deferred bool) {
	if sent > 0 && n.session != "" && (!deferred || p.isQuiet(n.session)) {
		p.remember(n.session, n.content)
	}
}

// deferLocked queues n and starts the retrying goroutine. deferMu held.
func (p *Plugin) deferLocked(n deferredNote) {
	if len(p.deferred) >= maxDeferred {
		p.stats.deferDropped.Add(1)
		return
	}
	n.msg = n.msg.Copy()
	n.at = time.Now()
	p.deferred = append(p.deferred, n)
	p.stats.deferredTotal.Add(1)
	if p.retrying {
		return
	}
	select {
	case <-p.quit:
		return // stopped: the queue is dropped at Stop
	default:
	}
	p.retrying = true
	p.retryWG.Add(1)
	go p.retryDeferred()
}

// retryDeferred sends the deferred notifications, oldest first, retrying
// the oldest with backoff while the store fails, until none is left.
func (p *Plugin) retryDeferred() {
	defer p.retryWG.Done()
	backoff := deferBackoffMin
	timeout := p.host.Config().Database.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	for {
		select {
		case <-p.quit:
			p.dropDeferred()
			return
		default:
		}
		p.deferMu.Lock()
		if len(p.deferred) == 0 {
			p.retrying = false
			p.deferMu.Unlock()
			return
		}
		n := p.deferred[0]
		p.deferMu.Unlock()
		if time.Since(n.at) > maxDeferWait {
			p.stats.deferDropped.Add(1)
			p.host.Logger().Warn("push: dropping a notification the database never let us send", "owner", n.owner, "waited", maxDeferWait)
			p.popDeferred()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		sent, err := p.notify(ctx, n.owner, n.msg, n.session)
		cancel()
		if err == nil {
			p.notified(n, sent, true)
			p.popDeferred()
			backoff = deferBackoffMin
			continue
		}
		// Jitter, so that the nodes of a cluster do not retry in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, deferBackoffMax)
		select {
		case <-p.quit:
			p.dropDeferred()
			return
		case <-time.After(wait):
		}
	}
}

// dropDeferred gives up what waits (the node stops).
func (p *Plugin) dropDeferred() {
	p.deferMu.Lock()
	left := len(p.deferred)
	p.deferred = nil
	p.retrying = false
	p.deferMu.Unlock()
	if left > 0 {
		p.stats.deferDropped.Add(int64(left))
		p.host.Logger().Warn("push: stopping with notifications the database never let us send", "dropped", left)
	}
}

func (p *Plugin) popDeferred() {
	p.deferMu.Lock()
	p.deferred[0] = deferredNote{}
	p.deferred = p.deferred[1:]
	p.deferMu.Unlock()
}

// deferredNow returns how many notifications wait for the store.
func (p *Plugin) deferredNow() int {
	p.deferMu.Lock()
	defer p.deferMu.Unlock()
	return len(p.deferred)
}

// stopRetrying ends the retrying goroutine (at Stop).
func (p *Plugin) stopRetrying() {
	p.deferMu.Lock()
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.deferMu.Unlock()
	p.retryWG.Wait()
}
