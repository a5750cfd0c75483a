package router

import (
	"sync"
	"testing"
	"time"
)

// TestInboxOrderPerRecipient: what one recipient is sent is delivered in
// the order it came, and a recipient whose delivery waits (its block list
// still being read) holds up nobody else.
func TestInboxOrderPerRecipient(t *testing.T) {
	b := newLinkInbox()
	var mu sync.Mutex
	got := map[string][]int{}
	record := func(to string, i int) func() {
		return func() {
			mu.Lock()
			got[to] = append(got[to], i)
			mu.Unlock()
		}
	}
	release := make(chan struct{})
	go func() { // the link's reader
		b.run("slow@x/r", func() { <-release; record("slow@x/r", 0)() })
		for i := 1; i <= 100; i++ {
			b.run("slow@x/r", record("slow@x/r", i))
			b.run("fast@x/r", record("fast@x/r", i))
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n, slow := len(got["fast@x/r"]), len(got["slow@x/r"])
		mu.Unlock()
		if slow != 0 {
			t.Fatalf("the slow recipient's later stanzas overtook its first")
		}
		if n == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fast recipient got %d of 100 while the slow one waited: held up", n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(got["slow@x/r"])
		mu.Unlock()
		if n == 101 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for to, seq := range got {
		for i, v := range seq {
			want := i
			if to == "fast@x/r" {
				want = i + 1
			}
			if v != want {
				t.Fatalf("%s got %v: out of order", to, seq)
			}
		}
	}
	if len(got["slow@x/r"]) != 101 {
		t.Fatalf("slow recipient got %d of 101", len(got["slow@x/r"]))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queues) != 0 || len(b.slots) != 0 {
		t.Fatalf("after draining: %d queues, %d slots taken", len(b.queues), len(b.slots))
	}
}

// TestInboxBounded: past inboxSlots waiting stanzas the caller (the
// link's reader) waits for room.
func TestInboxBounded(t *testing.T) {
	b := newLinkInbox()
	release := make(chan struct{})
	for range inboxSlots {
		b.run("stuck@x/r", func() { <-release })
	}
	queued := make(chan struct{})
	go func() {
		b.run("other@x/r", func() {})
		close(queued)
	}()
	select {
	case <-queued:
		t.Fatal("a stanza was queued past the bound")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-queued:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader still waits after room was made")
	}
}
