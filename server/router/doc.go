// Package router decides where a stanza goes: to a plugin (IQs to the
// server or on a user's behalf), to local or remote sessions of a local user
// by the RFC 6121 delivery rules (through the cluster's routing table), to
// offline storage, or out over s2s. It also keeps the session registry and
// runs the RFC 6121 roster and presence logic.
//
// A domain a plugin serves (plugins.Service: conference.example.org, a
// subdomain of ours) is not another server's: every stanza to it or a JID
// at it, from a client, from s2s (FromRemote accepts it) or from the
// server, goes to the plugin's Handle (toService), whose refusal is
// bounced; an unclaimed subdomain goes to s2s as any other domain.
//
// Entry points: Bind/Unbind for session lifecycle, FromClient for stanzas a
// local session sent (its 'from' already stamped by the stream layer),
// FromRemote for stanzas from s2s, Route for stanzas the server itself sends.
//
// Files:
//
//	router.go        API, dispatch by 'to' (server, local user, service domain, other domain), bounces, interceptors
//	session.go       session records, Bind (conflict policies), Unbind/logout, route publishing, delivery
//	message.go       RFC 6121 §8.5 for messages and IQs; IQs from clients
//	presence.go      broadcast, probes, directed presence, outbound and inbound subscriptions
//	subscription.go  the Appendix A state machine and its storage transaction
//	roster.go        jabber:iq:roster get/set/remove, XEP-0237 versions, pushes
//	offline.go       XEP-0160 storage (quota in messages and bytes) with XEP-0203 stamps; fallbacks for gone sessions
//	offlineretry.go  messages kept in memory while offline storage does not answer, stored when it does (bounded; the sender's acknowledgement waits)
//	backlog.go       the offline queue and waiting subscription requests handed to a session as its client reads (Paced)
//	carbons.go       XEP-0280 sent/received copies
//	cluster.go       node-to-node "stanza" and "kick" messages, node-down cleanup, republishing and offline recheck on (re)join
//	custody.go       crash safety: copies kept on a second node until the recipient's client has them, rerouted when a node dies (CRASHSAFETY.md)
//	custody_resume.go  a failed resumption's h drops the copies its client had (each once for recipients)
//	custody_inbound.go resumable sessions' counts of client stanzas made safe, kept by a buddy: <failed h/> (each once for senders)
//	pendingiq.go     IQ requests forwarded to another node's session, answered with an error if that node dies first
//	errors.go        sentinels and the one mapping from internal errors to stanza errors
//	metrics.go       Prometheus routing-time histogram and outcome counters (Options.Registry)
//
// Addresses are wire.JID (parsed once per stanza, allocation-free for a
// JID already in canonical form); a JID that crosses an API (routes, the
// store, plugins) is its normalized string, whose bare part is
// wire.BareJID.
//
// Where state lives. Each local session has a record (available presence,
// priority, availability, interested-in-roster, carbons, directed-presence
// recipients) guarded by Router.mu, which is never held while calling out.
// Every change other nodes need is republished as the session's
// cluster.Route (Priority, Available, FlagRoster, FlagCarbons). Resolving a
// user's resources reads cluster.Routes while clustered (all nodes) and the
// local index otherwise (no other node is reachable then, so the shared
// table would only name unreachable sessions). Rosters, offline messages
// and last activity live in storage, keyed by the bare JID; every roster
// state change is one storage.Roster.UpdateRosterItem transaction, so two
// nodes never lose an update. Every storage call is bounded by
// database.timeout and every routing-table operation or call to another
// node by cluster.operation_timeout, so a stanza never hangs: a failure is
// answered internal-server-error, or resource-constraint when the store
// timed out (how an exhausted connection pool shows), see stanzaErrorFor.
// The exception is a message for offline storage when the database does
// not answer: it waits in memory until it does (offlineretry.go, bounded
// by c2s.offline_retry_max_bytes and c2s.offline_retry_max_wait), since
// its sender is often gone by then and would never see the error.
//
// Metrics. MetricRouteSeconds times each call of FromClient, FromRemote
// and Route by stanza kind (routing is synchronous, so the call ends when
// the stanza is queued, stored, handed to a link or s2s, bounced or
// dropped); MetricOutcomes counts one outcome per target. Label children
// are resolved in New, so the hot path stays allocation-free; the cost is
// two clock reads per routed stanza. MetricOfflineRetryWaiting,
// MetricOfflineRetryBytes, MetricOfflineRetries and
// MetricOfflineRetryGaveUp show messages waiting for offline storage.
//
// Node links carry stanzas as KindStanza messages in wire's binary
// encoding; "kick" messages log a session out on the node that owns it.
// A stanza whose node is gone (Send fails, or the cluster reports it
// undelivered) falls back as if its session had just ended: messages go to
// offline storage, IQ requests get service-unavailable, presence is dropped.
// With crash safety (cluster.crash_safety, the default) protected messages
// travel as KindHeld instead, and the sending node keeps a copy until the
// receiving node reports that the client acknowledged it; a message
// between two sessions of one node is deposited with a buddy node. A
// client's acknowledgement waits until its message is on two nodes, and
// when a node dies the survivors route their copies again. The design, the
// options weighed and the limits are in CRASHSAFETY.md. A node delivers
// the stanzas other nodes send it off the link's reader, in one queue per
// recipient (inbox.go), so a recipient whose interceptors wait holds up
// nobody else.
//
// Choices where the RFCs leave room:
//   - A chat or normal message to a bare JID goes to every available
//     resource sharing the highest non-negative priority.
//   - Subscription pre-approval (RFC 6121 §3.4) is not supported: an
//     outbound 'subscribed' without a pending request is ignored.
//   - Probes are sent from the full JID of the resource that became
//     available, so only it receives the answers; it also gets the current
//     presence of the user's other available resources.
//   - Initial presence marks the session available before the broadcast
//     and the offline hand-over (not after), and storing a message offline
//     re-checks availability after the commit: a message racing with a
//     login is delivered then, never left for the next login.
//   - Under c2s.resource_conflict=new_resource, Bind itself picks a fresh
//     resource and returns it (no ErrConflict round trip).
//   - When a node dies, every survivor sends unavailable presence on
//     behalf of its users only to its own local sessions (and the senior
//     node to other domains), so contacts get it exactly once without the
//     survivors coordinating. Directed-presence recipients of the dead
//     node's sessions are not known to survivors and get nothing.
//   - Presence of type error to a bare JID goes to every available
//     resource (it answers a subscription request, which left from the
//     bare JID); a presence type RFC 6121 does not define is refused with
//     bad-request from a client and dropped from elsewhere, never taken
//     for available presence.
//   - The offline queue is handed to a Paced session a portion at a time
//     (backlog.go); live messages to the user go straight to the session
//     meanwhile, so one may arrive before older offline ones (those carry
//     their XEP-0203 stamp). A message stored while the user has several
//     available resources of the best priority (a race with a login) goes
//     to one of them, whichever session's pump takes it.
//   - Limits RFC 6121 leaves to the server: c2s.roster_max_items rows
//     (not-allowed to the user, resource-constraint to a contact asking),
//     c2s.roster_max_item_bytes per item (not-acceptable, §2.3.3),
//     c2s.roster_max_pending waiting requests (resource-constraint); a full
//     offline queue is service-unavailable with a text, as in Prosody.
//   - Carbons: chat messages and normal messages with a body, unless they
//     carry <private xmlns='urn:xmpp:carbons:2'/> or <no-copy
//     xmlns='urn:xmpp:hints'/>.
//
// Interceptors. PointInbound runs on what a local session sends
// (FromClient) and also on presence the router sends on a user's behalf
// (presenceOut: each copy of a broadcast with its 'to', probe answers,
// login probes, unavailable presence at logout or node death), so a plugin
// such as XEP-0191 blocking sees every presence that leaves the account,
// wherever it goes (a local session, another node, s2s); an error there
// drops the copy without a bounce. PointDeliver runs before a stanza is
// queued on a local session, PointOffline before a message is stored,
// PointRemoteInbound on what s2s hands in, PointUserMessage once per
// message for a local account at the top of routeMessage (on the node that
// routes it; what arrives over a node link goes straight to deliverLocal,
// and a fallback to offline storage passes PointOffline only, so it runs
// exactly once per message and account cluster-wide). A probe delivered to a resource
// is answered by the router and passes no PointDeliver; its answer passes
// PointInbound. While a message from a stream-management session is routed
// (from its PointInbound on), the context carries its acknowledgement hold
// as a plugins.AckHolder: a plugin that writes something the client must
// not lose once acknowledged (the archive) holds the acknowledgement until
// its write is done (plugins.HoldAck; custody.go's holdSrc).
//
// The same element may be queued on several sessions (a message to a bare
// JID with tied priorities, a presence broadcast to one's own resources):
// sessions and PointDeliver interceptors must treat a delivered element
// as read-only.
package router
