package readcache

import (
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
