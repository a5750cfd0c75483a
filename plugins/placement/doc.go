// Package placement runs a plugin's keyed state (group chat rooms, pubsub
// nodes, a component's sessions) on one node of the cluster at a time: the
// key's owner, chosen by rendezvous hashing over the live, non-draining
// members (plugins.Cluster.Owner), so every node agrees without asking.
// A module gives it three functions (Module: Rebuild, Handle, Release);
// everything else is here.
//
//	p := placement.New(placement.Options{
//		Cluster: host.Cluster(), Module: rooms, Name: "rooms",
//		Route: host.Route, LocalKeys: rooms.joinedHere,
//	})
//	p.Start()
//	...
//	// in the service's Handle, on whichever node the stanza arrived:
//	p.Dispatch(ctx, roomOf(el.To()), el)
//
// # What it guarantees
//
//   - One host per key, as far as the members agree: Handle runs for a
//     key only on the node that owns it by its own view, and a node that
//     stops owning a key releases it before it handles or forwards
//     anything more for it. While views differ (for a heartbeat or two
//     after a change) a node that is asked to handle a key it does not own
//     says so, and the sender waits for the views to meet.
//   - Serial per key: Handle, Rebuild and Release for one key never run
//     at the same time on a node; Handle sees a key's stanzas in the order
//     this node dispatched them (stanzas from different nodes interleave).
//     Different keys run in parallel, one goroutine per busy key.
//   - Nothing is lost silently. Dispatch queues the stanza and returns; a
//     stanza for another node is forwarded with a Call that returns once
//     the owner's Handle ran. When the owner dies with stanzas in flight,
//     the Call fails; the stanzas wait (they are not bounced) until the
//     cluster names a new owner (cluster.node_ttl), and go there. What
//     waits longer than Options.MoveTimeout is bounced to its sender with
//     remote-server-timeout, which clients show; a key's queue past
//     Options.QueueLimit bounces new stanzas with resource-constraint.
//     The price is at-least-once across a crash: a stanza the dead owner
//     handled but did not confirm is handled again by the new one.
//   - Handled once or bounced once, also under overload. A forwarded
//     stanza travels with the time left until its deadline; the owner
//     does not start it past that deadline but answers, per stanza, that
//     it did not handle it, and only the sender bounces it. The sender
//     waits for that answer a grace period past the deadline (MoveTimeout
//     / 4, at most 10s) and, while the owner is a live member, even after
//     the key moved (the old owner forwards what it still holds). Before
//     this, an owner with a long queue handled what its sender had
//     already bounced, and a sender that gave up on a busy owner after a
//     membership change sent the same stanzas to the new owner: both were
//     seen by the thousand in a three-node group chat benchmark.
//   - Rebuild before use: the first stanza for a key on its new owner
//     waits for Rebuild, which gets the state the previous holders handed
//     over (Release on a node that stopped owning the key: after a join,
//     a drain, clustering switched back on, or Stop). After a crash there
//     is none, and Rebuild reads the store and asks the nodes that hold
//     the sessions involved (plugins.Cluster.CallAll).
//   - Eager moves: when membership changes, a node that hosts keys it no
//     longer owns releases them and tells the new owner, and every node
//     tells the new owner of each key in Options.LocalKeys whose owner
//     changed (after a crash nobody else knows the key exists), so the
//     state is rebuilt before the next stanza, and Rebuild can notice who
//     is gone (occupants whose sessions died with the node).
//
// Owners follow the members the cluster reports. While a node is detached
// from Hazelcast (cluster/hazelcast: it lost its connection and routes on
// what it last knew) membership does not change, so a member that dies
// then is not replaced: its keys' stanzas wait and bounce after
// MoveTimeout until Hazelcast is back.
//
// With clustering off (or on one node) every key is owned here: each node
// hosts the keys its own users use. When clustering comes back on, the
// other nodes release their copies and the owner rebuilds from all of
// them at once: its own copy (Release) first, then the others', in one
// Rebuild, for the module to merge.
//
// # What a module must do
//
//   - Keep each key's state only between Rebuild and Release, and make
//     Release return everything the next owner needs that is not in the
//     store (nil when the store has it all).
//   - Make Rebuild accept any number of handed-over states (0 after a
//     crash, several after the switch comes back on) and merge them with
//     the store; when it needs to know which sessions on which nodes are
//     involved, keep a per-node index where the sessions are (each node's
//     instance sees its own sessions' stanzas before Dispatch) and ask
//     every node with Cluster.CallAll; a member that does not answer in
//     time is reported in its Answer, and its sessions are best treated
//     as gone.
//   - Tolerate a stanza handled twice after a crash (deduplicate by stanza
//     id where it matters).
//   - Call Start from the plugin's Start and Stop from its Stop. Stop
//     hands every hosted key to its next owner and forwards what is still
//     queued; the node should drain first (balance) so others stop sending.
//
// # Messages
//
// Five kinds, namespaced by the plugin (plugins.Cluster) and Options.Name:
// "deliver.v2" (Call: a key and a batch of stanzas, each with the time
// left until its deadline; the owner answers, once each is handled or
// past its deadline, which it did not handle, or that it is not the
// owner), "deliver" (its predecessor without deadlines, still answered
// and used towards a node that has no deliver.v2, during a rolling
// upgrade), "take" (Call to every
// member: hand over what you hold for a key), "adopt" (Send: you own this
// key now) and "give" (Call at Stop: keep this handed-over state for the
// key's next owner).
package placement
