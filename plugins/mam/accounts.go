package mam

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
)

// accounts remembers which local accounts exist, so the recipient's copy
// of a message costs no database read per message: an account seen to
// exist is remembered for ttl, or until its deletion is announced on this
// node (EventUserDeleted); one that does not exist is asked again each
// time (messages to unknown accounts are rare and bounced anyway).
type accounts struct {
	host plugins.Host
	ttl  time.Duration

	mu   sync.Mutex
	seen map[string]time.Time // bare JID → until when it is known to exist
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
