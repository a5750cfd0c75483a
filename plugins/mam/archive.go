package mam

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/groupcommit"
	"github.com/aviary-im/aviary/wire"
)

// Archive is the message archive of many owners over one archive store,
// written through a group-commit writer: the accounts' archives (owner =
// bare JID) and, through the same calls, a group-chat service's rooms
// (owner = "service/room"). Safe for concurrent use.
type Archive struct {
	host    plugins.Host
	store   storage.Archive
	w       *groupcommit.Writer
	maxPage int
	// acksHeld counts the clients' acknowledgements waiting for an
	// archive write to commit (addStamped).
	acksHeld atomic.Int64
}

// Add archives a message for owner (with: the other party's bare JID, what
// queries filter on) and returns its archive ID at once; the write is
// queued (group commit) and done, when not nil, runs once it committed or
// failed. It returns 0 when the write could not even be queued (the writer
// is saturated past ctx's deadline, or stopped); the message then stays
// out of the archive and must not be stamped.
func (a *Archive) Add(ctx context.Context, owner, with string, msg *wire.Element, done groupcommit.Done) int64 {
	e := storage.ArchiveEntry{Owner: owner, With: with, Value: stored(msg)}
	id, err := a.w.AddNew(ctx, e, func(id int64, err error) {
		if err != nil {
			a.host.Logger().Error("mam: archiving a message failed", "owner", owner, "err", err)
		}
		if done != nil {
			done(id, err)
		}
	})
	if err != nil {
		a.host.Logger().Warn("mam: message not archived: the archive writer is saturated", "owner", owner, "err", err)
		return 0
	}
	return id
}

// addStamped archives msg for owner and stamps <stanza-id by='by'/> on it.
// When the client that sent msg counts on acknowledgements (XEP-0198, the
// router offers plugins.HoldAck while it routes the message), its
// acknowledgement waits until this write committed: a node killed after
// the client saw the message acknowledged has it in the archive. A write
// that fails (logged by Add, after the writer's retries) releases the
// acknowledgement all the same: the message itself is safe with the
// router, and a broken archive must not stall the client's stream.
func (a *Archive) addStamped(ctx context.Context, owner, with, by string, msg *wire.Element) {
	// Bound the wait for room in the writer's queue: a saturated database
	// must slow routing down, not stop it.
	actx, cancel := context.WithTimeout(ctx, a.host.Config().Database.Timeout)
	defer cancel()
	var done groupcommit.Done
	release := plugins.HoldAck(ctx)
	if release != nil {
		a.acksHeld.Add(1)
		done = func(int64, error) {
			a.acksHeld.Add(-1)
			release()
		}
	}
	id := a.Add(actx, owner, with, msg, done)
	if id == 0 {
		if done != nil {
			done(0, nil) // not queued: nothing to wait for
		}
		return
	}
	StampID(msg, by, id)
}

// Flush waits until every message this node queued so far is written.
func (a *Archive) Flush(ctx context.Context) error { return a.w.Flush(ctx) }

// Get returns one archived message, as stored (XML), with its time.
func (a *Archive) Get(ctx context.Context, owner string, id int64) (*wire.Element, time.Time, error) {
	e, err := a.store.Get(ctx, owner, id)
	if err != nil {
		return nil, time.Time{}, err
	}
	el, err := parseStored(e.Value)
	return el, e.When, err
}

// Tombstone replaces an archived message (XEP-0424 retraction, XEP-0425
// moderation); ErrNotFound when there is none.
func (a *Archive) Tombstone(ctx context.Context, owner string, id int64, tomb *wire.Element) error {
	return a.store.Update(ctx, owner, id, tomb.Bytes())
}

// DeleteOwner removes an owner's whole archive (a destroyed room).
func (a *Archive) DeleteOwner(ctx context.Context, owner string) (int, error) {
	if err := a.Flush(ctx); err != nil {
		return 0, err
	}
	return a.store.DeleteOwner(ctx, owner)
}

// DeleteBefore removes an owner's messages older than t that are written
// (not what this node still has queued: Flush first for that).
func (a *Archive) DeleteBefore(ctx context.Context, owner string, t time.Time) (int, error) {
	return a.store.DeleteBefore(ctx, owner, t)
}

// Query answers a MAM query IQ (type set) for the archive of owner, whose
// address is archiveJID (the account's bare JID, or the room's JID): it
// sends a <result/> message per archived message to the querier
// (iq's 'from') through the host's router, and returns the IQ result
// payload: <fin/> with the RSM set. Errors are stanza errors.
func (a *Archive) Query(ctx context.Context, owner, archiveJID string, iq *wire.Element) (*wire.Element, error) {
	res, _, err := a.queryAs(ctx, owner, archiveJID, iq)
	return res, err
}

// Metadata answers <metadata/> (#extended): the first and last entry.
func (a *Archive) Metadata(ctx context.Context, owner string) (*wire.Element, error) {
	if err := a.Flush(ctx); err != nil {
		return nil, err
	}
	md := wire.NewNS("metadata", NS)
	first, err := a.store.Query(ctx, owner, storage.ArchiveQuery{Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(first.Entries) == 0 {
		return md, nil
	}
	last, err := a.store.Query(ctx, owner, storage.ArchiveQuery{Limit: 1, Last: true})
	if err != nil {
		return nil, err
	}
	for _, x := range []struct {
		name string
		e    storage.ArchiveEntry
	}{{"start", first.Entries[0]}, {"end", last.Entries[0]}} {
		md.Append(wire.New(x.name, "id", storage.FormatArchiveID(x.e.ID), "timestamp", stamp(x.e.When)))
	}
	return md, nil
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

func parseStored(b []byte) (*wire.Element, error) {
	el, err := wire.Parse(b, wire.Limits{MaxStanzaBytes: len(b) + 1024})
	if err != nil {
		return nil, errors.Join(errors.New("mam: stored message unreadable"), err)
	}
	return el, nil
}
