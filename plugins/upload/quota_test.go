package upload_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/storage"
)

// TestDomainQuota: two accounts fill the domain's quota with a file and a
// slot; the next slot of either is refused with the limit in the text,
// although romeo's own quota has room. An unused slot that expires and a
// deleted account give their bytes back.
func TestDomainQuota(t *testing.T) {
	f := start(t, func(c *conf.UploadConfig) {
		c.MaxFileSize, c.UserQuota, c.DomainQuota, c.SlotTimeout = 2000, 2500, 3000, time.Minute
	})
	ctx := context.Background()
	if err := f.h.Users().CreateUser(ctx, "juliet", "pw"); err != nil {
		t.Fatal(err)
	}
	put, get := f.mustSlot("romeo", "a.txt", 2000)
	if w := f.do("PUT", put, make([]byte, 2000)); w.Code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	f.mustSlot("juliet", "b.txt", 1000)
	if got := f.usage(); got != 3000 {
		t.Errorf("usage %d, want 3000", got)
	}
	_, _, err := f.slotFor("juliet", "c.txt", 1)
	refusedFor(t, err, "domain upload quota of 3000 bytes reached (3000 used)")
	_, _, err = f.slotFor("romeo", "d.txt", 500)
	refusedFor(t, err, "domain upload quota of 3000 bytes reached")

	f.clock.add(2 * time.Minute) // juliet's slot ends unused
	if n, err := f.p.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	if got := f.usage(); got != 2000 {
		t.Errorf("usage after the slot expired: %d, want 2000", got)
	}
	f.mustSlot("juliet", "e.txt", 1000)
	_, _, err = f.slotFor("juliet", "f.txt", 1)
	refusedFor(t, err, "domain upload quota of 3000 bytes reached")

	if err := f.h.Users().DeleteUser(ctx, "romeo"); err != nil {
		t.Fatal(err)
	}
	if got := f.usage(); got != 1000 {
		t.Errorf("usage after romeo was deleted: %d, want 1000", got)
	}
	if w := f.do("GET", get, nil); w.Code != http.StatusNotFound {
		t.Errorf("GET of a deleted account's file: %d", w.Code)
	}
	f.mustSlot("juliet", "g.txt", 1500) // romeo's 2000 bytes are free again
}

// TestDomainQuotaAcrossNodes: two nodes over one PostgreSQL database hand
// out slots to two accounts at once, far more than the domain's quota
// holds; exactly as many as fit are given, and every refusal names the
// limit.
func TestDomainQuotaAcrossNodes(t *testing.T) {
	const quota, size, each = 10_000, 1000, 6
	a, b := twoNodes(t, sharedStore(t), func(c *conf.UploadConfig) { c.MaxFileSize, c.DomainQuota = size, quota }, nil)
	var granted atomic.Int64
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for _, f := range []*fixture{a, b} {
		for _, user := range []string{"romeo", "juliet"} {
			for i := range each {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-begin
					err := f.ask(user, fmt.Sprintf("f%d.txt", i), size)
					if err == nil {
						granted.Add(1)
						return
					}
					refusedFor(t, err, fmt.Sprintf("domain upload quota of %d bytes reached", quota))
				}()
			}
		}
	}
	close(begin)
	wg.Wait()
	if got := granted.Load(); got != quota/size {
		t.Errorf("%d slots given, want %d", got, quota/size)
	}
	if got := a.usage(); got != quota {
		t.Errorf("usage %d, want %d", got, quota)
	}
}

// TestPutPastDomainQuota: a PUT gets 413 with the limit when the domain
// is past its quota (node b came back with a lower one), and when its
// slot lost its reservation and the domain has no room to take it again;
// Reconcile recounts what a lost reservation left counted.
func TestPutPastDomainQuota(t *testing.T) {
	st := sharedStore(t)
	a, b := twoNodes(t, st, func(c *conf.UploadConfig) { c.MaxFileSize, c.DomainQuota = 2000, 3000 },
		func(c *conf.UploadConfig) { c.MaxFileSize, c.DomainQuota = 2000, 2500 })
	ctx := context.Background()
	put, _ := a.mustSlot("romeo", "a.txt", 2000)
	putJ, _ := a.mustSlot("juliet", "b.txt", 1000)
	w := b.do("PUT", put, make([]byte, 2000))
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "domain upload quota of 2500 bytes reached (3000 used)") {
		t.Errorf("PUT through b: %d %s", w.Code, w.Body)
	}
	if w := a.do("PUT", put, make([]byte, 2000)); w.Code != http.StatusCreated {
		t.Fatalf("PUT through a: %d %s", w.Code, w.Body)
	}

	// juliet's slot loses its reservation (a removal that stopped half
	// way, or a slot older than the ledger): the counter still has it.
	if err := st.Map("upload").Delete(ctx, "upload.example.com/usage", "juliet@example.com", fileID(t, putJ)); err != nil {
		t.Fatal(err)
	}
	w = a.do("PUT", putJ, make([]byte, 1000))
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "domain upload quota of 3000 bytes reached (3000 used)") {
		t.Errorf("PUT without its reservation into a full domain: %d %s", w.Code, w.Body)
	}
	if err := a.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.usage(); got != 2000 {
		t.Fatalf("usage after the recount: %d, want 2000", got)
	}
	if w := a.do("PUT", putJ, make([]byte, 1000)); w.Code != http.StatusCreated {
		t.Fatalf("PUT after the recount: %d %s", w.Code, w.Body)
	}
	if got := a.usage(); got != 3000 {
		t.Errorf("usage after the PUT took its reservation again: %d, want 3000", got)
	}
}

// TestReconcileDeletedAccount: an account deleted without the plugin
// hearing of it (`aviary user delete` runs no plugins) keeps its bytes
// counted until Reconcile gives them back; an account deleted and made
// again gets them back once its reservations are old enough to be
// orphans.
func TestReconcileDeletedAccount(t *testing.T) {
	f := start(t, func(c *conf.UploadConfig) { c.MaxFileSize, c.DomainQuota = 1000, 1000 })
	ctx := context.Background()
	f.mustSlot("romeo", "a.txt", 1000)
	if err := f.h.St.DeleteUser(ctx, "romeo"); err != nil { // the store alone: no hook runs
		t.Fatal(err)
	}
	if err := f.h.Users().CreateUser(ctx, "juliet", "pw"); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.slotFor("juliet", "b.txt", 1)
	refusedFor(t, err, "domain upload quota of 1000 bytes reached (1000 used)")
	if err := f.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.usage(); got != 0 {
		t.Fatalf("usage after reconciling: %d", got)
	}
	f.mustSlot("juliet", "b.txt", 1000)

	// juliet is deleted and made again before any reconciling.
	if err := f.h.St.DeleteUser(ctx, "juliet"); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Users().CreateUser(ctx, "juliet", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.usage(); got != 1000 {
		t.Fatalf("a reservation younger than an hour was taken for an orphan: usage %d", got)
	}
	f.clock.add(2 * time.Hour)
	if err := f.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.usage(); got != 0 {
		t.Fatalf("usage after the orphan was reconciled: %d", got)
	}
}

// TestRecountDuringTraffic: while two nodes hand out slots, slots expire
// (given back by the next request of their owner or by Expire) and
// Reconcile recounts, the usage stays what the files and slots take: a
// recount never loses or doubles a change made while it ran. Each round
// hands out slots after its last recount (a recount of a quiet domain
// would hide what the ones before it got wrong) and then compares.
func TestRecountDuringTraffic(t *testing.T) {
	st := sharedStore(t)
	a, b := twoNodes(t, st, func(c *conf.UploadConfig) { c.MaxFileSize, c.SlotTimeout = 1000, time.Minute }, nil)
	ctx := context.Background()
	for round := range 10 {
		done := make(chan struct{})
		var wg sync.WaitGroup
		for g, f := range []*fixture{a, b, a, b} {
			user := []string{"romeo", "juliet"}[g%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					if err := f.ask(user, fmt.Sprintf("r%d-g%d-%d.txt", round, g, i), 1+rand.IntN(1000)); err != nil {
						t.Error(err)
					}
					if i%5 == 4 {
						f.clock.add(10 * time.Second) // earlier slots end
					}
					select {
					case <-done:
						if i >= 3 {
							return
						}
					default:
					}
				}
			}()
		}
		for range 3 {
			if _, err := b.p.Expire(ctx); err != nil {
				t.Error(err)
			}
			if err := b.p.Reconcile(ctx); err != nil {
				t.Error(err)
			}
		}
		close(done)
		wg.Wait()
		if got, want := a.usage(), slotBytes(t, st); got != want {
			t.Fatalf("round %d: usage %d, the slots take %d", round, got, want)
		}
	}
}

// slotBytes is what the files and slots of romeo and juliet take: the
// sizes in every meta item left, whatever its state.
func slotBytes(t *testing.T, st storage.Store) int64 {
	t.Helper()
	ctx := context.Background()
	var sum int64
	m := st.Map("upload")
	for _, owner := range []string{"romeo@example.com", "juliet@example.com"} {
		ids, err := m.Collections(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			it, err := m.Get(ctx, owner, id, "meta")
			if err != nil {
				t.Fatal(err)
			}
			var meta struct{ Size int64 }
			if err := json.Unmarshal(it.Value, &meta); err != nil {
				t.Fatal(err)
			}
			sum += meta.Size
		}
	}
	return sum
}
