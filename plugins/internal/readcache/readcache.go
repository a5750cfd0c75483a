// Package readcache keeps what a plugin read from the database, per key,
// for a while: a map with expiry and a bound, and Forget that also
// discards reads in flight.
//
// Plugins that read per-account state on every message (push's
// registrations, the archive's preferences) keep it in one of these and
// forget an account's entry on every node when it changes (Host.Broadcast
// before the change is answered); the expiry is the safety net for a
// node the change could not reach. A read that was under way when an
// entry was forgotten may be from before the change, so Put drops it:
// take Generation before reading, pass it to Put.
package readcache

import (
	"sync"
	"time"
)

// Cache holds values by key. Values are returned as stored: a caller
// that keeps slices or maps in it clones them itself. Safe for concurrent
// use.
type Cache[K comparable, V any] struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[K]entry[V]
	gen     uint64 // counts forgets: a read started before one is not kept
}

type entry[V any] struct {
	v   V
	exp time.Time
}

// New returns a cache whose entries live ttl; past max entries it starts
// afresh (cheap, and only a node with that many active keys within ttl
// gets there).
func New[K comparable, V any](ttl time.Duration, max int) *Cache[K, V] {
	return &Cache[K, V]{ttl: ttl, max: max, entries: map[K]entry[V]{}}
}

// Get returns k's value when it is known and fresh.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if !ok || !now.Before(e.exp) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Peek returns k's entry even past its ttl (fresh false then), for a
// caller that serves the old value while it reads a new one; ok is false
// when there is none (never read, forgotten, or dropped at the bound).
func (c *Cache[K, V]) Peek(k K) (v V, fresh, ok bool) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	return e.v, ok && now.Before(e.exp), ok
}

// Generation is taken before a read, for Put.
func (c *Cache[K, V]) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// Put keeps v, read since Generation returned gen, unless an entry was
// forgotten meanwhile.
func (c *Cache[K, V]) Put(k K, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.entries) >= c.max {
		c.entries = map[K]entry[V]{}
	}
	c.entries[k] = entry[V]{v: v, exp: time.Now().Add(c.ttl)}
}

// Forget drops k's entry, and makes reads under way not kept.
func (c *Cache[K, V]) Forget(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.entries, k)
}
