// Package groupcommit batches appends to an archive store (group commit):
// entries added while one batch is being written go together in the next
// one, so a busy node writes one transaction per batch instead of one per
// message, and an idle node writes each entry at once (no timer ever holds
// an entry back). The message archive writes through it; so can anything
// else that appends to an archive at message rates.
//
// The contract, which the crash-safety work of issue 24 builds on:
//
//   - Add queues an entry and returns at once; the entry's done callback
//     runs after the batch holding it committed (err nil, with the ID the
//     store kept) or finally failed. "Committed" is the store's: on
//     PostgreSQL the transaction's commit, on SQLite the WAL commit.
//   - Flush(ctx) returns once every entry added before the call has
//     committed or failed: read-your-writes for a query that follows.
//   - Nothing added is dropped silently: a failed batch is tried again
//     (RetryFor in all, with backoff) and only then reported failed to
//     every callback, logged and counted. Add blocks while MaxPending
//     entries wait (back-pressure on the producers rather than unbounded
//     memory) and fails only when its context ends first.
//   - Entries are queued in memory: a process that dies loses what was
//     queued and not yet committed. A caller that must not acknowledge
//     anything before it is durable waits for done (or Flush) before it
//     acknowledges: the message archive holds the sender's stream-management
//     acknowledgement until done, while delivery never waits for the disk
//     (see plugins/mam).
//
// Callbacks run on the writer's goroutine, one batch after another, in the
// order the entries were added; they must not block or call Flush.
package groupcommit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// Options tune a Writer. Zero fields take the defaults.
type Options struct {
	// MaxBatch bounds the entries of one transaction. Default 500.
	MaxBatch int
	// MaxPending bounds the entries waiting in memory; Add blocks past
	// it. Default 20000.
	MaxPending int
	// Timeout bounds one AppendBatch call. Default 10s.
	Timeout time.Duration
	// RetryFor is how long a failing batch is tried again before its
	// entries are reported failed. Default 30s.
	RetryFor time.Duration
	Logger   *slog.Logger
}

// Done is called once per entry: with the ID the store kept, or the error
// that made the writer give the entry up.
type Done func(id int64, err error)

// Stats are a Writer's counters since it started.
type Stats struct {
	Entries  uint64 // committed
	Batches  uint64 // committed transactions
	Failed   uint64 // entries given up after RetryFor
	Retries  uint64 // batch attempts that failed and were tried again
	Pending  int    // waiting or being written now
	MovedIDs uint64 // entries whose given ID was taken, stored under another
}

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("groupcommit: writer closed")

type item struct {
	e    storage.ArchiveEntry
	done Done
}

// Writer is one archive's group-commit queue with one writing goroutine.
type Writer struct {
	store storage.Archive
	o     Options

	mu        sync.Mutex
	queue     []item
	added     uint64        // entries ever added
	finished  uint64        // entries committed or given up, in order
	progress  chan struct{} // closed and replaced whenever finished grows
	space     chan struct{} // closed and replaced whenever the queue shrinks
	wake      chan struct{} // 1-buffered: the loop has work
	closed    bool
	stats     Stats
	inFlight  int
	loopDone  chan struct{}
	closeOnce sync.Once
}

// New starts a writer over store.
func New(store storage.Archive, o Options) *Writer {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 500
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 20000
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Writer{
		store:    store,
		o:        o,
		progress: make(chan struct{}),
		space:    make(chan struct{}),
		wake:     make(chan struct{}, 1),
		loopDone: make(chan struct{}),
	}
	go w.loop()
	return w
}

// Add queues an entry (give it an ID made with storage.NewArchiveID to know
// the ID before the write; a zero ID is assigned by the store). done may be
// nil. Add blocks while the writer holds MaxPending entries, until ctx
// ends (then the entry is not queued and ctx's error is returned).
func (w *Writer) Add(ctx context.Context, e storage.ArchiveEntry, done Done) error {
	_, err := w.add(ctx, e, done, false)
	return err
}

// AddNew is Add for an entry whose ID the writer makes
// (storage.NewArchiveID, now) as it queues it, and returns: the entries of
// one writer then have increasing IDs in queue order, so they commit in ID
// order, and a reader paging by ID on this node never sees a later ID
// before an earlier one is written.
func (w *Writer) AddNew(ctx context.Context, e storage.ArchiveEntry, done Done) (int64, error) {
	return w.add(ctx, e, done, true)
}

func (w *Writer) add(ctx context.Context, e storage.ArchiveEntry, done Done, assign bool) (int64, error) {
	w.mu.Lock()
	for len(w.queue)+w.inFlight >= w.o.MaxPending && !w.closed {
		space := w.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		w.mu.Lock()
	}
	if w.closed {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	if assign {
		e.ID = storage.NewArchiveID(time.Now())
	}
	w.queue = append(w.queue, item{e: e, done: done})
	w.added++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return e.ID, nil
}

// Flush waits until every entry added before the call has committed or
// been given up, or ctx ends.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.added
	for w.finished < target {
		ch := w.progress
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
	return nil
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Pending = len(w.queue) + w.inFlight
	return s
}

// Close refuses new entries, writes what is queued (bounded by ctx) and
// stops the goroutine.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		close(w.space) // wake blocked Adds: they see closed
		w.space = make(chan struct{})
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	})
	select {
	case <-w.loopDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Writer) loop() {
	defer close(w.loopDone)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 {
			if w.closed {
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		n := min(len(w.queue), w.o.MaxBatch)
		batch := make([]item, n)
		copy(batch, w.queue)
		rest := copy(w.queue, w.queue[n:])
		clear(w.queue[rest:])
		w.queue = w.queue[:rest]
		w.inFlight = n
		w.mu.Unlock()

		ids, err := w.write(batch)

		w.mu.Lock()
		if err != nil {
			w.stats.Failed += uint64(n)
		} else {
			w.stats.Entries += uint64(n)
			w.stats.Batches++
			for i, it := range batch {
				if it.e.ID != 0 && ids[i] != it.e.ID {
					// Another node made the same ID for this owner in the
					// same microsecond; whoever showed the given one
					// (a stanza-id) showed an ID the store does not have.
					w.stats.MovedIDs++
					w.o.Logger.Warn("groupcommit: given archive ID taken; stored under another",
						"owner", it.e.Owner, "given", storage.FormatArchiveID(it.e.ID), "stored", storage.FormatArchiveID(ids[i]))
				}
			}
		}
		w.mu.Unlock()
		// Callbacks before Flush may return: a caller that flushed has
		// seen every callback of what it waited for.
		for i, it := range batch {
			if it.done == nil {
				continue
			}
			if err != nil {
				it.done(0, err)
			} else {
				it.done(ids[i], nil)
			}
		}
		w.mu.Lock()
		w.inFlight = 0
		w.finished += uint64(n)
		close(w.progress)
		w.progress = make(chan struct{})
		close(w.space)
		w.space = make(chan struct{})
		w.mu.Unlock()
	}
}

// write appends one batch, trying again with backoff for RetryFor.
func (w *Writer) write(batch []item) ([]int64, error) {
	es := make([]storage.ArchiveEntry, len(batch))
	for i, it := range batch {
		es[i] = it.e
	}
	deadline := time.Now().Add(w.o.RetryFor)
	backoff := 50 * time.Millisecond
	for {
		// The writer lane: the batch does not queue behind other calls
		// for a connection (a login storm's reads), while every message
		// waits for room in this writer's queue.
		ctx, cancel := context.WithTimeout(storage.InWriterLane(context.Background()), w.o.Timeout)
		ids, err := w.store.AppendBatch(ctx, es)
		cancel()
		if err == nil {
			return ids, nil
		}
		if time.Now().Add(backoff).After(deadline) {
			w.o.Logger.Error("groupcommit: archive batch failed; entries lost", "entries", len(es), "err", err)
			return nil, err
		}
		w.o.Logger.Warn("groupcommit: archive batch failed; trying again", "entries", len(es), "in", backoff, "err", err)
		w.mu.Lock()
		w.stats.Retries++
		w.mu.Unlock()
		time.Sleep(backoff) // the backoff of a retry loop, not a wait for an event
		backoff = min(2*backoff, 2*time.Second)
	}
}
