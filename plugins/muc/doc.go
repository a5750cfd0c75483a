// Package muc is group chat (XEP-0045 multi-user chat, with XEP-0410
// self-ping and XEP-0421 occupant ids): a service at conference.<domain>
// (muc.domain) whose rooms live on the whole cluster.
//
// # Files
//
//   - muc.go: the plugin; the service handler every node runs (it answers
//     the service's own disco and sends each room's stanzas to the room's
//     host), this node's index of its own sessions in rooms, and the
//     fan-out handler.
//   - room.go: a room's state, its persistence (the module key/value store
//     "muc", owner the service domain, key "room:<name>"), and what
//     placement asks of it: Rebuild, Release.
//   - presence.go: Handle; joining, presence updates, nickname changes,
//     leaving.
//   - message.go: groupchat messages, the subject, history on join,
//     private messages, mediated invitations and declines.
//   - iq.go: disco of a room, muc#admin (roles, affiliations, kick, ban),
//     muc#owner (configuration, destruction), self-ping.
//   - form.go: the muc#roomconfig form.
//   - archive.go: room archives and history through plugins/mam, and
//     moderators' retractions (XEP-0425).
//   - admin.go: what operators see (Rooms) and do (Destroy).
//   - register.go: registering a nickname with a room (§7.10, §7.12).
//   - deliver.go: the outbox that sends a room's stanzas once per node.
//   - bench_test.go: the fan-out benchmark.
//
// # On the cluster
//
// A room is hosted by one node at a time, its owner by rendezvous hashing
// over the live members (plugins/placement): the node where a stanza
// arrives dispatches it there, marked with the name of the node that holds
// the sender's session. The host sends what the room says once per node:
// one kindFanout message carrying each stanza and its recipients to every
// node with occupants, whose instance routes the copies to its own
// sessions; other domains' occupants are reached through the router
// (s2s). A node whose fan-out cannot be sent (it just died) is handled by
// routing each copy through the router.
//
// Each node keeps an index of its own sessions in rooms, built from what
// rooms deliver to them (a room's presence with status 110 about the
// session, or an unavailable one), so it holds confirmed occupants only,
// and the nicks it was told are present. A host's fan-out reaches a node
// before any question the host asks it later (plugins.Cluster.Call), so
// a room that emptied and is created again at once (a user leaves a
// temporary room and joins it again) is not rebuilt around an occupant
// whose leave the node has not yet seen. When a room's host dies,
// placement names a new one, which rebuilds the room from the store
// (persistent rooms: configuration, affiliations, subject) and from every
// node's index (kindWho): the occupants on surviving nodes are still in
// the room, with the roles the room last gave them (a moderator's voice
// or devoice is not stored: each node keeps it from the room's
// self-presences), and notice nothing but a delay; nicks some node knew of whose
// sessions no node reports left with the dead node, and everyone gets
// their unavailable presence. When a node that held sessions dies, the
// rooms hosted elsewhere drop them the same way (OnMembersChange). A
// graceful move (a join, a drain, Stop) hands the whole room over
// (Release), history and roles included. Only the last node to stop (or a
// node with clustering off) has nobody to hand its rooms to: before its
// sessions close it sends each occupant's sessions their own unavailable
// presence with 110 and 332 (removed because the service shuts down) and
// empties the rooms (SessionsClosing, the first step of a node's Stop).
//
// # Clustering switched off and on
//
// With the switch off every node hosts the rooms its own users are in, a
// copy each; the copies tell their occupants that the other nodes'
// occupants left. When the switch comes back on, placement hands the
// copies to one host, which merges their occupants and history and
// tells every occupant again who is in the room. A message from a node
// whose copy had not merged yet finds its sender missing: the host asks
// the sender's node (kindWho) and takes the sender back in.
//
// # Limits
//
// muc.max_occupants bounds a room, muc.message_rate an occupant, and
// muc.max_rooms_per_user the rooms one account may own when it creates
// another (roomLimit): the host of the room being created claims a slot
// in the user's list of created rooms in the store ("owned:<bare JID>",
// compare-and-swap, so rooms hosted on every node count and two hosts
// cannot both give the last slot). A room that is gone (destroyed, a
// temporary room emptied) leaves its owners' lists; when a list is full
// its entries are checked against the stored rooms, and those whose room
// is gone or no longer names the user owner stop counting, once they are
// older than claimGrace (a reserved room is stored only when configured).
// An account's first claim lists its rooms from the whole store once
// (BenchmarkOwnedRooms: about 0.3 s for 1,000 rooms on PostgreSQL); a
// claim after that (BenchmarkClaimRoom) costs 0.1-0.2 ms.
//
// # Cost
//
// BenchmarkGroupchatFanout: one message to a room of 1,000 occupants over
// three in-memory nodes costs its host about 8-10 ms and 7,000
// allocations (wall time on the shared 2-core test machine, with the two
// receiving nodes' work running alongside): one fan-out message per other
// node, a copy per recipient only on the node that delivers it.
//
// # What a crash loses
//
// Every room's configuration, affiliations and subject are in the store
// (a temporary room's until it empties), and with the message archive
// running (xep0313.mam) every message is archived under the room: a new
// host after a crash has the room as configured and takes its history
// from the archive. The roles a moderator gave (voice in a moderated
// room) are not stored: each node keeps the role the room last gave each
// of its sessions, and a new host takes them back from there (kindWho).
// Without the archive the history starts again. A room still locked (created, not yet
// configured) is stored locked: after a crash it is still its owner's
// to configure, closed to everyone else. Messages in flight to the dead host
// wait for the new one (placement; at-least-once: one may be delivered
// and archived twice).
//
// # Choices where XEP-0045 leaves room
//
//   - A join with the MUC element to a room that does not exist creates a
//     locked room (reserved, §10.1.3) that only its owner enters until
//     the owner submits the configuration form (an empty form makes it an
//     instant room); a join without it (groupchat 1.0) creates an instant
//     room.
//   - Who may create rooms: muc.create (local users by default).
//   - The domain's administrators are owners of every room they join or
//     configure from this domain.
//   - IQs to an occupant's room JID are passed on from the sender's
//     room JID (vCard requests to the occupant's account, the rest to its
//     first session) and the answers come back; the forwarded id carries
//     the asker, so the room keeps no state for them. A ping to one's own
//     occupant JID is answered by the room (XEP-0410).
//   - Every occupant may send this many messages a second
//     (muc.message_rate, muc.message_burst): past it, resource-constraint.
//   - Operators list rooms and destroy them through Plugin.Rooms and
//     Plugin.Destroy (admin.go).
//   - A room's owner may have its archive keep messages for less than
//     the server does: muc#roomconfig_archive_expires, in seconds (0,
//     the default: as long as mam.expire_after keeps every archive),
//     shown in the configuration form while the message archive runs. A
//     value above mam.expire_after is refused with not-acceptable: a
//     room may keep less than the operator's limit, never more. No XEP
//     or other server names such a field; the name follows the
//     muc#roomconfig_ prefix Prosody and ejabberd use for their archive
//     switches. It is stored with the room's configuration, so it moves
//     with the room, and the cluster's senior node applies it once an
//     hour (ArchiveRetention, mam.Expire). An emptied temporary room is
//     gone from the store, so what its archive kept is then bound by
//     mam.expire_after only.
package muc
