package c2s

import "sync"

// Limits on streams that have not authenticated. Anyone can open one, so
// what it may cost is bounded before authentication: 2,000 idle
// connections from one address, each holding a partial stanza under the
// full 256 KiB limit, took 1 GB.
//
//   - Each element is bounded by c2s.preauth_max_stanza_bytes (16 KiB by
//     default) until SASL succeeds, on transports that can change their
//     bound (TCP, WebSocket; a BOSH request has its own body limit). A
//     SCRAM or PLAIN message is a few hundred bytes; SASL2's
//     <authenticate/> with Bind 2 and stream management inline is under
//     2 KiB; a registration form is smaller still.
//   - One client address may hold c2s.max_unauthenticated_per_address
//     such streams (32 by default) on this node; the next one gets
//     policy-violation after its header. Streams count from the moment
//     they are accepted until they authenticate or close, whatever
//     carries them (TCP, BOSH, WebSocket).

// stanzaLimiter is implemented by transports whose element size bound
// can change between elements (TCP, WebSocket).
type stanzaLimiter interface {
	SetMaxStanzaBytes(n int)
}

// preAuthTable counts each address's streams that have not authenticated.
type preAuthTable struct {
	mu sync.Mutex
	n  map[string]int
}

// enter counts a new stream from addr. It returns false, counting
// nothing, when addr already has limit streams (limit -1: no limit; 0 is
// only seen where defaults were not applied, also no limit). release
// uncounts it; it may be called more than once.
func (p *preAuthTable) enter(addr string, limit int) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if limit > 0 && p.n[addr] >= limit {
		return func() {}, false
	}
	if p.n == nil {
		p.n = map[string]int{}
	}
	p.n[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.n[addr]--; p.n[addr] <= 0 {
				delete(p.n, addr)
			}
			p.mu.Unlock()
		})
	}, true
}

// count returns how many streams addr has that have not authenticated.
func (p *preAuthTable) count(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[addr]
}
