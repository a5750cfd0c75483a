// Package cluster is how nodes of one domain find each other and share who
// is online where. cluster/local serves one node with no external service;
// cluster/hazelcast shares routes and membership through a Hazelcast
// cluster (the only package that imports its client). Stanzas travel over
// the node's direct links (cluster/link): the node owns them, the cluster
// implementation says who is a member and where its links listen.
//
// The cluster-wide switch (switch.go) lives here, on storage.Properties
// (PostgreSQL in a cluster): Switch follows it on every node, ReadSwitch
// and WriteSwitch are what the admin console and `aviary cluster` use.
//
// The package speaks bytes, not stanzas: the router serializes a stanza and
// names a kind; the node on the other end hands the bytes to the handler
// registered for that kind. That keeps cluster below server in the import
// graph and lets BOSH forwarding and admin queries use the same links.
package cluster

import (
	"context"
	"time"
)

// Route says where one full JID is connected. Only the owning node writes it.
type Route struct {
	JID       string `json:"jid"`  // full JID
	Node      string `json:"node"` // owning node's name
	Priority  int    `json:"prio"`
	Available bool   `json:"avail"` // sent initial presence, not yet unavailable
	// Flags carry per-session switches other nodes need when they deliver:
	// FlagRoster (requested the roster, gets pushes), FlagCarbons.
	Flags uint32 `json:"flags,omitempty"`
}

// Route flags.
const (
	FlagRoster  uint32 = 1 << iota // the resource requested its roster (RFC 6121 "interested")
	FlagCarbons                    // the resource enabled message carbons (XEP-0280)
)

// Member is one live node as the cluster sees it.
type Member struct {
	Name     string    `json:"name"`
	LinkAddr string    `json:"link"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Sessions int       `json:"sessions"`
	Load     float64   `json:"load"` // 0..1, the node's own estimate
	Draining bool      `json:"draining"`
	// Shedding: the node is over its admission rates (c2s.max_logins_per_second
	// and the like) and sends new clients elsewhere; the dispatcher and the
	// other nodes do not name it until it has caught up.
	Shedding bool `json:"shedding,omitempty"`
	// StanzasIn and StanzasOut are the node's client stanza rates per
	// second, for the admin console's cluster-wide figures.
	StanzasIn  float64 `json:"in_per_sec,omitempty"`
	StanzasOut float64 `json:"out_per_sec,omitempty"`
	// ClientAddrs are the node's public listener addresses, for redirects
	// and the dispatcher: keys "c2s", "c2s_tls", "http", "https".
	ClientAddrs map[string]string `json:"addrs,omitempty"`
	// Features name what the node's version understands on the links
	// beyond the first release's message kinds, so that during a rolling
	// upgrade a node sends a new kind only to nodes that handle it (a Send
	// of a kind without a handler is dropped): "custody" (the router's
	// crash safety, server/router/CRASHSAFETY.md).
	Features []string  `json:"features,omitempty"`
	Seen     time.Time `json:"seen"`
}

// MemberStatus is one live node as the shared member directory lists it,
// whatever its switch: what `aviary cluster status` prints.
type MemberStatus struct {
	Member
	// Inc is the node's incarnation (name#registration-nanos).
	Inc string `json:"inc"`
	// Clustered is false while the node's switch is off.
	Clustered bool `json:"clustered"`
	// Senior marks the oldest live member.
	Senior bool `json:"senior"`
}

// LinkStats are the counters of one node's links to the other nodes, for
// metrics and the admin console. The traffic counters cover every frame
// after the handshake, on the connections the node dialled and on those
// it accepted, acknowledgements included; they only grow.
type LinkStats struct {
	// Peers is how many nodes this node has an outbound link to.
	Peers int
	// FramesSent and BytesSent count frames written (Sends, Calls,
	// replies, acknowledgements) and their bytes.
	FramesSent, BytesSent uint64
	// FramesReceived and BytesReceived count frames read.
	FramesReceived, BytesReceived uint64
	// SendFailures counts Sends and Calls refused at once (peer
	// unreachable, queue full until the context ended) and Sends that were
	// queued but reported undelivered instead of being acknowledged.
	SendFailures uint64
	// HandlingSeconds is the time the connections' readers spent in Send
	// handlers, which run one after the other in the order sent: a slow
	// one holds up every later message from that node. SlowHandlings
	// counts the handlers that took longer than 100 ms.
	HandlingSeconds float64
	SlowHandlings   uint64
	// HandlingByKind splits HandlingSeconds by message kind: which kind
	// holds the readers up.
	HandlingByKind map[string]float64
}

// HandlerFunc handles a message from another node. For Call the returned
// bytes are the reply; for Send they are dropped.
type HandlerFunc func(ctx context.Context, fromNode string, payload []byte) ([]byte, error)

// Cluster is what the server needs from clustering.
type Cluster interface {
	// NodeName is this node's stable name.
	NodeName() string
	// Start connects (retrying as configured) and begins heartbeats.
	Start(ctx context.Context) error
	// Stop leaves the cluster, removing this node's routes and membership.
	Stop(ctx context.Context) error

	// Clustered reports whether the node currently shares routes with other
	// nodes: false on local and when the switch is off. While Hazelcast is
	// lost a cluster/hazelcast node stays clustered on the members and
	// routes it last saw, over its links (see its package doc).
	Clustered() bool

	// PutRoute publishes or updates a route owned by this node.
	PutRoute(ctx context.Context, r Route) error
	// DeleteRoute removes a route owned by this node.
	DeleteRoute(ctx context.Context, fullJID string) error
	// Routes returns every route of a bare JID, on all nodes. It is on
	// every routed stanza's path: callers pass their own context, and an
	// implementation that has to ask the network bounds that call itself
	// (cluster.operation_timeout).
	Routes(ctx context.Context, bareJID string) ([]Route, error)

	// Send delivers a one-way message to another node's handler for kind.
	// It returns ErrNodeGone when the node is not a live member or its link
	// failed; the caller then falls back (offline storage, bounce).
	Send(ctx context.Context, node, kind string, payload []byte) error
	// Call sends a request and waits for the reply.
	Call(ctx context.Context, node, kind string, payload []byte) ([]byte, error)
	// Handle registers the handler for a message kind. Register before Start.
	Handle(kind string, h HandlerFunc)

	// Members returns the live nodes this node shares the cluster with,
	// this one first: only itself while it is not Clustered.
	Members(ctx context.Context) ([]Member, error)
	// Senior reports whether this node is the oldest live member, which does
	// the cluster-wide chores.
	Senior() bool
	// UpdateSelf changes what this node publishes about itself (load,
	// sessions, draining) at the next heartbeat.
	UpdateSelf(fn func(m *Member))

	// OnNodeDown registers a callback run on each survivor when a node
	// disappears, with the routes it owned, after they are removed.
	// Every survivor gets the same routes, once; each one announces
	// unavailable presence to the contacts it hosts itself, and the senior
	// also does what involves no local session (other domains). It also
	// runs, with the routes last seen, for every other node when this node
	// stops being clustered (switch off).
	OnNodeDown(fn func(node string, routes []Route))
	// OnClusteredChange registers a callback run when Clustered flips (the
	// switch), and with true again whenever the node has rejoined the
	// shared state after losing it (Hazelcast away and back, its entry
	// lost): other nodes may have stored messages for its users or sent
	// unavailable presence meanwhile. On true the server republishes its
	// sessions, delivers what was stored offline for users still online,
	// and resends presence.
	OnClusteredChange(fn func(clustered bool))
	// OnMembersChange registers a callback run when what Members returns
	// changes: a node joined, left (died, stopped or switched clustering
	// off), a member's Draining flag changed (this node's own included), or
	// Clustered flipped. It carries nothing: read Members. It runs on the
	// same goroutine as, and after, the OnClusteredChange and OnNodeDown
	// callbacks of the same change, so it may call back into the Cluster.
	OnMembersChange(fn func())

	// LinkStats returns the counters of this node's links to other nodes;
	// ok is false when there are none (cluster/local).
	LinkStats() (st LinkStats, ok bool)
}

// Undelivered is implemented by clusters whose Send may accept a message
// and learn only afterwards that it could not be written to the node (its
// link broke, it left). The router registers a fallback (offline storage
// for messages, an error reply for IQs) so nothing is lost silently.
type Undelivered interface {
	OnUndelivered(fn func(node, kind string, payload []byte))
}

// Reacher is implemented by clusters whose node links outlive the
// cluster-wide switch (cluster/hazelcast): Reachable lists every live
// node, this one first, whatever its switch, with Clustered saying whether
// it shares routes now. While clustering is off Members lists this node
// alone; the admin console shows every node through Reachable and reaches
// them over the links (sessions, logs, settings, account locks).
type Reacher interface {
	Reachable(ctx context.Context) ([]Reachable, error)
}

// Reachable is a live node as Reacher sees it.
type Reachable struct {
	Member
	// Clustered: the node shares routes with this one now (its switch and
	// this node's are on).
	Clustered bool
}

// Notifier is implemented by clusters that can tell a sender whether
// another node handled a one-way message (cluster/hazelcast, through its
// links' acknowledgements). done(true) runs once the node's handler has
// run; done(false) when the message was not handed to the node, or the
// link failed before the node acknowledged it (it may have been handled
// just before: a caller that sends it again may duplicate it, never lose
// it). A message given to SendNotify never goes to OnUndelivered; done
// must not block, and never runs when SendNotify returns an error. To this
// node the handler runs in the caller's goroutine and done follows.
type Notifier interface {
	SendNotify(ctx context.Context, node, kind string, payload []byte, done func(handled bool)) error
}

// Detacher is implemented by clusters that keep routing on what they last
// knew while the service that shares routes and membership is away
// (cluster/hazelcast): Detached reports that state, for operators (the
// admin overview, the aviary_cluster_detached metric).
type Detacher interface {
	Detached() bool
}
