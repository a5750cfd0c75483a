// Package plugins is Aviary's extension API. Every XEP beyond the RFC 6120
// and RFC 6121 core is a Plugin: it registers IQ namespaces, disco
// features, stream features, interceptors at fixed points of the router and
// hooks on events. Built-in plugins live in subpackages and register
// themselves in init (blank-imported from plugins/builtin); third-party
// plugins (WebAssembly) are loaded at run time by plugins/runtime.
//
// A plugin may also serve a subdomain of the node's domain
// (Host.ServeDomain, service.go) and talk to its own instances on the
// other nodes of the cluster (Host.Cluster, cluster.go); plugins/placement
// builds keyed state that lives on one node at a time on those. GUIDE.md
// walks through both.
//
// plugins imports only conf, storage and wire. The server implements Host
// (server/host.go, server/plugincluster).
package plugins

import (
	"context"
	"log/slog"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Plugin is the one interface every plugin implements. The lifecycle is
// construct (side-effect free) → Start → Stop. Optional capabilities are
// separate interfaces (IQHandler, DiscoFeatures, ...), checked at Start.
type Plugin interface {
	// ID is a dotted, unique, stable name such as "xep0199.ping".
	ID() string
	// Start wires the plugin to the node. A plugin that fails to start is
	// stopped and reported; the node keeps running without it.
	Start(ctx context.Context, host Host) error
	// Stop releases what Start acquired.
	Stop(ctx context.Context) error
}

// SessionsCloser is told that the node is stopping, before its sessions
// close and while federation still runs, so that it can say goodbye to
// them (group chat's status 332 when no other node takes its rooms). It
// should return soon; ctx bounds it.
type SessionsCloser interface {
	Plugin
	SessionsClosing(ctx context.Context)
}

// Target says which IQs a handler receives.
type Target int

const (
	// ToServer: IQs addressed to the domain itself (or with no 'to').
	ToServer Target = 1 << iota
	// ToAccount: IQs addressed to a local user's bare JID, which the server
	// answers on the user's behalf (vCard, blocking, private storage...).
	ToAccount
)

// IQHandler answers IQ get/set by payload namespace. An IQ to the server in
// a namespace nobody registered gets service-unavailable.
type IQHandler interface {
	Plugin
	// IQNamespaces lists the payload namespaces handled and for which targets.
	IQNamespaces() map[string]Target
	// HandleIQ returns the result payload (nil for an empty result) or an
	// error; a *wire.StanzaError is sent as is, any other error as
	// internal-server-error. The host builds and routes the reply.
	HandleIQ(ctx context.Context, iq *IQ) (*wire.Element, error)
}

// IQ is an IQ request with its sender resolved.
type IQ struct {
	Stanza *wire.Element
	// From is the full JID of the sender; FromLocal is true when the sender
	// is a user of this domain (authenticated by this server).
	From      string
	FromLocal bool
	// To is the bare JID (or domain) the IQ was addressed to.
	To string
	// RemoteAddr is the client's IP address, set for an IQ on a stream
	// that has not authenticated (HandlePreAuthIQ), "" otherwise.
	RemoteAddr string
}

// Payload returns the IQ's single child element, or nil.
func (iq *IQ) Payload() *wire.Element { return iq.Stanza.FirstChild() }

// DiscoFeatures contributes to the server's disco#info answer.
type DiscoFeatures interface {
	Plugin
	DiscoFeatures() []string
}

// AccountFeatures contributes disco#info features of a user's bare JID
// (XEP-0030 on accounts), for plugins that act on the account's behalf.
type AccountFeatures interface {
	Plugin
	AccountFeatures() []string
}

// StreamFeatures adds elements to <stream:features/>. authenticated tells
// whether the stream is past SASL.
type StreamFeatures interface {
	Plugin
	StreamFeatures(authenticated bool) []*wire.Element
}

// Interceptor sees stanzas at fixed points of the router.
type Interceptor interface {
	Plugin
	// InterceptPoints lists where the plugin wants to be called.
	InterceptPoints() []Point
	// Intercept may change the stanza in place and returns a verdict. An
	// error drops the stanza and, for Inbound, bounces it with that error.
	Intercept(ctx context.Context, p Point, st *Stanza) (Verdict, error)
}

// Point is a fixed place on the router's path.
type Point int

const (
	// PointInbound: a stanza from a local client, 'from' stamped, before routing;
	// also presence the router sends on a local user's behalf (each copy of
	// a broadcast, with its 'to'; probe answers; login probes).
	PointInbound Point = iota + 1
	// PointDeliver: a stanza about to be written to a local session.
	PointDeliver
	// PointOffline: a message about to be stored offline.
	PointOffline
	// PointRemoteInbound: a stanza that arrived over s2s, before routing.
	PointRemoteInbound
	// PointUserMessage: a message for a local account, before the router
	// picks the account's resources, offline storage or a fallback. It
	// runs once per message and account, on the node that routes the
	// message (the one where it entered: the sender's session's node, the
	// s2s stream's, or the plugin's that sent it), never again on the node
	// that then delivers it. What a plugin changes here is what every
	// copy carries: live, carbon and offline. The message archive writes
	// the recipient's copy and stamps its stanza-id here. Built-in (Go)
	// plugins only; an error drops the message without a bounce.
	PointUserMessage
)

// Verdict is an interceptor's decision.
type Verdict int

const (
	// Continue passes the (possibly changed) stanza on.
	Continue Verdict = iota
	// Drop silently discards the stanza.
	Drop
	// Handled means the plugin took care of it (answered, stored...).
	Handled
)

// Stanza is what interceptors get: the element and its session context.
type Stanza struct {
	El *wire.Element
	// Session is the full JID of the local session involved: the sender
	// for PointInbound, the recipient for PointDeliver; "" otherwise.
	Session string
}

// Resource is one online resource of a local user, on any node.
type Resource struct {
	JID       string
	Node      string
	Priority  int
	Available bool
	Carbons   bool
}

// Host is what the node offers plugins.
type Host interface {
	Domain() string
	Config() *conf.Config
	Store() storage.Store
	Logger() *slog.Logger
	// Route sends a stanza through the router, with its from as given
	// (the server's domain, or a local user's JID).
	Route(ctx context.Context, el *wire.Element)
	// Resources returns a local user's online resources, cluster-wide.
	Resources(ctx context.Context, bare string) ([]Resource, error)
	// SetCarbons turns message carbons on or off for one session.
	SetCarbons(ctx context.Context, fullJID string, on bool) error
	// IsAdmin reports whether a bare JID is a configured administrator.
	IsAdmin(bare string) bool
	// Hooks is the node's event bus.
	Hooks() *Hooks
	// Broadcast runs the hooks of ev on every other node of the cluster,
	// each with a *ClusterEvent carrying data, and returns once every
	// node has run them (or ctx ended; cluster.operation_timeout bounds
	// each node). The error names the nodes that did not confirm. A node
	// without other members returns nil at once. Events are how a plugin
	// keeps state it holds in memory (a cache) current on every node;
	// the node that broadcasts applies the change itself.
	Broadcast(ctx context.Context, ev Event, data []byte) error
	// Users manages accounts the way `aviary user` does (hashing included).
	Users() UserManager
	// Cluster is the plugin's view of the cluster: members, the owner of
	// a key, messages to its own instances on the other nodes (see
	// Cluster; plugins/placement keeps keyed state on its owner).
	Cluster() Cluster
	// ServeDomain claims a subdomain of Domain() for a service: every
	// stanza to it or to a JID at it goes to s.Handle, its disco#items
	// entry is listed on the domain, peers reach it over s2s. Call it from
	// Start; release it in Stop (the Manager also releases the claims of a
	// plugin that stopped or failed to start).
	ServeDomain(s Service) (release func(), err error)
}

// UserManager creates and deletes accounts and sets passwords; the server
// implements it so SCRAM hashing lives in one place.
type UserManager interface {
	CreateUser(ctx context.Context, username, password string) error
	DeleteUser(ctx context.Context, username string) error
	SetPassword(ctx context.Context, username, password string) error
	// CheckPassword reports whether the password is right, for admin sign-in
	// and XEP-0077 unregister confirmation.
	CheckPassword(ctx context.Context, username, password string) (bool, error)
	// Kick closes every session of a user (after deletion or by an admin).
	Kick(ctx context.Context, bare string, reason string) int
}
