// Package hazelcast is the clustered cluster.Cluster: membership and the
// session routing table live in a Hazelcast cluster (reached with
// hazelcast-go-client), stanzas travel over direct node-to-node links
// (cluster/link), and the cluster-wide switch lives in PostgreSQL.
//
// # Constructing it
//
// The server builds it from the node's configuration when
// cluster.hazelcast is set, and uses cluster/local otherwise. The node
// owns its links (cluster/link): this package only tells them who is a
// member and at which address.
//
//	links := link.FromConfig(cfg.Cluster, logger)     // the node's; closed by the node
//	c, err := hazelcast.NewWithOptions(hazelcast.Options{Cluster: cfg.Cluster,
//		Properties: store, Links: links, Logger: logger}) // store: storage.Properties
//	c.Handle(kind, handler) ...                  // message kinds (on the links)
//	c.OnNodeDown(...); c.OnClusteredChange(...); c.OnMembersChange(...); c.OnUndelivered(...)
//	err = c.Start(ctx)                           // listens (if the links do not yet), connects, registers
//	defer links.Close(); defer c.Stop(ctx)       // goodbye: routes and membership removed
//
// Without Options.Links the cluster makes and closes its own. Options
// also exposes the knobs tests shorten (object-name prefix, switch poll
// interval, replica resync period).
//
// # What is stored in Hazelcast
//
// Only JSON (HazelcastJsonValue) values and string keys, so the Java
// members never need Aviary classes. Object names start with "aviary.".
//
//   - aviary.members (IMap): node name → {Member fields, "inc", "clustered"},
//     written by the node itself every cluster.heartbeat_interval with a
//     TTL of cluster.node_ttl (PutWithTTL). "inc" names the incarnation:
//     name#registration-nanos. It changes whenever the node registers anew.
//   - aviary.routes (IMap): full JID → {Route fields, "bare", "inc"},
//     written only by the owning node, with hash indexes on "bare" and "inc".
//   - aviary.down (IMap): incarnation → JSON list of the routes it had
//     when it was found dead (10 minute TTL). See "A node dies".
//   - aviary.switch (topic): "re-read the switch now" hints.
//
// # Membership and seniority
//
// Every node polls the member map at each heartbeat (pull, one GetEntrySet
// round trip) instead of trusting events, and computes:
//
//   - alive: entries present (Hazelcast expires silent ones after the TTL)
//     whose "seen" time keeps changing; a value that stays the same for
//     node_ttl by our own clock counts as dead, so clock skew between nodes
//     does not matter;
//   - visible: alive and "clustered" (its switch is on). Only visible nodes
//     are used: Send/Call to others fail with cluster.ErrNodeGone, and
//     their routes are ignored;
//   - senior: this node is senior when no alive member started earlier (ties
//     broken by name). Disabled nodes still count. A node that runs alone
//     (switch off, or Hazelcast unreachable since it started) calls itself
//     senior, so the chores it runs (expiring offline messages, ...) must
//     be idempotent; a detached node (below) keeps what it last computed.
//
// Heartbeats run on their own goroutine, so slow work elsewhere (a large
// republish, callbacks) never delays them. Hazelcast keeps expiry times in
// whole seconds, so an entry may expire up to a second before node_ttl:
// keep node_ttl at least a few heartbeats plus a second (the defaults, 2s
// and 10s, leave ample room).
//
// A node whose heartbeat finds its own entry gone (Hazelcast lost its data,
// or the others took it for dead during a long pause) takes a new
// incarnation and republishes everything (see "Losing Hazelcast").
//
// # Routes: the local index, write-through and the replica
//
// Each node keeps its own routes in a local index, the authority for its
// own sessions. While clustered, PutRoute/DeleteRoute write through to
// aviary.routes (one Set or Delete; striped locks keep the order per JID);
// a failed write is retried at the next heartbeat and the session keeps
// working. On every join (start, switch on, Hazelcast regained) the node
// reconciles under an exclusive lock: it deletes entries of its incarnation
// that the index no longer has, then PutAlls the whole index.
//
// Routes(bare) answers from a local replica of aviary.routes, so a lookup
// costs no round trip (about 4µs against 235µs for one indexed query on
// "bare" with a real member; see BenchmarkRoutes). Presence fan-out is the
// reason: a login broadcasts to every contact, and one query per contact
// would make Hazelcast the bottleneck. The replica is kept by an entry
// listener and converges because:
//
//  1. the listener is registered (synchronously, afresh on every join)
//     before the snapshot is read, and events are buffered meanwhile;
//  2. the snapshot (GetEntrySet) is applied, then every buffered event in
//     arrival order; Hazelcast delivers the events of one key in order (the
//     client's event executor is striped by partition) and each event
//     carries the full value, so each key ends at its latest value;
//  3. any lost event is repaired by a fresh snapshot every minute
//     (Options.ResyncEvery) and after a map clear; losing the Hazelcast
//     connection drops the replica and the next join rebuilds it.
//
// Other nodes' writes show up after the event's latency (about a
// millisecond on a LAN). That alone would let an effect overtake its
// cause: a node raises a resource's priority and broadcasts the presence
// over its link; the presence arrives before the event, and a contact
// who answers at once is routed by the old priority. So the owner also
// announces each write over its links once Hazelcast has it (dirty.go);
// links are FIFO, so the receiver handles the announcement first and,
// until the event arrives, answers Routes for that bare JID with one
// query (TestCauseBeforeEffect fails without this). Routes of incarnations that are not visible are
// filtered out (a node seen for the first time is looked up once), and
// this node's own routes always come from its index. Options.NoRouteCache
// switches to the indexed query (one round trip per call).
//
// # A node dies
//
// Survivors notice a silent node when its member entry expires (node_ttl
// after its last heartbeat) or stops changing, at their next poll: at most
// node_ttl + heartbeat_interval, 12s with the defaults (the SIGKILL test
// sees about 1s with a 1.5s TTL). Each survivor then, for the dead
// incarnation:
//
//  1. reads aviary.down[inc]; if absent, queries the routes with that
//     "inc" and stores them there with PutIfAbsent: the first survivor's
//     list becomes the canonical one, so a survivor that looks after the
//     routes were removed still learns them;
//  2. removes every route of that incarnation (RemoveAll by "inc";
//     idempotent, every survivor may do it);
//  3. closes its link to the node (queued Sends go to OnUndelivered) and
//     runs OnNodeDown(node, routes) once, on every survivor, with the same
//     routes.
//
// Who tells the contacts: every survivor gets the routes, and each one
// sends unavailable presence on behalf of those full JIDs to the contacts
// it hosts itself (its own local sessions); the senior alone also does
// what involves no local session, such as contacts on other domains over
// s2s. No contact gets two unavailables from two survivors, and no
// survivor needs to know another's sessions. Messages sent afterwards to
// those users find no route and go to offline storage.
//
// Node names are unique among live nodes: Start refuses (ErrNameInUse) a
// node whose name another node is still heartbeating under, watched for
// two heartbeat intervals; an entry that stays unchanged is a previous
// run's. A node restarted within the TTL under the same name comes back
// with a new incarnation; survivors treat the old one as dead as above, and the
// routes of the new one are untouched. The senior also sweeps: routes
// whose incarnation has no member entry on two sweeps in a row (say, a
// node that died while every other node was disconnected) are cleaned up
// the same way.
//
// # Losing Hazelcast
//
// The client reconnects for ever (cluster.startup_retries and
// cluster.startup_retry_interval only bound the wait in Start; after that
// the node runs alone and keeps trying in the background).
//
// A node that was clustered when Hazelcast went away detaches (Detached()
// true) instead of leaving: it stays clustered on what it last knew. Its
// links stay up, Members returns the members last seen, Routes answers
// from the route replica as it was (never asking Hazelcast, so no stanza
// waits for an operation timeout), and messages between users of
// different nodes keep being delivered live over the links. Route writes
// only touch the local index; each is announced with its route over the
// links (the same announcement as above, which then carries the route),
// and a detached receiver applies it to its replica, so logins, logouts
// and priority changes on other nodes keep routing right. No callback
// runs: the router's users keep their contacts. A node that dies
// meanwhile is noticed by its link (Send fails with ErrNodeGone, queued
// messages come back through OnUndelivered) and its users' messages are
// stored offline.
//
// When Hazelcast is back (possibly a restarted member that lost
// everything) the node re-registers first (its heartbeat finds its entry
// gone, so it takes a new incarnation), then republishes its index,
// rebuilds the replica from a fresh snapshot and runs
// OnClusteredChange(true). The router then delivers what other nodes
// stored offline for its still-online users (a node that rejoined before
// this one could not see its routes yet), looks once more 2s later,
// republishes presence and probes contacts. The same rejoin, without a
// lost connection, follows a heartbeat that finds the node's entry gone
// (the others took it for dead during a long pause): they may have sent
// unavailable presence on behalf of its users, and the republished
// presence corrects that.
//
// Known limits: while detached the node cannot tell a dead member from a
// slow one except through its link, so contacts of a member that dies
// during the outage get no unavailable presence (its routes are gone
// when Hazelcast restarted empty); and two nodes that rejoin a second or
// two apart store the messages sent between them in that window offline
// (delivered by the router's recheck above, with a delay stamp).
//
// # The cluster-wide switch
//
// The switch is cluster.Switch: the property "cluster.enabled" in
// storage.Properties (PostgreSQL); unset means on. PostgreSQL is the only
// source of truth: nodes learn of a change in three ways, each of which
// only triggers a re-read of the property:
//
//   - LISTEN/NOTIFY (storage.PropertyListener, implemented by
//     storage/postgres: SetProperty notifies in the same statement): every
//     node hears it in milliseconds (about 30ms in TestSwitchPostgres,
//     three nodes with their own connections);
//   - the aviary.switch topic, published by AnnounceSwitch (the admin
//     console, through its node) and PublishSwitch (`aviary cluster
//     enable|disable` when given --hazelcast): a second fast path that
//     still works where NOTIFY does not (a pooler in transaction mode);
//   - a re-read every second (Options.SwitchPoll), the safety net that
//     alone meets the 2 second target if both pushes are lost.
//
// Re-reading rather than trusting the pushed value means a stale, lost or
// forged message cannot flip the switch, and all paths behave the same.
//
// Switch off, each node: reads the other visible nodes' routes, stops
// writing through, drops the replica, sets Clustered() false, runs
// OnClusteredChange(false) and then OnNodeDown(node, routes) for each node
// it saw (so its router tells local users that remote contacts went
// offline). It keeps its member entry (with "clustered": false, shown by
// `aviary cluster status`) and leaves its routes in Hazelcast for nodes
// that have not switched yet; those nodes see it leave their visible set
// and run OnNodeDown with its routes too. While off, route changes only
// touch the local index: Hazelcast trouble cannot slow logins. The node
// links stay up while the switch is off: Send and Call still reach every
// live member (it keeps polling the member map), so BOSH requests that a
// balancer without stickiness sends to a node that does not own their
// session are still forwarded to the owner. Only a node found dead, or
// Hazelcast lost, closes its links. Switch on:
// the node reconciles (stale entries of its incarnation removed, index
// republished), rebuilds the replica and runs OnClusteredChange(true); the
// router republishes presence and probes remote contacts.
//
// # Node links
//
// The node's (Options.Links), see cluster/link: one outbound TCP
// connection per peer, authenticated by an HMAC-SHA256 challenge-response
// over fresh nonces with the shared
// cluster.secret, bound to both node names (a connection meant for another
// node, or from a node with another secret, is refused); length-prefixed
// frames (type, correlation id, kind, payload); one writer goroutine per
// peer batching queued frames into one writev; a bounded queue (4096
// frames) on which Send blocks until its context ends (back-pressure);
// reconnect with backoff (100ms doubling to 5s, during which Send fails
// at once with ErrNodeGone); Call correlates replies by id and fails with
// ErrNodeGone when the link drops. The receiver acknowledges handled
// frames once per read batch, and Sends that were queued but not written,
// or written but not acknowledged, when the link dies go to OnUndelivered
// (cluster.Undelivered) so the router can store them offline: a stanza is
// never lost silently, at worst delivered and also stored (a duplicate).
// Links are authenticated, not encrypted: keep cluster.listen on a
// private network.
//
// # Goroutines and locks
//
// One loop goroutine runs every state change (heartbeat, poll, joins,
// leaves, cleanup, sweep), so transitions never race each other. Callbacks
// run in order on one events goroutine, never under a lock, so they may
// call back into the Cluster. OnMembersChange runs after the
// OnClusteredChange and OnNodeDown callbacks of the same poll, whenever
// the visible members' names, incarnations or draining flags (this node's
// own included, at UpdateSelf) or Clustered changed.
//
// Lock order: syncMu → stripe → ownMu; pendingMu, viewMu, selfMu, hzMu,
// negMu, cbMu are leaves.
package hazelcast
