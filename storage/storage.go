// Package storage declares the repositories Aviary keeps its durable state
// in. Two implementations exist: storage/sqlite, the embedded default for a
// single node, and storage/postgres, the database a cluster shares. The
// conformance suite in storage/storagetest runs against both so they cannot
// drift apart.
//
// Every method takes a context: a store bounds each call by it and returns
// ErrUnavailable (wrapped) when the database cannot be reached in time, so
// the caller can answer the stanza with an error instead of hanging.
package storage

import (
	"context"
	"time"
)

// Store is every repository together; a node holds one.
type Store interface {
	Users
	Roster
	Offline
	VCards
	PrivateXML
	Blocking
	Properties
	LastActivity
	Archive
	PluginCatalogue

	// Ping checks the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// SCRAM is one SCRAM credential (RFC 5802): never the password, never the
// salted password.
type SCRAM struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Credentials holds a user's SCRAM credentials for each hash.
type Credentials struct {
	SHA1   SCRAM
	SHA256 SCRAM
}

// User is an account of the domain. Username is the nodeprepped localpart.
type User struct {
	Username    string
	Credentials Credentials
	CreatedAt   time.Time
}

// Users stores accounts and their credentials.
type Users interface {
	// CreateUser adds an account; ErrExists when the name is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns an account; ErrNotFound when there is none.
	GetUser(ctx context.Context, username string) (User, error)
	// SetCredentials replaces an account's credentials; ErrNotFound.
	SetCredentials(ctx context.Context, username string, c Credentials) error
	// DeleteUser removes an account and everything stored for it (roster,
	// offline messages, vCard, private XML, blocking list, last activity).
	DeleteUser(ctx context.Context, username string) error
	// ListUsers returns usernames containing the substring, sorted, paged.
	ListUsers(ctx context.Context, contains string, limit, offset int) ([]string, error)
	// CountUsers returns the number of accounts.
	CountUsers(ctx context.Context) (int, error)
}

// Subscription states of a roster item (RFC 6121 §2.1.2.5).
const (
	SubNone = "none"
	SubTo   = "to"
	SubFrom = "from"
	SubBoth = "both"
)

// RosterItem is one contact in a user's roster, with the full RFC 6121
// subscription state: Subscription plus the two pending flags.
type RosterItem struct {
	Owner        string // bare JID of the roster's owner
	Contact      string // bare JID of the contact
	Name         string
	Subscription string   // none, to, from, both
	PendingOut   bool     // we asked to subscribe to the contact (ask='subscribe')
	PendingIn    bool     // the contact asked to subscribe to us, not yet answered
	Groups       []string //
	// InRoster is false for items that exist only to remember a pending
	// inbound request (RFC 6121 §3.1.3: not shown in roster gets).
	InRoster bool
}

// RosterUpdate decides a roster item's new state inside the store's
// transaction. It gets the current item (exists false: a zero item with
// Owner and Contact set) and returns the item to write, or remove=true to
// delete it, or an error to abort with nothing written.
type RosterUpdate func(item RosterItem, exists bool) (updated RosterItem, remove bool, err error)

// Roster stores rosters with a per-user version (XEP-0237).
type Roster interface {
	// GetRoster returns every item of the owner and the roster version.
	GetRoster(ctx context.Context, owner string) ([]RosterItem, int64, error)
	// GetRosterItem returns one item; ErrNotFound when absent.
	GetRosterItem(ctx context.Context, owner, contact string) (RosterItem, error)
	// UpdateRosterItem reads, lets fn decide, and writes one item in one
	// transaction, so two nodes changing the same item never lose an update.
	// When the item changed it bumps the version and returns it; changed is
	// false when fn returned the item unchanged (no version bump).
	UpdateRosterItem(ctx context.Context, owner, contact string, fn RosterUpdate) (item RosterItem, removed, changed bool, version int64, err error)
	// RosterVersion returns the owner's current version (0 for no roster).
	RosterVersion(ctx context.Context, owner string) (int64, error)
	// Subscribers returns the contacts with subscription from or both:
	// who receives the owner's presence.
	Subscribers(ctx context.Context, owner string) ([]string, error)
}

// OfflineMessage is a stored message stanza, serialized, with the time it
// was stored (for the XEP-0203 delay stamp).
type OfflineMessage struct {
	ID     int64
	Stanza []byte
	Stored time.Time
}

// Offline stores messages for users with no available resource (XEP-0160).
type Offline interface {
	// StoreOffline commits a message before returning, so the sender is
	// never told something was accepted that a crash could lose. When the
	// user already has limit messages it returns ErrQuotaExceeded.
	StoreOffline(ctx context.Context, owner string, stanza []byte, limit int) error
	// TakeOffline returns and deletes the owner's messages in one batch,
	// oldest first.
	TakeOffline(ctx context.Context, owner string) ([]OfflineMessage, error)
	// CountOffline returns how many messages wait for the owner.
	CountOffline(ctx context.Context, owner string) (int, error)
	// ExpireOffline deletes messages stored before t; the cluster's senior
	// node runs it.
	ExpireOffline(ctx context.Context, before time.Time) (int, error)
}

// VCards stores vcard-temp (XEP-0054) documents, serialized.
type VCards interface {
	// GetVCard returns ErrNotFound when the user has none.
	GetVCard(ctx context.Context, owner string) ([]byte, error)
	SetVCard(ctx context.Context, owner string, vcard []byte) error
}

// PrivateXML stores XEP-0049 fragments keyed by their qualified name
// ("name namespace").
type PrivateXML interface {
	// GetPrivate returns ErrNotFound when nothing is stored under the key.
	GetPrivate(ctx context.Context, owner, key string) ([]byte, error)
	SetPrivate(ctx context.Context, owner, key string, data []byte) error
}

// Blocking stores XEP-0191 block lists (JIDs as strings, any form).
type Blocking interface {
	BlockList(ctx context.Context, owner string) ([]string, error)
	// Block adds JIDs (duplicates ignored); Unblock removes them, and an
	// empty list removes all.
	Block(ctx context.Context, owner string, jids []string) error
	Unblock(ctx context.Context, owner string, jids []string) error
}

// Properties are name/value settings the whole cluster shares, such as
// the clustering switch.
type Properties interface {
	// GetProperty returns ErrNotFound when unset.
	GetProperty(ctx context.Context, name string) (string, error)
	SetProperty(ctx context.Context, name, value string) error
	DeleteProperty(ctx context.Context, name string) error
	ListProperties(ctx context.Context) (map[string]string, error)
}

// LastActivity records when a user last went offline (XEP-0012).
type LastActivity interface {
	// GetLast returns ErrNotFound when the user never logged out.
	GetLast(ctx context.Context, owner string) (time.Time, string, error)
	SetLast(ctx context.Context, owner string, at time.Time, status string) error
}

// ArchivedMessage is one message in a user's archive (XEP-0313, later).
type ArchivedMessage struct {
	ID      string
	Owner   string
	With    string
	Stanza  []byte
	Stamped time.Time
}

// Archive is the message archive. The schema exists now; the MAM plugin
// uses it.
type Archive interface {
	AppendArchive(ctx context.Context, m ArchivedMessage) error
	// QueryArchive returns the owner's messages after afterID (or from the
	// start when empty), oldest first, at most limit.
	QueryArchive(ctx context.Context, owner, with, afterID string, limit int) ([]ArchivedMessage, error)
}

// PluginRecord is one version of a third-party plugin in the shared catalogue.
type PluginRecord struct {
	Name     string
	Version  string
	Checksum string // hex SHA-256 of Artifact
	Artifact []byte
	Enabled  bool
	Uploaded time.Time
}

// NodePlugin is what one node reports it is running.
type NodePlugin struct {
	Node    string
	Name    string
	Version string
	// State is loaded, failed (Version did not load; nothing of the
	// plugin runs), disabled (the node switched Version off after
	// repeated failures) or unloaded (server/pluginhost).
	State string
	// Error says why it failed or was disabled, or which newer version
	// failed to load while Version kept running.
	Error   string
	Updated time.Time
}

// PluginCatalogue stores plugin artifacts and which node runs which version.
type PluginCatalogue interface {
	// PutPlugin adds a plugin version. A version's artifact never
	// changes (nodes load and roll back by version): ErrExists when that
	// name and version is already there.
	PutPlugin(ctx context.Context, p PluginRecord) error
	// GetPlugin returns ErrNotFound for an unknown name/version.
	GetPlugin(ctx context.Context, name, version string) (PluginRecord, error)
	// ListPlugins returns every version of every plugin, without artifacts.
	ListPlugins(ctx context.Context) ([]PluginRecord, error)
	SetPluginEnabled(ctx context.Context, name, version string, enabled bool) error
	DeletePlugin(ctx context.Context, name, version string) error
	SetNodePlugin(ctx context.Context, np NodePlugin) error
	ListNodePlugins(ctx context.Context) ([]NodePlugin, error)
}

// PropertyListener is implemented by stores that can tell a node when a
// shared property changes (storage/postgres through LISTEN/NOTIFY, so every
// node of the cluster hears it; storage/sqlite in-process). The cluster
// uses it for the cluster-wide enable switch.
type PropertyListener interface {
	// ListenProperty calls fn with the property's current value ("" when
	// unset) once it is listening, then again whenever the value changes,
	// until ctx ends. It blocks: run it in its own goroutine. Calls to fn
	// are sequential; fn may miss intermediate values but always ends up
	// with the latest one, including after a lost connection.
	ListenProperty(ctx context.Context, name string, fn func(value string))
}
