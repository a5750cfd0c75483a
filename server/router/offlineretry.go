package router

import (
	"context"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Offline storage that waits for the database (issues 23 and 24).
//
// A message for a user with no available resource is stored offline
// (offline.go). When the database does not answer (storage.ErrUnavailable:
// a timeout, a refused or reset connection, no free connection in the
// pool), bouncing the message loses it where it matters most: in a storm
// or after a node crash its sender is often offline or reconnecting and
// never sees the error (the crash measurements of CRASHSAFETY.md bounced
// 113 to 1,521 messages so). So the message is kept here and stored once
// the database answers:
//
//   - Lanes. Waiting messages sit in retryLanes FIFO lanes, a recipient
//     always in the same one. While a lane has messages, one goroutine
//     tries its oldest, waiting retryFirst after a failure, doubling up to
//     retryMax, with jitter. A stored message is flushed to its recipient
//     as after any commit (flushOffline). While a recipient has messages
//     waiting, a new one for them waits behind them, so their order holds.
//   - While the database is known not to answer (a lane's last attempt
//     failed), a new message goes to its lane at once instead of first
//     spending database.timeout on its sender's reader.
//   - Acknowledgements. A waiting message takes a reference on the hold
//     its routing carries (custody.go): its sender's XEP-0198
//     acknowledgement, or the receipt of the node that keeps a copy, is
//     released only once it is stored (or bounced).
//   - An unknown account still bounces. When the check could not be made
//     (the database did not answer), the lane makes it before storing.
//   - Bounds. c2s.offline_retry_max_bytes for the node's waiting messages
//     together (past it a message is bounced as before) and
//     c2s.offline_retry_max_wait per message (then it is bounced).
//   - A permanent refusal (a full offline queue, another error) bounces at
//     once, as before.
//   - A node that stops (StopOfflineRetry) tries each waiting message once
//     more within its deadline, a lane giving up at its first failure.
//     What is left is logged at error with its count; a message whose hold
//     someone waits for keeps it (the sender's client never got its
//     acknowledgement and sends it again; a node keeping a copy never gets
//     its receipt and routes the copy again when this node is gone), and
//     the others are bounced.
const (
	retryLanes = 4
	retryFirst = 100 * time.Millisecond
	retryMax   = 5 * time.Second
	// retryOverhead is what one waiting message counts beyond its bytes
	// against c2s.offline_retry_max_bytes (the record, the recipient).
	retryOverhead = 256
)

// errStorageAway answers a message offline storage did not take in time:
// past c2s.offline_retry_max_bytes or c2s.offline_retry_max_wait, or the
// node stopped first. Type wait: the sender may try again later.
var errStorageAway = wire.ErrResourceConstraint.WithText("offline message storage is not answering; try again later")

// offlineRetry keeps the messages offline storage could not take yet. mu
// guards the lanes and the counts; it is never held while calling out.
type offlineRetry struct {
	r        *Router
	maxBytes int64 // < 0: keep none
	maxWait  time.Duration
	// first and max bound the backoff; tests shorten them.
	first, max time.Duration
	seed       maphash.Seed

	mu      sync.Mutex
	lanes   [retryLanes]retryLane
	bytes   int64
	count   int
	byBare  map[string]int  // waiting messages per recipient
	stopCtx context.Context // set while the node stops
	stopCh  chan struct{}   // closed when it starts stopping
	wg      sync.WaitGroup  // lane goroutines
	left    int             // messages a stop could not store

	// down is set while the database is known not to answer.
	down atomic.Bool
	// full and expired are set once a message was bounced for that reason,
	// so it is logged once per episode, not per message.
	full, expired atomic.Bool

	retries                    prometheus.Counter
	gaveFull, gaveOld, gaveEnd prometheus.Counter
}

type retryLane struct {
	queue   []*waiting
	running bool
}

// waiting is one message waiting for offline storage.
type waiting struct {
	bare, local string
	stanza      []byte // with its XEP-0203 stamp
	size        int64
	since       time.Time
	checked     bool // the account is known to exist
	quota       bool // the recipient's offline quota applies
	hold        *hold
}

func newOfflineRetry(r *Router, reg prometheus.Registerer) *offlineRetry {
	q := &offlineRetry{
		r:        r,
		maxBytes: int64(r.cfg.C2S.OfflineRetryMaxBytes),
		maxWait:  r.cfg.C2S.OfflineRetryMaxWait,
		first:    retryFirst,
		max:      retryMax,
		seed:     maphash.MakeSeed(),
		byBare:   map[string]int{},
		stopCh:   make(chan struct{}),
	}
	if q.maxBytes == 0 {
		q.maxBytes = 64 << 20
	}
	if q.maxWait <= 0 {
		q.maxWait = 10 * time.Minute
	}
	retries := prometheus.NewCounter(prometheus.CounterOpts{Name: MetricOfflineRetries,
		Help: "Attempts to store a waiting offline message that failed because the database did not answer (each followed by a backoff)."})
	gaveUp := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricOfflineRetryGaveUp,
		Help: "Messages offline storage could not take that were not kept until the database answered, by reason: full (c2s.offline_retry_max_bytes), expired (c2s.offline_retry_max_wait), stopped (the node stopped first)."}, []string{"reason"})
	if reg != nil {
		retries = register(reg, retries)
		gaveUp = register(reg, gaveUp)
		register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricOfflineRetryWaiting,
			Help: "Messages waiting in memory for offline storage to answer."}, func() float64 { n, _ := q.waitingCounts(); return float64(n) }))
		register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricOfflineRetryBytes,
			Help: "Bytes counted against c2s.offline_retry_max_bytes by the messages waiting for offline storage."}, func() float64 { _, b := q.waitingCounts(); return float64(b) }))
	}
	q.retries = retries
	q.gaveFull = gaveUp.WithLabelValues("full")
	q.gaveOld = gaveUp.WithLabelValues("expired")
	q.gaveEnd = gaveUp.WithLabelValues("stopped")
	return q
}

// transient reports whether a storage error means the database did not
// answer, so the same call may succeed later.
func transient(err error) bool {
	return errors.Is(err, storage.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// queueing reports whether a message for bare goes straight to its lane:
// messages for bare wait already (it goes behind them), or the database
// is known not to answer.
func (q *offlineRetry) queueing(bare string) bool {
	if q.maxBytes < 0 {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopCtx != nil {
		return false // stopping: each message tries once itself
	}
	return q.down.Load() || q.byBare[bare] > 0
}

// keep queues a message offline storage could not take now (cause, nil
// when it goes behind others). It takes a reference on the hold ctx
// carries; quota says whether the recipient's offline quota applies;
// checked, whether the account is known to exist. When the message
// cannot be kept it returns the error to bounce it with: cause when
// retrying is off, errStorageAway when the node's waiting messages would
// pass c2s.offline_retry_max_bytes.
func (q *offlineRetry) keep(ctx context.Context, bare, local string, el *wire.Element, checked, quota bool, cause error) error {
	if q.maxBytes < 0 {
		if cause == nil {
			return errStorageAway
		}
		return cause
	}
	if !hasDelay(el, q.r.domain) {
		// Stamped now: it may be stored much later.
		el = privateCopy(el)
		el.Append(delayElement(q.r.domain, q.r.now()))
	}
	stanza := el.Bytes()
	w := &waiting{bare: bare, local: local, stanza: stanza, size: int64(len(stanza)) + retryOverhead,
		since: time.Now(), checked: checked, quota: quota}
	// Taken here, on the routing's goroutine (HoldAck must be), and not
	// under q.mu (it takes the session's lock).
	w.hold = holdFrom(ctx)
	q.mu.Lock()
	if q.bytes+w.size > q.maxBytes {
		q.mu.Unlock()
		w.hold.release() // bounced by the caller, inside the routing
		q.gaveFull.Inc()
		if q.full.CompareAndSwap(false, true) {
			q.r.log.Warn("router: messages waiting for offline storage reach c2s.offline_retry_max_bytes; bouncing more until they are stored", "max", q.maxBytes)
		}
		return errStorageAway
	}
	if q.stopCtx != nil {
		q.left++
		q.mu.Unlock()
		q.r.log.Error("router: offline storage did not answer while the node stops; the message is left to its sender or the node keeping a copy, else bounced", "to", bare, "err", cause)
		q.abandon(w)
		return nil
	}
	l := &q.lanes[maphash.String(q.seed, bare)%retryLanes]
	l.queue = append(l.queue, w)
	q.bytes += w.size
	q.count++
	q.byBare[bare]++
	start := !l.running
	if start {
		l.running = true
		q.wg.Add(1)
	}
	q.mu.Unlock()
	q.full.Store(false)
	if cause != nil {
		q.r.log.Debug("router: offline storage did not answer; the message waits", "to", bare, "err", cause)
	}
	if start {
		go q.run(l)
	}
	return nil
}

// run tries l's oldest message until l is empty.
func (q *offlineRetry) run(l *retryLane) {
	defer q.wg.Done()
	backoff := q.first
	for {
		q.mu.Lock()
		if len(l.queue) == 0 {
			l.running = false
			q.mu.Unlock()
			return
		}
		w := l.queue[0]
		sctx, stopCh := q.stopCtx, q.stopCh
		q.mu.Unlock()
		ctx := context.Background()
		if sctx != nil {
			ctx = sctx
		}
		err := q.try(ctx, w)
		switch {
		case err == nil:
			if q.down.CompareAndSwap(true, false) {
				n, _ := q.waitingCounts()
				q.r.log.Info("router: offline storage answers again; storing the messages that wait", "waiting", n)
			}
			q.expired.Store(false)
			q.pop(l)
			q.r.m.offline.Inc()
			w.hold.release()
			q.r.flushOffline(context.Background(), w.bare)
			backoff = q.first
		case sctx != nil && (transient(err) || sctx.Err() != nil):
			q.giveUpLane(l)
			return
		case !transient(err):
			q.pop(l)
			q.r.log.Debug("router: offline storage refused a waiting message", "to", w.bare, "err", err)
			q.bounce(w, err)
			w.hold.release()
		case time.Since(w.since) >= q.maxWait:
			q.pop(l)
			q.gaveOld.Inc()
			if q.expired.CompareAndSwap(false, true) {
				q.r.log.Warn("router: offline storage did not answer within c2s.offline_retry_max_wait; bouncing the messages that waited that long", "max_wait", q.maxWait, "err", err)
			}
			q.bounce(w, errStorageAway)
			w.hold.release()
		default:
			if q.down.CompareAndSwap(false, true) {
				n, _ := q.waitingCounts()
				q.r.log.Warn("router: offline storage does not answer; messages for offline users wait in memory until it does", "waiting", n, "err", err)
			}
			q.retries.Inc()
			t := time.NewTimer(jitter(backoff))
			select {
			case <-t.C:
			case <-stopCh:
				t.Stop()
			}
			backoff = min(2*backoff, q.max)
		}
	}
}

// jitter spreads d over [d/2, d), so lanes and nodes do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// try makes one attempt: the account check if it is owed, then the store.
func (q *offlineRetry) try(ctx context.Context, w *waiting) error {
	if !w.checked {
		exists, err := q.r.lookupUser(ctx, w.local)
		if err != nil {
			return err
		}
		if !exists {
			return wire.ErrServiceUnavailable
		}
		w.checked = true
	}
	var quota storage.OfflineQuota
	if w.quota {
		quota = q.r.offlineQuota()
	}
	dctx, cancel := q.r.dbCtx(ctx)
	defer cancel()
	return q.r.store.StoreOffline(dctx, w.bare, w.stanza, quota)
}

// pop removes l's oldest message.
func (q *offlineRetry) pop(l *retryLane) {
	q.mu.Lock()
	q.forgetLocked(l.queue[0])
	l.queue[0] = nil
	l.queue = l.queue[1:]
	if len(l.queue) == 0 {
		l.queue = nil
	}
	q.mu.Unlock()
}

func (q *offlineRetry) forgetLocked(w *waiting) {
	q.bytes -= w.size
	q.count--
	if q.byBare[w.bare]--; q.byBare[w.bare] <= 0 {
		delete(q.byBare, w.bare)
	}
}

// giveUpLane abandons what waits in l: the node stops and the database
// did not answer.
func (q *offlineRetry) giveUpLane(l *retryLane) {
	q.mu.Lock()
	ws := l.queue
	l.queue = nil
	l.running = false
	for _, w := range ws {
		q.forgetLocked(w)
	}
	q.left += len(ws)
	q.mu.Unlock()
	for _, w := range ws {
		q.abandon(w)
	}
}

// abandon lets go of a message a stopping node could not store. One whose
// hold someone waits for keeps it (see the top of this file); the others
// are bounced.
func (q *offlineRetry) abandon(w *waiting) {
	q.gaveEnd.Inc()
	if w.hold != nil {
		return
	}
	q.bounce(w, errStorageAway)
}

// bounce answers a waiting message with the error its last attempt met.
func (q *offlineRetry) bounce(w *waiting, err error) {
	el, perr := wire.Parse(w.stanza, q.r.linkLimits())
	if perr != nil {
		q.r.log.Error("router: dropping an unparsable message that waited for offline storage", "to", w.bare, "err", perr)
		return
	}
	q.r.bounce(context.Background(), el, offlineRefusal(err))
}

// stop makes the lanes try each message once more within ctx and give up
// at their first failure, and waits for them (at most until ctx ends).
// It returns how many messages were waiting and how many were left.
func (q *offlineRetry) stop(ctx context.Context) (waited, left int) {
	q.mu.Lock()
	if q.stopCtx != nil {
		q.mu.Unlock()
		return 0, 0
	}
	q.stopCtx = ctx
	q.left = 0
	waited = q.count
	close(q.stopCh)
	q.mu.Unlock()
	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	q.mu.Lock()
	left = q.left + q.count
	q.mu.Unlock()
	return waited, left
}

// resume undoes stop (the node starts again).
func (q *offlineRetry) resume() {
	q.mu.Lock()
	if q.stopCtx != nil {
		q.stopCtx = nil
		q.stopCh = make(chan struct{})
	}
	q.mu.Unlock()
}

// waitingCounts returns how many messages wait and the bytes they count.
func (q *offlineRetry) waitingCounts() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count, q.bytes
}

// StopOfflineRetry is for a stopping node, once its sessions are gone
// and other nodes' stanzas are handed back (HandBack), while the store
// and the cluster still run: each message waiting for offline storage
// is tried once more within ctx. What cannot be stored is logged at
// error; a message whose sender waits for its acknowledgement or whose
// copy another node keeps is left to them, the others are bounced. Until
// HandBack(ctx, false), a message offline storage cannot take is let go the
// same way at once.
func (r *Router) StopOfflineRetry(ctx context.Context) {
	waited, left := r.retry.stop(ctx)
	if left > 0 {
		r.log.Error("router: messages waiting for offline storage could not be stored before the node stopped; those a sender or another node still holds are left to them, the others bounced",
			"count", left, "waiting", waited)
	} else if waited > 0 {
		r.log.Info("router: stored the messages waiting for offline storage before stopping", "count", waited)
	}
}
