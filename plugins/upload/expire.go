package upload

import (
	"context"
	"errors"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// Expiry keeps two time-ordered indexes under the service's domain in the
// archive store "upload": one entry per slot, dated by when the slot
// ends, and one per finished upload, dated by when it finished; each
// entry's With is the owner and its value the file's ID. Once an hour the
// node that owns the key "expire" (one node of the cluster, another when
// it leaves) removes the slots that ended unused, and, with
// upload.expire_after, the files older than that, then reconciles the
// ledger and the domain's usage (quota.go). Each entry is looked at once:
// it is deleted with what it stands for, or kept for the next pass when
// removing that failed.

const (
	expireInterval = time.Hour
	expireBatch    = 500
	slotsIndex     = "upload-slots"
	filesIndex     = "upload-files"
)

// indexOwner names one of the two indexes of the service's domain.
func (p *Plugin) indexOwner(which string) string { return p.domain + "/" + which }

// record adds a file to an index.
func (p *Plugin) record(ctx context.Context, which, owner, id string, when time.Time) error {
	_, err := p.byTime.Append(ctx, storage.ArchiveEntry{Owner: p.indexOwner(which), With: owner, When: when, Value: []byte(id)})
	return err
}

// expireLoop runs Expire every expireInterval on the node that owns the
// chore, until ctx ends.
func (p *Plugin) expireLoop(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(expireInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c := p.host.Cluster()
		if c.Owner("expire") != c.NodeName() {
			continue
		}
		if _, err := p.Expire(ctx); err != nil {
			p.log.Warn("upload: expiring files", "err", err)
		}
		if err := p.Reconcile(ctx); err != nil {
			p.log.Warn("upload: reconciling files and usage", "err", err)
		}
	}
}

// Expire removes the slots that ended unused and the files older than
// upload.expire_after, and returns how many files and slots it removed.
func (p *Plugin) Expire(ctx context.Context) (int, error) {
	now := p.Now()
	removed := 0
	// A finished upload's slot entry stands for nothing any more, nor
	// does one whose slot a PUT moved on (it has a later entry).
	n, err := p.expireIndex(ctx, slotsIndex, now, func(m meta) bool { return !m.Done && now.After(m.Expires) })
	removed += n
	if err != nil || p.cfg.ExpireAfter <= 0 {
		return removed, err
	}
	n, err = p.expireIndex(ctx, filesIndex, now.Add(-p.cfg.ExpireAfter), func(meta) bool { return true })
	return removed + n, err
}

// expireIndex deletes the entries of one index dated before cutoff, and
// the files of those that remove accepts.
func (p *Plugin) expireIndex(ctx context.Context, which string, cutoff time.Time, remove func(meta) bool) (int, error) {
	removed := 0
	for {
		page, err := p.byTime.Query(ctx, p.indexOwner(which), storage.ArchiveQuery{End: cutoff, Limit: expireBatch})
		if err != nil {
			return removed, err
		}
		for _, e := range page.Entries {
			id := string(e.Value)
			m, err := p.meta(ctx, e.With, id)
			switch {
			case errors.Is(err, storage.ErrNotFound): // gone with its account
			case err != nil:
				return removed, err
			case remove(m):
				if err := p.remove(ctx, e.With, id); err != nil {
					return removed, err // the entry stays for the next pass
				}
				removed++
			}
			if err := p.byTime.Delete(ctx, p.indexOwner(which), e.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return removed, err
			}
		}
		if len(page.Entries) < expireBatch {
			return removed, nil
		}
	}
}
