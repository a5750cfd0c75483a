package upload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// The domain's usage (upload.domain_quota). Every slot reserves its size
// out of one counter the cluster shares (the key/value store "upload",
// owner the service's domain, key "usage"), written with compare-and-set,
// so nodes handing out slots at once never pass the quota together. A
// ledger remembers each reservation (the map store "upload", owner
// "<service domain>/usage", one collection per account, one item per
// file: its size), so what a file reserved is given back exactly once
// (by whoever deletes its ledger item) when the file or unused slot is
// removed, and so the reservations of an account survive its deletion
// (the account's own items go with it) to be given back then: at once by
// the node that deletes it (EventUserDeleted), else by Reconcile.
//
// Each change of usage is two counter writes around one ledger write; the
// first marks the operation pending in the counter, the second ends it:
//
//	reserve: used += size, seq++ (the entry's number), pending += op
//	         → ledger item written (with seq)
//	         → pending -= op (and used -= size if the item was not written)
//	release: releases++, pending += op
//	         → ledger item deleted (only one releaser succeeds)
//	         → used -= size if this one deleted it and op is still pending,
//	           pending -= op
//
// A crash between the writes leaves usage too high, never too low: the
// quota stays safe. Reconcile recounts the ledger once an hour to take
// such bytes back. The recount reads the counter, sums the ledger items
// numbered up to the counter's seq, and writes used = sum + what changed
// since it read (later reservations carry larger numbers and are not in
// the sum). It goes ahead only when no operation was pending as it read
// (else an item could still be on its way) and no release started while
// it summed (a release deletes an item the sum may or may not have seen);
// otherwise it tries again next time. An operation pending for staleOp
// died with its node: the recount drops it, and its second write, should
// it come after all, changes nothing. (A reservation whose node stalled
// that long between its first two writes, and then wrote its item after
// the sum, is left out until the next recount: the one way the usage can
// be low, for an hour, by one file.)

const (
	usageKey = "usage"
	// staleOp is how long an operation may be pending before a recount
	// takes its node for dead. Its three writes take milliseconds.
	staleOp = 10 * time.Minute
	// orphanAge is how old a ledger item must be before Reconcile takes
	// its file for gone when the account has no such file: a slot's
	// reservation is written before its meta item.
	orphanAge = time.Hour
)

// counter is the value under usageKey.
type counter struct {
	Used     int64            `json:"used"`
	Seq      int64            `json:"seq"`
	Releases int64            `json:"releases"`
	Pending  map[string]int64 `json:"pending,omitempty"` // operation → when it began (Unix seconds)
}

// reservation is one item of the ledger.
type reservation struct {
	Size int64     `json:"size"`
	Seq  int64     `json:"seq"`
	At   time.Time `json:"at"`
}

// quotaError refuses a file for a quota, with the limit in its text:
// resource-constraint for a slot, 413 for a PUT.
type quotaError struct {
	what        string
	limit, used int64
}

func (e quotaError) Error() string {
	return fmt.Sprintf("%s of %d bytes reached (%d used)", e.what, e.limit, e.used)
}

var errRecountRaced = errors.New("upload: usage changed while it was recounted")

// ledgerOwner owns the ledger in the map store: not an account's JID, so
// deleting an account leaves it.
func (p *Plugin) ledgerOwner() string { return p.domain + "/usage" }

// DomainUsage returns the bytes the domain's files and live slots take,
// as counted against upload.domain_quota.
func (p *Plugin) DomainUsage(ctx context.Context) (int64, error) {
	c, err := p.counter(ctx)
	return c.Used, err
}

func (p *Plugin) counter(ctx context.Context) (counter, error) {
	var c counter
	e, err := p.index.Get(ctx, p.domain, usageKey)
	if errors.Is(err, storage.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(e.Value, &c)
}

// updateCounter changes the counter with compare-and-set; fn may run more
// than once, on a fresh copy each time.
func (p *Plugin) updateCounter(ctx context.Context, fn func(c *counter) error) error {
	return storage.UpdateKV(ctx, p.index, p.domain, usageKey, storage.Limits{}, func(old []byte, exists bool) ([]byte, bool, error) {
		var c counter
		if exists {
			if err := json.Unmarshal(old, &c); err != nil {
				return nil, false, err
			}
		}
		if err := fn(&c); err != nil {
			return nil, false, err
		}
		b, err := json.Marshal(c)
		return b, false, err
	})
}

func (c *counter) begin(op string, now time.Time) {
	if c.Pending == nil {
		c.Pending = map[string]int64{}
	}
	c.Pending[op] = now.Unix()
}

// end ends op and reports whether it was still pending (a recount drops
// an operation it took for dead).
func (c *counter) end(op string) bool {
	_, ok := c.Pending[op]
	delete(c.Pending, op)
	if len(c.Pending) == 0 {
		c.Pending = nil
	}
	return ok
}

func newOp() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reserve takes size bytes of the domain's quota for file id of owner, or
// refuses with a quotaError.
func (p *Plugin) reserve(ctx context.Context, owner, id string, size int) error {
	op, n := newOp(), int64(size)
	var seq int64
	err := p.updateCounter(ctx, func(c *counter) error {
		if q := int64(p.cfg.DomainQuota); q > 0 && c.Used+n > q {
			return quotaError{"domain upload quota", q, c.Used}
		}
		c.Used += n
		c.Seq++
		seq = c.Seq
		c.begin(op, p.Now())
		return nil
	})
	if err != nil {
		return err
	}
	b, _ := json.Marshal(reservation{Size: n, Seq: seq, At: p.Now()})
	_, ledgerErr := p.files.Set(ctx, p.ledgerOwner(), owner, id, b, storage.Limits{})
	err = p.updateCounter(context.WithoutCancel(ctx), func(c *counter) error {
		if c.end(op) && ledgerErr != nil {
			c.Used -= n
		}
		return nil
	})
	if ledgerErr != nil {
		return ledgerErr
	}
	if err != nil {
		// The bytes stay reserved; the next recount after staleOp ends
		// the operation.
		p.log.Warn("upload: ending a reservation", "id", id, "err", err)
	}
	return nil
}

// release gives back what file id of owner reserved, once whoever calls
// it.
func (p *Plugin) release(ctx context.Context, owner, id string) error {
	it, err := p.files.Get(ctx, p.ledgerOwner(), owner, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var r reservation
	if err := json.Unmarshal(it.Value, &r); err != nil {
		return err
	}
	op := newOp()
	if err := p.updateCounter(ctx, func(c *counter) error {
		c.Releases++
		c.begin(op, p.Now())
		return nil
	}); err != nil {
		return err
	}
	delErr := p.files.Delete(ctx, p.ledgerOwner(), owner, id)
	err = p.updateCounter(context.WithoutCancel(ctx), func(c *counter) error {
		if c.end(op) && delErr == nil {
			c.Used -= r.Size
		}
		return nil
	})
	if delErr != nil && !errors.Is(delErr, storage.ErrNotFound) {
		return delErr
	}
	return err
}

// holdReservation checks, before a PUT stores anything, that file id
// still holds its reservation (taking one again if it lost it) and that
// the domain is within its quota, which may have been lowered since the
// slot was handed out.
func (p *Plugin) holdReservation(ctx context.Context, owner, id string, size int) error {
	_, err := p.files.Get(ctx, p.ledgerOwner(), owner, id)
	if errors.Is(err, storage.ErrNotFound) {
		return p.reserve(ctx, owner, id, size)
	}
	if err != nil {
		return err
	}
	c, err := p.counter(ctx)
	if err != nil {
		return err
	}
	if q := int64(p.cfg.DomainQuota); q > 0 && c.Used > q {
		return quotaError{"domain upload quota", q, c.Used}
	}
	return nil
}

// removeOwner removes every file and slot the ledger holds for owner (an
// account that was deleted) and gives back what they reserved.
func (p *Plugin) removeOwner(ctx context.Context, owner string) error {
	items, err := p.files.List(ctx, p.ledgerOwner(), owner, storage.MapQuery{})
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := p.remove(ctx, owner, it.Key); err != nil {
			return err
		}
	}
	return nil
}

// userDeleted removes a deleted account's files at once, on the node
// that deleted it.
func (p *Plugin) userDeleted(ctx context.Context, payload any) error {
	ev, ok := payload.(*plugins.UserEvent)
	if !ok {
		return nil
	}
	if err := p.removeOwner(ctx, ev.Username+"@"+p.host.Domain()); err != nil {
		p.log.Warn("upload: removing a deleted account's files", "user", ev.Username, "err", err)
	}
	return nil
}

// Reconcile keeps the ledger and the domain's usage true: it removes the
// files of accounts deleted without this plugin hearing of it (aviary
// user delete runs no plugins) and gives back reservations whose files
// are gone, sweeps what unfinished uploads left, and recounts the usage.
// One node runs it, hourly, after Expire.
func (p *Plugin) Reconcile(ctx context.Context) error {
	owners, err := p.files.Collections(ctx, p.ledgerOwner())
	if err != nil {
		return err
	}
	for _, owner := range owners {
		if err := p.reconcileOwner(ctx, owner); err != nil {
			p.log.Warn("upload: reconciling an account's files", "owner", owner, "err", err)
		}
	}
	if err := p.store.sweep(ctx, orphanAge); err != nil {
		p.log.Warn("upload: sweeping unfinished uploads", "err", err)
	}
	for range 3 {
		err = p.recount(ctx)
		if !errors.Is(err, errRecountRaced) {
			return err
		}
	}
	p.log.Debug("upload: usage not recounted, it kept changing", "err", err)
	return nil
}

func (p *Plugin) reconcileOwner(ctx context.Context, owner string) error {
	_, err := p.host.Store().GetUser(ctx, wire.JIDOf(owner).Local())
	if errors.Is(err, storage.ErrNotFound) {
		return p.removeOwner(ctx, owner)
	}
	if err != nil {
		return err
	}
	ids, err := p.files.Collections(ctx, owner)
	if err != nil {
		return err
	}
	has := make(map[string]bool, len(ids))
	for _, id := range ids {
		has[id] = true
	}
	items, err := p.files.List(ctx, p.ledgerOwner(), owner, storage.MapQuery{})
	if err != nil {
		return err
	}
	cutoff := p.Now().Add(-orphanAge)
	for _, it := range items {
		var r reservation
		if has[it.Key] || json.Unmarshal(it.Value, &r) != nil || r.At.After(cutoff) {
			continue
		}
		// The account was deleted and made again, or a removal stopped
		// half way: the file is gone but its reservation is not.
		if err := p.remove(ctx, owner, it.Key); err != nil {
			return err
		}
	}
	return nil
}

// recount sets the usage to what the ledger holds (see the top of this
// file for why it may run while slots are handed out).
func (p *Plugin) recount(ctx context.Context) error {
	start, err := p.counter(ctx)
	if err != nil {
		return err
	}
	now := p.Now()
	for _, began := range start.Pending {
		if now.Sub(time.Unix(began, 0)) < staleOp {
			return errRecountRaced
		}
	}
	owners, err := p.files.Collections(ctx, p.ledgerOwner())
	if err != nil {
		return err
	}
	var sum int64
	for _, owner := range owners {
		items, err := p.files.List(ctx, p.ledgerOwner(), owner, storage.MapQuery{})
		if err != nil {
			return err
		}
		for _, it := range items {
			var r reservation
			if err := json.Unmarshal(it.Value, &r); err != nil {
				return fmt.Errorf("upload: ledger item %s of %s: %w", it.Key, owner, err)
			}
			if r.Seq <= start.Seq {
				sum += r.Size
			}
		}
	}
	err = p.updateCounter(ctx, func(c *counter) error {
		if c.Releases != start.Releases {
			return errRecountRaced
		}
		c.Used += sum - start.Used
		for op := range start.Pending {
			c.end(op) // dead: pending since before staleOp
		}
		return nil
	})
	if err == nil && sum != start.Used {
		p.log.Info("upload: domain usage recounted", "was", start.Used, "ledger", sum)
	}
	return err
}
