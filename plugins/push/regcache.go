package push

import (
	"context"
	"time"

	"github.com/aviary-im/aviary/plugins"
)

// Registrations in memory.
//
// Every message stored offline asks for its recipient's registrations,
// and most accounts have none: reading them from the database each time
// was one query per offline message (in a reconnection storm, where the
// users of a dead node are offline for a while, as many queries a second
// as there are messages for them). So each node keeps the lists it read,
// empty ones included, and the database is read again only when a list
// changed or grew old:
//
//   - an enable or disable answered by this node, or a registration the
//     app server dropped, forgets the owner's list here and tells the
//     other nodes (Host.Broadcast of eventRegistrations) before the IQ is
//     answered; a deleted account's list is forgotten the same way;
//   - a read that was under way when a list was forgotten is not kept
//     (it may be from before the change);
//   - as a safety net for a lost event (a node that could not be reached),
//     a list is read again once it is older than regCacheTTL.
//
// Bounded like the archive's preferences: past maxCachedRegs owners the
// cache starts again empty.

// eventRegistrations is the cluster event naming an owner whose
// registrations changed (the owner's bare JID as data).
const eventRegistrations plugins.Event = ID + ".registrations"

// The cache itself is plugins/internal/readcache; these are its bounds.
const (
	regCacheTTL   = time.Minute
	maxCachedRegs = 100000
)

// registrationsChanged forgets owner's list here and on every other node,
// waiting until each has.
func (p *Plugin) registrationsChanged(ctx context.Context, owner string) {
	p.regs.Forget(owner)
	if err := p.host.Broadcast(ctx, eventRegistrations, []byte(owner)); err != nil {
		p.host.Logger().Warn("push: a registration change not confirmed by every node; they read it again within a minute",
			"owner", owner, "err", err)
	}
}

// onRegistrationsChanged is another node's change.
func (p *Plugin) onRegistrationsChanged(ctx context.Context, payload any) error {
	if ev, ok := payload.(*plugins.ClusterEvent); ok && len(ev.Data) > 0 {
		p.regs.Forget(string(ev.Data))
	}
	return nil
}
