package mam

import (
	"context"
	"errors"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
)

// Retention: mam.expire_after bounds every archive; an archive's owner
// may keep its messages for less (a group chat room, through its
// configuration form). The cluster's senior node runs Expire once an hour
// (server/chores.go), so every archive is expired by one node.

// Retention is implemented by a running plugin whose archives keep their
// messages for less than mam.expire_after, each owner its own time (the
// group chat service: a room's muc#roomconfig_archive_expires).
type Retention interface {
	plugins.Plugin
	// ArchiveRetention lists the owners that keep their messages for a
	// time of their own, and that time. It is asked once per Expire.
	ArchiveRetention(ctx context.Context) ([]OwnerRetention, error)
}

// OwnerRetention is how long one owner's archive keeps its messages.
type OwnerRetention struct {
	Owner string        // the archive's owner key ("conference.example.com/room")
	Keep  time.Duration // messages older than this go; 0 keeps the server's
}

// RetentionOf returns the running plugins of m that keep archives with a
// retention of their own; none before m started them (the node's chores
// start first, and a plugin not started has no store to read).
func RetentionOf(m *plugins.Manager) []Retention {
	if m == nil || m.Generation() == 0 {
		return nil
	}
	var out []Retention
	for _, p := range m.Plugins() {
		if r, ok := p.(Retention); ok {
			out = append(out, r)
		}
	}
	return out
}

// Expire deletes from the archive store what is older than expireAfter
// (every owner; 0 keeps everything) and, of each owner a Retention names,
// what is older than its own time when that is shorter. It returns how
// many messages it removed; an owner that fails does not stop the others.
func Expire(ctx context.Context, st storage.Archive, expireAfter time.Duration, now time.Time, rs []Retention) (int, error) {
	removed := 0
	var errs []error
	if expireAfter > 0 {
		n, err := st.DeleteBefore(ctx, "", now.Add(-expireAfter))
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range rs {
		owners, err := r.ArchiveRetention(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range owners {
			// An empty owner would be every archive (DeleteBefore's "").
			if o.Owner == "" || o.Keep <= 0 || (expireAfter > 0 && o.Keep >= expireAfter) {
				continue
			}
			n, err := st.DeleteBefore(ctx, o.Owner, now.Add(-o.Keep))
			removed += n
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}
