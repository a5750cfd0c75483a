// Package storage declares where Aviary keeps its durable state: a few
// repositories whose queries need tables of their own (accounts, rosters,
// the offline queue, block lists, shared properties, the plugin catalogue)
// and the general module stores every XEP module uses instead of a
// repository of its own (Modules: key/value, map and archive stores, the
// way Prosody's modules use keyval, map and archive stores; modules.go).
// README.md says which exists and why, with a worked example.
//
// Two implementations exist: storage/sqlite, the embedded default for a
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
	Blocking
	Properties
	PluginCatalogue
	Modules

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
	// LockedAt is when an administrator locked the account (SetLocked);
	// zero while it is not locked. A locked account keeps its data but
	// cannot log in.
	LockedAt time.Time
}

// Locked reports whether an administrator locked the account.
func (u User) Locked() bool { return !u.LockedAt.IsZero() }

// Users stores accounts and their credentials.
type Users interface {
	// CreateUser adds an account; ErrExists when the name is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns an account; ErrNotFound when there is none.
	GetUser(ctx context.Context, username string) (User, error)
	// SetCredentials replaces an account's credentials; ErrNotFound.
	SetCredentials(ctx context.Context, username string, c Credentials) error
	// SetLocked locks (at is when) or, with a zero at, unlocks an account;
	// ErrNotFound. Locking an account locked already keeps its time.
	SetLocked(ctx context.Context, username string, at time.Time) error
	// DeleteUser removes an account and everything stored for it (roster,
	// offline messages, blocking list, and every module store's entries
	// owned by the username or by "username@…").
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

// RosterQuota caps one owner's roster. UpdateRosterItem enforces it inside
// its transaction, so writers on two nodes never pass it together. A zero
// field means no cap.
type RosterQuota struct {
	// Items caps the owner's rows: roster items and the entries that only
	// remember a pending inbound request (InRoster false). Creating a row
	// past it fails with ErrRosterFull.
	Items int
	// PendingIn caps how many rows have PendingIn set: subscription
	// requests waiting for the owner's answer. Setting it past the cap
	// fails with ErrTooManyPending.
	PendingIn int
	// ItemBytes caps one roster item (InRoster) as RosterItemSize counts
	// it; a bigger one fails with ErrRosterItemTooLarge.
	ItemBytes int
}

// RosterItemSize is about how many bytes an item takes in a roster result
// or push: its JID, name and group names, and the markup around them.
// Items * ItemBytes of a RosterQuota bounds a whole roster result.
func RosterItemSize(it RosterItem) int {
	n := rosterItemOverhead + len(it.Contact) + len(it.Name)
	for _, g := range it.Groups {
		n += rosterGroupOverhead + len(g)
	}
	return n
}

// The markup RosterItemSize counts around an item's text: the <item/>
// element with its jid, name, subscription and ask attributes, and one
// <group/> element per group.
const (
	rosterItemOverhead  = 64
	rosterGroupOverhead = 15
)

// Roster stores rosters with a per-user version (XEP-0237).
type Roster interface {
	// GetRoster returns every item of the owner and the roster version.
	GetRoster(ctx context.Context, owner string) ([]RosterItem, int64, error)
	// GetRosterItem returns one item; ErrNotFound when absent.
	GetRosterItem(ctx context.Context, owner, contact string) (RosterItem, error)
	// UpdateRosterItem reads, lets fn decide, and writes one item in one
	// transaction, so two nodes changing the same item never lose an update.
	// When the item changed it bumps the version and returns it; changed is
	// false when fn returned the item unchanged (no version bump). The
	// quota is checked in the same transaction (removals always pass); past
	// it nothing is written and the error wraps ErrQuotaExceeded.
	UpdateRosterItem(ctx context.Context, owner, contact string, quota RosterQuota, fn RosterUpdate) (item RosterItem, removed, changed bool, version int64, err error)
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

// OfflineQuota caps one owner's offline queue; a zero field means no cap.
type OfflineQuota struct {
	// Messages caps how many messages wait.
	Messages int
	// Bytes caps the size of the waiting stanzas together, this one
	// included.
	Bytes int64
}

// Offline stores messages for users with no available resource (XEP-0160).
type Offline interface {
	// StoreOffline commits a message before returning, so the sender is
	// never told something was accepted that a crash could lose. When the
	// message would take the owner's queue past the quota it stores
	// nothing and returns ErrQuotaExceeded; the check and the insert are
	// one transaction, so two nodes storing at once never pass it.
	StoreOffline(ctx context.Context, owner string, stanza []byte, quota OfflineQuota) error
	// TakeOffline returns and deletes the owner's messages in one batch,
	// oldest first.
	TakeOffline(ctx context.Context, owner string) ([]OfflineMessage, error)
	// TakeOfflineUpTo returns and deletes the owner's oldest messages: the
	// first whatever its size, then as many more as fit with it in
	// maxBytes (their stanzas' sizes added up), oldest first. more reports
	// that messages are still waiting after these. maxBytes <= 0 takes all.
	// A session is handed its queue this way a portion at a time, as it
	// can take it; what it was not handed stays stored.
	TakeOfflineUpTo(ctx context.Context, owner string, maxBytes int) (msgs []OfflineMessage, more bool, err error)
	// ReadOfflineUpTo is TakeOfflineUpTo without the delete: it reads the
	// owner's oldest messages whose IDs are not in skip (the first
	// whatever its size, then as many more as fit with it in maxBytes;
	// all with maxBytes <= 0), oldest first, and leaves them stored. more
	// reports that other messages not in skip wait after these. A session
	// is handed its queue this way, skipping what it was handed already,
	// and the messages are deleted (DeleteOffline) only once they are
	// safe elsewhere, so a node dying meanwhile loses none.
	ReadOfflineUpTo(ctx context.Context, owner string, skip []int64, maxBytes int) (msgs []OfflineMessage, more bool, err error)
	// DeleteOffline deletes the owner's messages with these IDs; IDs that
	// are gone or belong to another owner are ignored.
	DeleteOffline(ctx context.Context, owner string, ids []int64) error
	// CountOffline returns how many messages wait for the owner.
	CountOffline(ctx context.Context, owner string) (int, error)
	// PeekOffline returns the owner's oldest messages, at most limit,
	// oldest first, leaving them stored (what an administrator sees).
	PeekOffline(ctx context.Context, owner string, limit int) ([]OfflineMessage, error)
	// ExpireOffline deletes messages stored before t; the cluster's senior
	// node runs it.
	ExpireOffline(ctx context.Context, before time.Time) (int, error)
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

// PropertyCreator is implemented by stores that can set a property only
// when it is unset, atomically across every node on the store: the way
// to create a value all nodes must share (a secret) on first start.
type PropertyCreator interface {
	// CreateProperty sets name to value unless it is set already, and
	// returns the value it has afterwards: value, or the one another
	// node stored first.
	CreateProperty(ctx context.Context, name, value string) (string, error)
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

// laneKey marks a context whose calls come from a group-commit writer.
type laneKey struct{}

// InWriterLane marks ctx's calls as a group-commit writer's: one write
// that many users' messages wait for (storage/groupcommit). A backend with
// a connection pool keeps a few connections for these apart, so that they
// do not queue behind the reads of a login storm; while the writer waits,
// its queue fills and every message's sender waits for room in it.
func InWriterLane(ctx context.Context) context.Context {
	return context.WithValue(ctx, laneKey{}, true)
}

// IsWriterLane reports whether ctx was marked by InWriterLane.
func IsWriterLane(ctx context.Context) bool {
	v, _ := ctx.Value(laneKey{}).(bool)
	return v
}
