package readcache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestGetPutForget(t *testing.T) {
	c := New[string, int](time.Hour, 10)
	if _, ok := c.Get("a"); ok {
		t.Fatal("empty cache has a")
	}
	c.Put("a", 1, c.Generation())
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("a = %d, %v", v, ok)
	}
	// A read that started before a Forget is not kept: it may be from
	// before the change the Forget announces.
	gen := c.Generation()
	c.Forget("b")
	c.Put("a", 2, gen)
	if v, _ := c.Get("a"); v != 1 {
		t.Errorf("a read from before a forget replaced the entry: %d", v)
	}
	c.Forget("a")
	if _, ok := c.Get("a"); ok {
		t.Error("a after Forget")
	}
}

func TestExpiryAndBound(t *testing.T) {
	c := New[string, int](time.Millisecond, 2)
	c.Put("a", 1, c.Generation())
	time.Sleep(5 * time.Millisecond)
	if _, ok := c.Get("a"); ok {
		t.Error("a past its ttl")
	}
	c = New[string, int](time.Hour, 2)
	for i, k := range []string{"a", "b", "c"} {
		c.Put(k, i, c.Generation())
	}
	if _, ok := c.Get("a"); ok {
		t.Error("past the bound the cache did not start afresh")
	}
	if v, ok := c.Get("c"); !ok || v != 2 {
		t.Errorf("c = %d, %v", v, ok)
	}
}

func TestPeekPastTTL(t *testing.T) {
	c := New[string, int](time.Millisecond, 10)
	if _, _, ok := c.Peek("a"); ok {
		t.Fatal("empty cache has a")
	}
	c.Put("a", 1, c.Generation())
	if v, fresh, ok := c.Peek("a"); !ok || !fresh || v != 1 {
		t.Fatalf("a = %d, fresh %v, ok %v", v, fresh, ok)
	}
	time.Sleep(5 * time.Millisecond)
	if v, fresh, ok := c.Peek("a"); !ok || fresh || v != 1 {
		t.Fatalf("past its ttl a = %d, fresh %v, ok %v; want 1, stale", v, fresh, ok)
	}
	c.Forget("a")
	if _, _, ok := c.Peek("a"); ok {
		t.Fatal("a after Forget")
	}
}

func TestRefresherOneAtATime(t *testing.T) {
	var r Refresher[string]
	release := make(chan struct{})
	var reads atomic.Int64
	read := func(ctx context.Context) {
		reads.Add(1)
		<-release
	}
	for range 5 {
		r.Go("a", time.Minute, read)
	}
	r.Go("b", time.Minute, read)
	if n := r.Running(); n != 2 {
		t.Fatalf("%d reads running, want one for a and one for b", n)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for r.Running() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reads did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2", n)
	}
}
