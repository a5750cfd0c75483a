package api

import (
	"context"
	"time"

	"github.com/aviary-im/aviary/conf"
)

// Backend is what the admin API operates on. The node implements it
// (admin/backend); tests use a fake. Every method is cluster-wide unless it
// says otherwise.
type Backend interface {
	Domain() string
	NodeName() string

	// Overview summarises the cluster for the front page.
	Overview(ctx context.Context) (Overview, error)
	// Nodes lists the live nodes with their health.
	Nodes(ctx context.Context) ([]Node, error)
	// ClusterEnabled reads the cluster-wide switch; SetClusterEnabled flips it.
	ClusterEnabled(ctx context.Context) (bool, error)
	SetClusterEnabled(ctx context.Context, on bool) error
	// Drain makes a node stop accepting sessions and move its clients away.
	Drain(ctx context.Context, node string) error

	ListUsers(ctx context.Context, contains string, limit, offset int) (users []string, total int, err error)
	CreateUser(ctx context.Context, username, password string) error
	DeleteUser(ctx context.Context, username string) error
	SetPassword(ctx context.Context, username, password string) error
	// CheckPassword verifies an account's password (admin sign-in).
	CheckPassword(ctx context.Context, username, password string) (bool, error)

	// Sessions lists online resources on every node.
	Sessions(ctx context.Context) ([]Session, error)
	// Kick closes one session (full JID) wherever it is; false if not online.
	Kick(ctx context.Context, fullJID string) (bool, error)

	// S2S lists federation streams on every node.
	S2S(ctx context.Context) ([]S2SStream, error)

	// Plugins lists the catalogue with what each live node reports of
	// each version.
	Plugins(ctx context.Context) ([]Plugin, error)
	// UploadPlugin adds a version; one that exists is refused (409).
	UploadPlugin(ctx context.Context, name, version string, artifact []byte) error
	// SetPluginEnabled enables a version (disabling the plugin's others)
	// or disables it, and returns once every live node has loaded or
	// unloaded it (or failed to; Plugins tells).
	SetPluginEnabled(ctx context.Context, name, version string, on bool) error
	// DeletePlugin removes a version, or every version when version is
	// "": refused (409) while it is enabled or a node runs it.
	DeletePlugin(ctx context.Context, name, version string) error
	// StartUpgrade begins a rolling upgrade of a plugin to version; progress
	// is read with Upgrade.
	StartUpgrade(ctx context.Context, name, version string) error
	Upgrade(ctx context.Context) (UpgradeStatus, error)

	// User returns an account's details: roster, offline queue, lock,
	// sessions; storage.ErrNotFound.
	User(ctx context.Context, username string) (UserDetail, error)
	// SetUserLocked locks (closing the account's sessions on every node)
	// or unlocks an account and returns how many sessions it closed.
	SetUserLocked(ctx context.Context, username string, locked bool) (closed int, err error)
	// ServerInfo describes every node: build, Go version, uptime.
	ServerInfo(ctx context.Context) ([]ServerInfo, error)
	// Settings is the answering node's configuration, its live keys
	// (conf.Live) as they are now.
	Settings(ctx context.Context) (Settings, error)
	// ChangeSettings changes live keys on every node (on this node first,
	// if its settings are still those the ETag ifMatch names, else a 412
	// APIError: a change it refuses reaches no other) and reports each
	// node.
	ChangeSettings(ctx context.Context, ifMatch string, changes map[string]string) ([]SettingsResult, error)
	// Logs returns recent log lines of one node or ("" node) every node.
	Logs(ctx context.Context, q LogQuery) ([]LogLine, error)
}

// SignInThrottle slows password guessing at sign-in. The node passes its
// *auth.Authenticator, so console sign-ins and XMPP logins share their
// failure records: guesses over either slow both down. Keys are client
// addresses and accounts' bare JIDs.
type SignInThrottle interface {
	// Wait blocks while key is on hold after earlier failures.
	Wait(ctx context.Context, key string) error
	// Failed records a failure of key and sleeps its delay.
	Failed(ctx context.Context, key string) time.Duration
	// Succeeded clears key's failures.
	Succeeded(key string)
}

// Overview is the front page.
type Overview struct {
	Domain    string `json:"domain"`
	Clustered bool   `json:"clustered"`
	// Detached: clustered on the members and routes last seen, over the
	// node links, because Hazelcast is away (see cluster/hazelcast).
	Detached       bool   `json:"detached,omitempty"`
	ClusterEnabled bool   `json:"cluster_enabled"`
	Nodes          []Node `json:"nodes"`
	Sessions       int    `json:"sessions"`
	Users          int    `json:"users"`
	// Stanzas per second from and to clients, summed over the nodes.
	StanzasIn  float64   `json:"stanzas_in_per_sec"`
	StanzasOut float64   `json:"stanzas_out_per_sec"`
	Now        time.Time `json:"now"`
}

// Node is one live node.
type Node struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Sessions int       `json:"sessions"`
	Load     float64   `json:"load"`
	Senior   bool      `json:"senior"`
	Draining bool      `json:"draining"`
	// Stanzas per second from and to this node's clients.
	StanzasIn  float64           `json:"stanzas_in_per_sec"`
	StanzasOut float64           `json:"stanzas_out_per_sec"`
	Healthy    bool              `json:"healthy"`
	Plugins    map[string]string `json:"plugins,omitempty"` // name → version running
	Addrs      map[string]string `json:"addrs,omitempty"`
	// Clustered: the node shares sessions with the node answering. While
	// clustering is off every node serves alone: each is listed (reached
	// over the node links) with Clustered false.
	Clustered bool `json:"clustered"`
	// PluginStates is what the node reports of each plugin it was asked
	// to run: loaded, failed, disabled (by the node, after failures).
	PluginStates []PluginState `json:"plugin_states,omitempty"`
}

// PluginState is what one node reports of one plugin.
type PluginState struct {
	Node    string `json:"node,omitempty"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version"`
	// State is loaded; failed (the version did not load and nothing of
	// the plugin runs); disabled (the node switched it off after repeated
	// failures; stanzas pass it untouched); unloaded; or missing (the
	// catalogue enables this version and the node reports running
	// something else, or nothing).
	State   string    `json:"state"`
	Error   string    `json:"error,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// Session is one online resource.
type Session struct {
	JID       string `json:"jid"`
	Node      string `json:"node"`
	Priority  int    `json:"priority"`
	Available bool   `json:"available"`
	// Transport is tcp (STARTTLS listener), tls (direct TLS), bosh or
	// websocket.
	Transport string    `json:"transport,omitempty"`
	Addr      string    `json:"addr,omitempty"` // the client's IP address
	Since     time.Time `json:"since,omitzero"` // when the session started
	// Stream management (XEP-0198): enabled, resumable, waiting for the
	// client to resume (no connection), stanzas not acknowledged yet.
	SM        bool `json:"sm"`
	Resumable bool `json:"resumable"`
	Detached  bool `json:"detached"`
	Unacked   int  `json:"unacked"`
	// Inactive: the client said it is in the background (XEP-0352).
	Inactive bool `json:"inactive"`
	// Client is what the client said about itself, if anything.
	Client *Client `json:"client,omitempty"`
}

// Client is what a client volunteered about itself: the XEP-0388 user
// agent (software, device), the XEP-0386 tag, the XEP-0115 caps node of
// its presence (a URI naming the client). Nothing is asked of it.
type Client struct {
	Software string `json:"software,omitempty"`
	Device   string `json:"device,omitempty"`
	Tag      string `json:"tag,omitempty"`
	Caps     string `json:"caps,omitempty"`
}

// UserDetail is one account as an administrator sees it.
type UserDetail struct {
	Username string    `json:"username"`
	JID      string    `json:"jid"`
	Created  time.Time `json:"created"`
	Locked   bool      `json:"locked"`
	LockedAt time.Time `json:"locked_at,omitzero"`
	Roster   []Contact `json:"roster"`
	// OfflineCount is how many messages wait for the account; Offline the
	// oldest of them (at most 50).
	OfflineCount int              `json:"offline_count"`
	Offline      []OfflineMessage `json:"offline"`
	Sessions     []Session        `json:"sessions"`
}

// Contact is one roster item.
type Contact struct {
	JID          string   `json:"jid"`
	Name         string   `json:"name,omitempty"`
	Subscription string   `json:"subscription"`         // none, to, from, both
	Ask          bool     `json:"ask,omitempty"`        // the account asked to subscribe
	PendingIn    bool     `json:"pending_in,omitempty"` // the contact asked, no answer yet
	Groups       []string `json:"groups,omitempty"`
}

// OfflineMessage is one message waiting for an account.
type OfflineMessage struct {
	Stored time.Time `json:"stored"`
	From   string    `json:"from"`
	Type   string    `json:"type,omitempty"`
	Body   string    `json:"body,omitempty"`
	// Stanza is the stored XML (cut at 4 KiB).
	Stanza string `json:"stanza"`
}

// ServerInfo describes one node.
type ServerInfo struct {
	Node    string    `json:"node"`
	Domain  string    `json:"domain"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// UptimeSeconds is how long the node has run.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Revision, BuildTime and Modified come from the Go build (VCS
	// stamping); empty for `go run` and test binaries.
	Revision  string `json:"revision,omitempty"`
	BuildTime string `json:"build_time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// Error is set when the node could not be asked.
	Error string `json:"error,omitempty"`
}

// Settings is a node's configuration: every key (secrets hidden) and the
// live ones with their current values. ETag changes whenever a live value
// does; a change must send it back in If-Match.
type Settings struct {
	Node    string            `json:"node"`
	ETag    string            `json:"etag"`
	Live    map[string]string `json:"live"`
	Entries []conf.Entry      `json:"entries"`
}

// SettingsResult is what a settings change did on one node.
type SettingsResult struct {
	Node    string   `json:"node"`
	Changed []string `json:"changed"`
	Error   string   `json:"error,omitempty"`
}

// LogQuery selects log lines.
type LogQuery struct {
	// Node is one node's name, or "" for every node.
	Node string
	// Level is the lowest level shown: debug, info, warn or error.
	Level string
	// Limit is how many of the newest lines per node (at most 1000).
	Limit int
}

// LogLine is one record a node logged.
type LogLine struct {
	Node  string    `json:"node"`
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	// Text is the record as the node wrote it (with the lines of a
	// multi-line value below it).
	Text string `json:"text"`
}

// S2SStream is one federation stream.
type S2SStream struct {
	Node      string `json:"node"`
	Direction string `json:"direction"` // in or out
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Auth      string `json:"auth"` // sasl-external or dialback
}

// Plugin is one catalogue entry.
type Plugin struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Checksum string    `json:"checksum"`
	Enabled  bool      `json:"enabled"`
	Uploaded time.Time `json:"uploaded"`
	// Nodes are the live nodes reporting this version (loaded, failed,
	// disabled; unloaded once they unloaded it), and, when it is enabled,
	// every live node that does not run it (state "missing").
	Nodes []PluginState `json:"nodes,omitempty"`
}

// UpgradeStatus is the progress of a rolling upgrade.
type UpgradeStatus struct {
	Plugin  string        `json:"plugin"`
	From    string        `json:"from"`
	To      string        `json:"to"`
	State   string        `json:"state"` // idle, running, rolling-back, done, failed, rolled-back
	Steps   []UpgradeStep `json:"steps"`
	Error   string        `json:"error,omitempty"`
	Started time.Time     `json:"started"`
	// Coordinator is the node running the upgrade.
	Coordinator string `json:"coordinator,omitempty"`
}

// UpgradeStep is one node's part of a rolling upgrade.
type UpgradeStep struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// State: pending, upgrading (loading the new version), watching (its
	// health window: real calls counted below), healthy, failed,
	// rolled-back.
	State string `json:"state"`
	// The new version's calls on the node while watched, and why the
	// step failed.
	Calls    int64  `json:"calls,omitempty"`
	Failures int64  `json:"failures,omitempty"`
	Traps    int64  `json:"traps,omitempty"`
	Timeouts int64  `json:"timeouts,omitempty"`
	Error    string `json:"error,omitempty"`
}

// CertificateSource is what GET /api/certificates and the certificates
// page show; the node's certificate manager implements it through
// admin/backend. It is optional (Options.Certificates): without it both
// answer 404.
type CertificateSource interface {
	Certificates(ctx context.Context) (CertificateReport, error)
}

// CertificateReport is the certificates the answering node serves: those
// stored for the whole cluster (ACME, imported) and its own fallback
// (tls.cert_file or self-signed), and ACME's state when it is on.
type CertificateReport struct {
	Node         string        `json:"node"`
	Certificates []Certificate `json:"certificates"`
	ACME         *ACMEStatus   `json:"acme,omitempty"`
}

// Certificate is one certificate.
type Certificate struct {
	ID        string    `json:"id"`
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Source is acme, imported, file or self-signed.
	Source string `json:"source"`
	// Node ordered or imported it (file and self-signed: the node serving it).
	Node string `json:"node,omitempty"`
}

// ACMEStatus is ACME's view of each name it keeps a certificate for.
type ACMEStatus struct {
	Directory string     `json:"directory"`
	Names     []ACMEName `json:"names"`
}

// ACMEName is one name ACME manages.
type ACMEName struct {
	Name      string    `json:"name"`
	Serial    string    `json:"serial,omitempty"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Next      time.Time `json:"next"` // when it is ordered next; zero: now
	Failures  int       `json:"failures"`
	LastError string    `json:"last_error,omitempty"`
}
