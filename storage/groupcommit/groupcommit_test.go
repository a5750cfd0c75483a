package groupcommit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/groupcommit"
	"github.com/aviary-im/aviary/storage/sqlite"
)

// gated is an archive whose AppendBatch waits for the test to open a gate
// and can be told to fail: it shows what the writer batches while a write
// is in flight. Everything else comes from the real embedded store.
type gated struct {
	storage.Archive
	mu      sync.Mutex
	batches [][]storage.ArchiveEntry
	gate    chan struct{}
	started chan struct{}
	fail    int // fail this many calls
}

func (g *gated) AppendBatch(ctx context.Context, es []storage.ArchiveEntry) ([]int64, error) {
	g.started <- struct{}{}
	<-g.gate
	g.mu.Lock()
	if g.fail > 0 {
		g.fail--
		g.mu.Unlock()
		return nil, errors.New("database down")
	}
	g.batches = append(g.batches, append([]storage.ArchiveEntry(nil), es...))
	g.mu.Unlock()
	return g.Archive.AppendBatch(ctx, es)
}

func open(t *testing.T) *gated {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &gated{Archive: st.Archive("mam"), gate: make(chan struct{}), started: make(chan struct{}, 100)}
}

func entry(i int) storage.ArchiveEntry {
	return storage.ArchiveEntry{ID: storage.NewArchiveID(time.Now()), Owner: "alice@x", With: "bob@x", Value: []byte{byte(i)}}
}

// TestBatchesWhileWriting: the first entry is written alone at once (no
// timer holds it back); what is added while it is written goes in one
// batch; done runs after the commit with the given ID; Flush waits for it.
func TestBatchesWhileWriting(t *testing.T) {
	g := open(t)
	w := groupcommit.New(g, groupcommit.Options{})
	defer w.Close(context.Background())
	ctx := context.Background()

	var mu sync.Mutex
	done := map[int64]error{}
	cb := func(want int64) groupcommit.Done {
		return func(id int64, err error) {
			mu.Lock()
			defer mu.Unlock()
			if id != want && err == nil {
				t.Errorf("done with ID %d, given %d", id, want)
			}
			done[want] = err
		}
	}
	first := entry(0)
	if err := w.Add(ctx, first, cb(first.ID)); err != nil {
		t.Fatal(err)
	}
	<-g.started // the first entry is being written, alone
	var ids []int64
	for i := 1; i <= 10; i++ {
		e := entry(i)
		ids = append(ids, e.ID)
		if err := w.Add(ctx, e, cb(e.ID)); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- w.Flush(ctx) }()
	g.gate <- struct{}{} // commit the first
	<-g.started          // the next batch: everything added meanwhile
	select {
	case <-flushed:
		t.Fatal("Flush returned before the entries added before it were written")
	default:
	}
	g.gate <- struct{}{}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if len(g.batches) != 2 || len(g.batches[0]) != 1 || len(g.batches[1]) != 10 {
		t.Fatalf("batches of %d and %d entries; want 1 then 10", len(g.batches[0]), len(g.batches[len(g.batches)-1]))
	}
	mu.Lock()
	if len(done) != 11 {
		t.Errorf("%d callbacks ran before Flush returned; want 11", len(done))
	}
	mu.Unlock()
	for _, id := range ids {
		if e, err := g.Get(ctx, "alice@x", id); err != nil || e.ID != id {
			t.Fatalf("entry %d not stored under its given ID: %v", id, err)
		}
	}
	if s := w.Stats(); s.Entries != 11 || s.Batches != 2 || s.Pending != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestRetryThenFail: a failing batch is tried again and committed when
// the store comes back; one that keeps failing past RetryFor is reported
// to every callback and counted, never dropped silently.
func TestRetryThenFail(t *testing.T) {
	g := open(t)
	g.fail = 2
	w := groupcommit.New(g, groupcommit.Options{RetryFor: time.Minute, Logger: quiet})
	ctx := context.Background()
	res := make(chan error, 1)
	e := entry(1)
	if err := w.Add(ctx, e, func(_ int64, err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		<-g.started
		g.gate <- struct{}{}
	}
	if err := <-res; err != nil {
		t.Fatalf("after two failures and a success: %v", err)
	}
	if s := w.Stats(); s.Retries != 2 || s.Entries != 1 {
		t.Errorf("stats %+v", s)
	}
	w.Close(ctx)

	g2 := open(t)
	g2.fail = 1000
	w2 := groupcommit.New(g2, groupcommit.Options{RetryFor: time.Millisecond, Logger: quiet})
	go func() {
		for range g2.started {
			g2.gate <- struct{}{}
		}
	}()
	if err := w2.Add(ctx, entry(2), func(_ int64, err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err == nil {
		t.Fatal("a batch that kept failing was reported written")
	}
	if s := w2.Stats(); s.Failed != 1 {
		t.Errorf("stats %+v", s)
	}
	w2.Close(ctx)
}

// TestBackPressure: past MaxPending, Add waits for room and gives up when
// its context ends, without queueing the entry.
func TestBackPressure(t *testing.T) {
	g := open(t)
	w := groupcommit.New(g, groupcommit.Options{MaxPending: 2})
	ctx := context.Background()
	for i := range 2 {
		if err := w.Add(ctx, entry(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	<-g.started
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := w.Add(short, entry(3), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add past MaxPending = %v; want the context's deadline", err)
	}
	added := make(chan error, 1)
	go func() { added <- w.Add(ctx, entry(4), nil) }()
	g.gate <- struct{}{} // the first batch commits: room again
	<-g.started
	g.gate <- struct{}{}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	go func() {
		for range g.started {
			g.gate <- struct{}{}
		}
	}()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Entries != 3 {
		t.Errorf("%d entries written; want 3 (the refused one is not queued)", s.Entries)
	}
	w.Close(ctx)
	if err := w.Add(ctx, entry(5), nil); !errors.Is(err, groupcommit.ErrClosed) {
		t.Errorf("Add after Close = %v", err)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestAddNewCommitsInIDOrder: with IDs made as entries are queued, many
// goroutines adding at once still commit in ID order, so a reader paging
// by ID on this node never finds a later ID written before an earlier one.
func TestAddNewCommitsInIDOrder(t *testing.T) {
	g := open(t)
	w := groupcommit.New(g, groupcommit.Options{MaxBatch: 16})
	ctx := context.Background()
	go func() {
		for range g.started {
			g.gate <- struct{}{}
		}
	}()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, err := w.AddNew(ctx, storage.ArchiveEntry{Owner: "alice@x", Value: []byte("m")}, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close(ctx)
	var last int64
	n := 0
	for _, b := range g.batches {
		for _, e := range b {
			if e.ID <= last {
				t.Fatalf("ID %d committed after %d", e.ID, last)
			}
			last = e.ID
			n++
		}
	}
	if n != 800 {
		t.Errorf("%d entries committed, want 800", n)
	}
}
