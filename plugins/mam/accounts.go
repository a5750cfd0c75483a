package mam

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/internal/readcache"
	"github.com/aviary-im/aviary/storage"
)

// accounts remembers which local accounts exist, so the recipient's copy
// of a message costs no database read per message: an account seen to
// exist is remembered for ttl, or until its deletion is announced on this
// node (EventUserDeleted); one that does not exist is asked again each
// time (messages to unknown accounts are rare and bounced anyway).
//
// An account known to exist past ttl is taken to exist while one read in
// the background checks again (a deletion anywhere is announced and
// forgets it at once; the ttl guards against a lost announcement), so a
// message does not wait for a database busy with a login storm.
type accounts struct {
	host plugins.Host
	ttl  time.Duration

	mu       sync.Mutex
	seen     map[string]time.Time        // bare JID → until when it is known to exist
	checking readcache.Refresher[string] // being read again in the background
}

func newAccounts(host plugins.Host, ttl time.Duration) *accounts {
	return &accounts{host: host, ttl: ttl, seen: map[string]time.Time{}}
}

func (a *accounts) exists(ctx context.Context, bare string) bool {
	now := time.Now()
	a.mu.Lock()
	until, ok := a.seen[bare]
	a.mu.Unlock()
	if ok && now.Before(until) {
		return true
	}
	if ok {
		a.recheck(bare)
		return true
	}
	return a.check(ctx, bare)
}

// recheck asks again in the background, once at a time per account.
func (a *accounts) recheck(bare string) {
	a.checking.Go(bare, a.host.Config().Database.Timeout, func(ctx context.Context) {
		local, _, _ := strings.Cut(bare, "@")
		_, err := a.host.Store().GetUser(ctx, local)
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case err == nil:
			a.seen[bare] = time.Now().Add(a.ttl)
		case errors.Is(err, storage.ErrNotFound):
			delete(a.seen, bare)
		} // unreachable: known as before, asked again at the next message
	})
}

// check reads whether the account exists and remembers it when it does.
func (a *accounts) check(ctx context.Context, bare string) bool {
	now := time.Now()
	local, _, _ := strings.Cut(bare, "@")
	if _, err := a.host.Store().GetUser(ctx, local); err != nil {
		// Unknown, or the store is unreachable: not archived (the router
		// bounces or stores the message on its own terms).
		return false
	}
	a.mu.Lock()
	if len(a.seen) >= maxCached {
		a.seen = map[string]time.Time{}
	}
	a.seen[bare] = now.Add(a.ttl)
	a.mu.Unlock()
	return true
}

func (a *accounts) deletedHook(_ context.Context, payload any) error {
	if ev, ok := payload.(*plugins.UserEvent); ok {
		a.mu.Lock()
		for bare := range a.seen {
			if local, _, _ := strings.Cut(bare, "@"); local == ev.Username {
				delete(a.seen, bare)
			}
		}
		a.mu.Unlock()
	}
	return nil
}
