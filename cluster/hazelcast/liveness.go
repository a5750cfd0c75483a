package hazelcast

import (
	"context"
	"errors"
	"time"
)

// A member entry that lapses is not proof of death.
//
// An entry lapses when its node's heartbeats do not reach Hazelcast for
// node_ttl: the node died, or Hazelcast (or the node's client) was too
// busy to take them. The second happens in exactly the moment a cluster
// can least afford a mistake: when a node dies, its clients reconnect to
// the others at once, each login writes a route, the survivors clean up
// the dead node's routes, and one Hazelcast member and the nodes' clients
// fall seconds behind. Measured on three nodes of one machine (issue 23):
// a survivor's heartbeats timed out, its entry lapsed, the other survivor
// buried it (removed its routes, sent unavailable presence for all its
// users), and it came back under a new incarnation, republishing every
// route while its sessions' binds waited: the cascade that turned a node
// crash into a cluster-wide reconnection.
//
// Two rules stop it:
//
//  1. A survivor that finds a member's entry gone first asks the member
//     itself over its node link (kindAlive, answered with its
//     incarnation). A node that answers with the same incarnation is
//     alive: it stays in the view, its routes stay, and it is asked again
//     at the next poll. A SIGKILLed node's link refuses at once; a hung
//     one does not answer within the operation timeout.
//  2. A node that finds its own entry gone claims its incarnation back
//     before it re-registers: PutIfAbsent of a revival marker under
//     aviary.down[inc], where a survivor that buries an incarnation first
//     records its routes (claimDead). Whoever writes first decides: the
//     node keeps its incarnation (nothing to republish, nothing to
//     announce), or the survivor has buried it and the node takes a new
//     one as before. A survivor that finds the marker leaves the routes
//     alone; if the node really is gone, the marker expires (revivalTTL)
//     and the survivor's retry buries it then.

// kindAlive is the link call a survivor makes to a member whose entry it
// no longer finds; the reply is the member's incarnation.
const kindAlive = "aviary.alive"

// revivalTTL is how long a revival marker holds off a survivor's cleanup.
// Long enough to cover a survivor's claim under way when the node revived
// (a query of the routes and a write); a node that dies right after
// reviving is buried this much later.
func (c *Cluster) revivalTTL() time.Duration { return 2 * c.cc.NodeTTL }

// revivalMarker is what a node that claimed its incarnation back leaves
// under aviary.down[inc] (a JSON object; the routes a survivor records
// there are a JSON array).
type revivalMarker struct {
	Revived string `json:"revived"` // the node's name
}

var errRevived = errors.New("cluster/hazelcast: the incarnation revived itself")

func (c *Cluster) handleAlive(ctx context.Context, from string, payload []byte) ([]byte, error) {
	return []byte(c.incarnation()), nil
}

// answersLink reports whether the member mr answers over its link with
// the incarnation mr names: alive, whatever its entry says.
func (c *Cluster) answersLink(ctx context.Context, mr memberRecord) bool {
	if mr.LinkAddr == "" {
		return false
	}
	cctx, cancel := c.opCtx(ctx)
	defer cancel()
	reply, err := c.links.Call(cctx, mr.Name, mr.LinkAddr, kindAlive, nil)
	return err == nil && string(reply) == mr.Inc
}

// reviveIncarnation claims this node's current incarnation back after its
// entry was found gone: true when no survivor has buried it (the node
// keeps it), false when one has (the node must take a new one).
func (c *Cluster) reviveIncarnation(ctx context.Context, o *hzObjs) (bool, error) {
	v, err := toJSON(revivalMarker{Revived: c.name})
	if err != nil {
		return false, err
	}
	old, err := o.down.PutIfAbsentWithTTL(ctx, c.incarnation(), v, c.revivalTTL())
	if err != nil {
		return false, err
	}
	if old == nil {
		return true, nil
	}
	var mk revivalMarker
	return fromValue(old, &mk) == nil && mk.Revived == c.name, nil
}

// isRevival reports whether a value under aviary.down is a revival marker.
func isRevival(v any) bool {
	var mk revivalMarker
	return fromValue(v, &mk) == nil && mk.Revived != ""
}
