package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// Options configure an Engine for one kind of service.
type Options struct {
	Store  storage.Store
	Layout Layout
	Limits Limits
	Logger *slog.Logger
	// Route sends a notification (the host's Route: cluster-wide).
	Route func(ctx context.Context, el *wire.Element)
	// Defaults is a new node's configuration.
	Defaults Config

	// PEP: the service is an account (XEP-0163). Its owner is the owner
	// of every node, the only one who creates and configures them, and
	// the roster the presence and roster access models read is the
	// account's.
	PEP bool
	// AutoCreate: publishing to a node that does not exist creates it
	// (with the publish-options as its configuration) when the publisher
	// may create nodes.
	AutoCreate bool
	// InstantNodes: create without a node name makes one up.
	InstantNodes bool
	// MayCreate tells whether requester (a bare JID; local when the
	// sender is a user of this domain) may create nodes on service. PEP:
	// the owner alone, whatever this says.
	MayCreate func(service, requester string, local bool) bool
	// Admin tells whether a bare JID has owner rights on every node of a
	// service (the server's administrators); nil: nobody.
	Admin func(bare string) bool
	// Implicit returns full JIDs that get a node's event without a
	// subscription: PEP's contacts whose caps ask for NODE+notify and
	// the owner's own resources. it is the item a publish notifies (with
	// its store Version), nil for other events. The access model still
	// applies to them.
	Implicit func(ctx context.Context, service, node string, it *Item) []string
	// Changed is called after a change a client made (publish, retract,
	// purge, delete), not after changes the server made through the
	// engine's methods: PEP converts bookmarks, avatars and vCards there.
	Changed func(ctx context.Context, ch Change)
}

// ChangeKind says what a Change did.
type ChangeKind int

const (
	Published ChangeKind = iota + 1
	Retracted
	Purged
	Deleted
)

// Change is a node change a client made.
type Change struct {
	Kind    ChangeKind
	Service string
	Node    string
	Item    *Item  // Published
	ItemID  string // Retracted
	From    string // the full JID that made it
}

// Engine implements XEP-0060 over the module stores for one kind of
// service. It keeps no state of its own in memory: every node of a
// cluster may run one, and each request reads what it needs.
type Engine struct {
	opts Options
	st   *store
	log  *slog.Logger
}

// New returns an engine.
func New(o Options) *Engine {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{opts: o, log: log}
	e.st = &store{st: o.Store, layout: o.Layout, limits: o.Limits, log: log.Warn}
	return e
}

// Defaults returns the configuration of a new node.
func (e *Engine) Defaults() Config { return e.opts.Defaults }

// RandomID returns a random hex string (item IDs, subids, message IDs).
func RandomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
