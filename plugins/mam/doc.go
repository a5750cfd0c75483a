// Package mam is the message archive: XEP-0313 Message Archive Management
// (urn:xmpp:mam:2 and #extended) on every account's bare JID, XEP-0359
// stanza ids, XEP-0441 preferences, XEP-0424 retraction tombstones, and an
// API a group-chat service uses to keep one archive per room.
//
// Files:
//
//	mam.go      the plugin: settings, lifecycle, interceptors, disco
//	archive.go  Archive, the per-owner API (accounts here; rooms later)
//	policy.go   what is archived (content rules) and stanza-id stamping
//	query.go    the query IQ: form, RSM, results, fin, metadata
//	prefs.go    preferences (XEP-0441) kept on each node, changes broadcast
//	retract.go  XEP-0424: the retracted message becomes a tombstone
//	offline.go  offline hand-over vs. MAM catch-up (no message twice)
//	expire.go   retention: mam.expire_after and each room's own (Expire)
//	delete.go   a user deletes their own archive (an ad-hoc command)
//
// # Who writes which copy
//
// One copy per account, written by exactly one node:
//
//   - The sender's copy at PointInbound, on the node of the sender's
//     session (every stanza a client sends passes it once, whatever its
//     transport: TCP, BOSH or WebSocket all hand stanzas to the router's
//     FromClient).
//   - The recipient's copy at PointUserMessage, which the router runs once
//     per message for a local account on the node that routes it, before
//     it picks resources or offline storage. A message to a user on
//     another node is archived on the sending node and travels over the
//     node link already stamped; the receiving node's deliverLocal and
//     its fallback to offline storage do not pass PointUserMessage again,
//     and neither does a message handed over from offline storage. A
//     message from another domain enters at one node's s2s stream and is
//     routed (and archived) there.
//
// So each message is archived once per account cluster-wide: a sender on
// node 1 writing to a recipient on node 2 gets two entries, both written by
// node 1, one in each archive.
//
// # IDs and delivery
//
// The archive ID of the recipient's copy is made before delivery
// (storage.NewArchiveID) and stamped on the message as
// <stanza-id by='recipient@domain' id='…'/>, so the live copy, every
// carbon and the offline copy carry the ID a later MAM query returns. The
// sender's copy is stamped <stanza-id by='sender@domain'/> at
// PointInbound, before the sent carbons are made, so the sender's other
// devices learn it too. Stanza ids that claim any JID of this domain are
// removed from what clients and other servers send (XEP-0359 §4); origin
// ids are kept.
//
// The write itself goes through storage/groupcommit: entries made while a
// batch is committing go together in the next batch (one transaction),
// and delivery does not wait for the disk. A MAM query first flushes this
// node's queue, so a client reads its own messages. On one node the
// writer makes each ID as it queues the entry (groupcommit.AddNew), so
// entries commit in ID order and paging "after the last ID I saw" never
// skips one. Across nodes, IDs come from each node's clock and a message
// another node routed a moment ago may still be in that node's queue (one
// batch: milliseconds), so it can commit after an entry with a later ID
// that a query already returned. Such a message was routed within
// milliseconds of the query; it reached the client live, or it waits in
// offline storage, which the catch-up rule below does not swallow (it
// skips only IDs the client was actually sent).
//
// # Acknowledged means archived
//
// A node that dies loses what its writer had queued and not yet committed
// (at most one batch and what piled up behind it: milliseconds of
// traffic). So that no client is told a message is safe while its archive
// entry is not, the acknowledgement waits for the write, not the
// delivery: when the router offers plugins.HoldAck while it routes a
// message (a client with XEP-0198 stream management sent it; the same hold
// crash safety's copies take, server/router/CRASHSAFETY.md), addStamped
// takes a hold for each copy it queues and releases it in the write's
// done callback. Both copies the sending node writes count: the sender's
// at PointInbound and a local recipient's at PointUserMessage (on the
// sending node, whatever node the recipient is on). The cost is the
// acknowledgement's latency (one group commit: a batch, not a transaction
// per message); delivery and carbons never wait. aviary_mam_acks_held
// counts the holds waiting for a commit.
//
// A write that fails is released all the same, after the writer's retries
// (groupcommit RetryFor, 30s), logged and counted in
// aviary_mam_failed_total: the message itself is safe with the router,
// and a broken archive must not stall the client's stream. A message the
// writer could not even queue (saturated past database.timeout) is neither
// archived nor held. Not covered, because no acknowledgement waits for
// them: messages from clients without stream management, messages that
// arrive over s2s (the recipient's copy, written by the node of the s2s
// stream), room archives (group chat's Add passes no hold), tombstones
// (retraction, moderation) and deletions. And the recipient's live copy
// may carry a stanza-id whose entry a node killed before the commit never
// wrote: the sender was not acknowledged, resends after resuming, and the
// resent message is archived under a new ID (at least once, as crash
// safety promises for delivery).
//
// # What goes in
//
// Messages of type chat and normal with content: a body, an encrypted
// payload (OMEMO, legacy OMEMO, OpenPGP, XEP-0380 encryption), a
// correction, a retraction, a reaction, a chat marker, an invitation, a
// Jingle message; or the XEP-0334 <store/> hint. Not: type groupchat (the
// room archives those), headline, error; chat states and receipts alone;
// messages with <no-store/> or <no-permanent-store/>; MAM results and
// carbons themselves. Preferences (always / never / roster with per-JID
// lists, default mam.default) are applied per account: the sender's to
// its copy, the recipient's to its copy.
//
// # Offline messages and catch-up
//
// A message stored offline is also in the archive with the same stanza-id.
// A client that queries the archive before it sends its initial presence
// (the catch-up order Conversations, Dino and Monal use) is remembered on
// its node with the IDs the queries returned to it; when its presence then
// triggers the offline hand-over, offline messages whose stanza-id it
// already received are not delivered again (they leave the offline queue
// all the same). Messages it did not page through still come. This is
// ejabberd's behaviour (mod_offline skips what a session fetched through
// MAM before its presence) made exact: by ID, not by "MAM was used".
//
// # Rooms (for the group-chat module)
//
// A group-chat service keeps one archive per room through the same API the
// accounts use, with the room's owner key ("conference.example.com/room",
// see storage.Modules) so it is never mistaken for an account:
//
//	p := mam.Lookup(manager)          // the running plugin (nil when disabled)
//	arch := p.Rooms()                 // *mam.Archive over the store "mam"
//	owner := "conference.example.com/room"
//	// Once per room message, before the broadcast: stamp the ID on it.
//	if id := arch.Add(ctx, owner, occupantJID, msg, nil); id != 0 {
//		mam.StampID(msg, "room@conference.example.com", id)
//	}
//	// A MAM query IQ sent to the room's JID: results go to the querier,
//	// from the room's JID; the return value is the IQ result's <fin/>.
//	fin, err := arch.Query(ctx, owner, "room@conference.example.com", iq)
//	arch.Tombstone(ctx, owner, id, tomb)     // XEP-0425 moderation
//	arch.DeleteOwner(ctx, owner)             // the room was destroyed
//
// Add makes the ID and queues the write (group commit) and returns before
// the write; Query flushes first, sends the <result/> messages to the
// querier through the host's router (from the room's JID) and returns the
// IQ result with <fin/>.
//
// # Retention
//
// mam.expire_after bounds every archive, accounts' and rooms'. A plugin
// whose archives keep their messages for less, each owner its own time,
// implements Retention (group chat: a room's owner sets
// muc#roomconfig_archive_expires, at most mam.expire_after). Expire
// applies both; the cluster's senior node runs it once an hour
// (server/chores.go), so one node of the cluster expires every archive,
// and another takes over at its next tick when the senior dies.
//
// # A user deletes their own archive
//
// XEP-0313 defines no deletion. Account deletion deletes the archive
// (the store's DeleteUser, and clearArchive for what this node still had
// queued). Short of that, a user runs the XEP-0050 ad-hoc command
// "Delete my message archive" (node urn:xmpp:mam:2#delete-archive) on
// the server's JID, listed under the commands node of its disco#items to
// the domain's users, through xep0050.adhoc: a first execute returns a
// confirmation form (a boolean field "confirm"); the form submitted with
// confirm=1 deletes every message archived for the sender's account
// before the command, and anything else deletes nothing. The contacts'
// copies stay, and so do room archives. The node that runs it writes its
// own queue and deletes, then tells every other node, which writes its
// queue and deletes the same, before the user hears back; what is
// archived after the command stays. If a node does not confirm, the
// command still completes, with a warning note.
package mam
