// Package conf is Aviary's configuration: one root struct with a section
// per part of the server, defaults in one function, YAML loading with
// unknown keys refused, AVIARY_* environment overrides, and validation whose
// errors name the key (and the file line when the key came from a file).
//
// Every field's comment is operator documentation and states the default;
// conf/example.yaml repeats them with every key.
package conf

import (
	"slices"
	"strings"
	"time"
)

// Config is the whole configuration of one node. Code reads it as an
// immutable snapshot. The Live keys change while the node runs, from the
// admin console or on a reload (`aviary serve` on SIGHUP), which builds a
// new Config and applies it only when every changed key is Live; a change
// of any other key needs a restart and is refused whole.
type Config struct {
	// Domain is the XMPP domain this node serves. Default "localhost".
	Domain string `yaml:"domain"`
	// DataDir holds the embedded database, generated certificates and other
	// node-local state. Default "./data".
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error. Default "info".
	LogLevel string `yaml:"log_level"`
	// LogFormat is "text" or "json". Default "text".
	LogFormat string `yaml:"log_format"`

	TLS      TLSConfig      `yaml:"tls"`
	C2S      C2SConfig      `yaml:"c2s"`
	Database DatabaseConfig `yaml:"database"`
	Cluster  ClusterConfig  `yaml:"cluster"`
	S2S      S2SConfig      `yaml:"s2s"`
	HTTP     HTTPConfig     `yaml:"http"`
	Admin    AdminConfig    `yaml:"admin"`
	Plugins  PluginsConfig  `yaml:"plugins"`
	MAM      MAMConfig      `yaml:"mam"`
	MUC      MUCConfig      `yaml:"muc"`
	// ExternalServices are the STUN and TURN servers clients are told
	// about (XEP-0215).
	ExternalServices ExternalServicesConfig `yaml:"external_services"`
	// Components are external components (XEP-0114).
	Components ComponentsConfig `yaml:"components"`
	// Upload is HTTP file upload (XEP-0363).
	Upload  UploadConfig  `yaml:"upload"`
	Balance BalanceConfig `yaml:"balance"`
	Runtime RuntimeConfig `yaml:"runtime"`
	// ServerInfo holds the XEP-0157 contact addresses.
	ServerInfo ServerInfoConfig `yaml:"server_info"`
}

// TLSConfig names the certificate for the domain. With neither file set, a
// self-signed certificate is generated into DataDir (and the log says so).
// Certificates obtained by ACME or imported with `aviary cert import` are
// kept in the shared store and win over both for the names they cover.
type TLSConfig struct {
	// CertFile is a PEM certificate chain. Default "" (generate).
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key for CertFile. Default "" (generate).
	KeyFile string `yaml:"key_file"`
	// SessionTickets is how clients resume TLS sessions (RFC 8446 §2.2):
	// "cluster" (any node resumes a TLS 1.3 session any node started, with
	// ticket keys derived from cluster.secret; without a secret, as
	// "node"), "node" (the node that started it only), or "off" (every
	// connection a full handshake). Default "cluster".
	SessionTickets string `yaml:"session_tickets"`

	ACME ACMEConfig `yaml:"acme"`
}

// LetsEncrypt is the directory URL of Let's Encrypt's production ACME
// server, tls.acme.directory's default.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// DefaultServiceNames are the labels put in front of the domain to form
// tls.acme.names' default: the names the domain's services (group chat,
// file upload, publish-subscribe) are reached at.
var DefaultServiceNames = []string{"conference", "upload", "pubsub"}

// ACMEConfig has the node get and renew its certificates from an ACME
// certificate authority (RFC 8555; Let's Encrypt by default). Certificates
// and the account are stored once in the shared database; one node of a
// cluster orders at a time and every node serves the result.
type ACMEConfig struct {
	// Enabled turns ACME on, which accepts the CA's terms of service
	// (Let's Encrypt's subscriber agreement). Default false.
	Enabled bool `yaml:"enabled"`
	// Directory is the CA's ACME directory URL. Default Let's Encrypt's
	// production server, https://acme-v02.api.letsencrypt.org/directory
	// (its staging server, for trying things out, is
	// https://acme-staging-v02.api.letsencrypt.org/directory).
	Directory string `yaml:"directory"`
	// Email is the contact address given to the CA for expiry and
	// account notices. Default "" (none).
	Email string `yaml:"email"`
	// Challenges are the validation methods to use, tried in this order:
	// "http-01" (the CA fetches a token over plain HTTP on port 80 of
	// the name: http.listen must receive it) and "tls-alpn-01" (the CA
	// connects with TLS to port 443: http.tls_listen or c2s.tls_listen
	// must receive it). After a failed attempt a name tries the next one.
	// Default [http-01, tls-alpn-01].
	Challenges []string `yaml:"challenges"`
	// RenewBefore is how long before expiry a certificate is renewed. A
	// certificate whose whole lifetime is shorter is renewed when a third
	// of its lifetime is left. Default 720h (30 days).
	RenewBefore time.Duration `yaml:"renew_before"`
	// Names are the names besides the domain that get a certificate of
	// their own: the domain's services. Default conference.DOMAIN,
	// upload.DOMAIN and pubsub.DOMAIN; an empty list orders for the domain
	// alone. Each name's DNS must point at the cluster.
	Names []string `yaml:"names"`
	// CAFile is a PEM file of certificate authorities trusted for the ACME
	// server's own HTTPS instead of the system's (a test CA such as
	// Pebble's). Default "" (the system's).
	CAFile string `yaml:"ca_file"`
}

// ACMENames returns the names ACME orders certificates for: the domain
// first, then tls.acme.names (or their default), lowercased, without
// duplicates.
func (c *Config) ACMENames() []string {
	names := c.TLS.ACME.Names
	if names == nil {
		for _, s := range DefaultServiceNames {
			names = append(names, s+"."+c.Domain)
		}
	}
	out := []string{strings.ToLower(c.Domain)}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// C2SConfig is the client-to-server listener and session behaviour.
type C2SConfig struct {
	// Listen is the STARTTLS listener address; "" or "off" turns it off.
	// Port 0 or -1 picks a free port. Default ":5222".
	Listen string `yaml:"listen"`
	// TLSListen is the direct-TLS listener (XEP-0368); "" or "off" turns it
	// off. Default ":5223".
	TLSListen string `yaml:"tls_listen"`
	// RequireTLS refuses authentication before STARTTLS. Default true.
	RequireTLS *bool `yaml:"require_tls"`
	// AllowRegistration enables in-band registration (XEP-0077) of new
	// accounts. Password changes are always allowed. Default false.
	AllowRegistration bool `yaml:"allow_registration"`
	// RegistrationLimit is how many in-band registration attempts one
	// client address may make per hour on one node; more get
	// resource-constraint. -1 means no limit. Default 10.
	RegistrationLimit int `yaml:"registration_limit"`
	// ResourceConflict is what happens when a client binds a resource that is
	// already online: "kick_old" (RFC 6120's usual choice), "reject", or
	// "new_resource" (the server assigns another). Default "kick_old".
	ResourceConflict string `yaml:"resource_conflict"`
	// MaxStanzaBytes bounds one stanza; bigger ones close the stream with
	// policy-violation. Default 262144 (256 KiB).
	MaxStanzaBytes int `yaml:"max_stanza_bytes"`
	// PreAuthMaxStanzaBytes bounds one element before the stream has
	// authenticated (SASL, STARTTLS, registration): an unauthenticated
	// stream cannot make the node hold a 256 KiB stanza. At least 1024;
	// above max_stanza_bytes, max_stanza_bytes applies. Default 16384
	// (16 KiB).
	PreAuthMaxStanzaBytes int `yaml:"preauth_max_stanza_bytes"`
	// MaxUnauthenticatedPerAddress is how many streams one client address
	// may have open before they authenticate; a further one is closed
	// with policy-violation. Counts TCP streams and BOSH and WebSocket
	// sessions. -1 means no limit. Default 32.
	MaxUnauthenticatedPerAddress int `yaml:"max_unauthenticated_per_address"`
	// AuthTimeout closes connections that have not authenticated in time.
	// Default 30s.
	AuthTimeout time.Duration `yaml:"auth_timeout"`
	// PingInterval is how long a session may be silent before the server
	// sends an XMPP ping; IdleTimeout is how long after that it waits before
	// closing the connection as dead. Defaults 4m and 1m.
	PingInterval time.Duration `yaml:"ping_interval"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	// SASLFailureDelay is the base delay added after each failed
	// authentication from one address; it doubles per failure up to 5s.
	// Default 1s.
	SASLFailureDelay time.Duration `yaml:"sasl_failure_delay"`
	// SASLAccountFailures is how many failed authentications an account
	// may have (from any addresses, within 15 minutes) before attempts on
	// it are spaced out: each further failure doubles the spacing, from
	// sasl_failure_delay up to sasl_max_account_delay. Attempts then wait
	// their turn, one address after another, so an attacker slows an
	// account's logins but never locks its owner out. -1 turns the
	// per-account limit off. Default 5.
	SASLAccountFailures int `yaml:"sasl_account_failures"`
	// SASLMaxAccountDelay caps the spacing of attempts on one account.
	// Default 30s.
	SASLMaxAccountDelay time.Duration `yaml:"sasl_max_account_delay"`
	// SMResumeTimeout is how long a detached stream-management session waits
	// for resumption (XEP-0198). Default 5m.
	SMResumeTimeout time.Duration `yaml:"sm_resume_timeout"`
	// MaxSessions is the node's session limit; above it new streams are
	// redirected elsewhere or refused (resource-constraint). 0 means the
	// open-file limit decides: the soft RLIMIT_NOFILE less a tenth (at
	// least 256) kept for connections that are not sessions, so the node
	// refuses streams instead of failing to accept them. Default 0.
	MaxSessions int `yaml:"max_sessions"`
	// MaxTLSHandshakesPerSecond is how many TLS handshakes (STARTTLS and
	// direct TLS on the c2s listeners) this node starts per second, with
	// bursts of as many. A new stream that would wait longer than
	// admission_wait for its turn is shed: sent to a less loaded node with
	// see-other-host, or refused with resource-constraint when no node can
	// take it (a direct-TLS connection, which cannot hear either before
	// its handshake, is closed). What a reconnection storm costs a node is
	// mostly handshakes and logins: bounding them keeps its established
	// sessions responsive while it absorbs the storm at its own pace. -1
	// means no limit. Default 1000.
	MaxTLSHandshakesPerSecond int `yaml:"max_tls_handshakes_per_second"`
	// MaxLoginsPerSecond is how many SASL authentications (every
	// transport; a stream-management resumption logs in too) this node
	// starts per second, with bursts of as many; beyond admission_wait a
	// new stream is shed as above. -1 means no limit. Default 500.
	MaxLoginsPerSecond int `yaml:"max_logins_per_second"`
	// AdmissionWait is how long a new stream may wait for its turn under
	// max_tls_handshakes_per_second and max_logins_per_second before the
	// node sheds it; a node whose turns are more than half that far ahead
	// publishes that it sheds load, so the dispatcher and the other nodes
	// stop sending clients to it. Default 2s.
	AdmissionWait time.Duration `yaml:"admission_wait"`
	// AdmissionLatency, when set, is the scheduling latency this node
	// keeps its established sessions under while it takes new streams
	// (the admission governor): every quarter second it reads how long its
	// runnable goroutines waited for a CPU, and while the 99th percentile
	// is above this it lowers both rates above (down to a tenth of them),
	// raising them again once it is under half of it. A node slowed by a
	// storm of logins then takes them at the pace its CPU allows and sheds
	// the rest to nodes with room. Measured on a two-core machine shared
	// with the storm's clients it cut the undisturbed sessions' p99 by a
	// tenth and doubled the time the storm took to log back in
	// (server/balance/STORMS.md), so it is off unless set; try 50ms on
	// nodes whose CPU logins dominate. 0 (default) turns it off.
	AdmissionLatency time.Duration `yaml:"admission_latency"`
	// MaxNegotiating bounds the accept queue: the streams accepted and not
	// yet authenticated on this node, from every address and transport,
	// direct-TLS handshakes included. A stream past it is shed at once.
	// -1 means no limit. Default 2000.
	MaxNegotiating int `yaml:"max_negotiating"`
	// SCRAMIterations is the PBKDF2 iteration count for new credentials.
	// Default 4096.
	SCRAMIterations int `yaml:"scram_iterations"`
	// OfflineLimit is how many offline messages one user may have queued;
	// more are bounced with service-unavailable. Default 1000.
	OfflineLimit int `yaml:"offline_limit"`
	// OfflineMaxBytes caps the size of one user's offline messages
	// together; a message that would pass it is bounced with
	// service-unavailable, like one past OfflineLimit. Default 10485760
	// (10 MiB).
	OfflineMaxBytes int `yaml:"offline_max_bytes"`
	// OfflineRetryMaxBytes caps, per node, the messages kept in memory
	// because offline storage did not answer (the database timed out or
	// could not be reached): they are stored when it answers again, and
	// their senders' acknowledgements (XEP-0198) wait until then. A message
	// that would pass the cap is bounced with an error, as every message
	// was before. Each message counts its size plus 256 bytes. -1 keeps
	// none. Default 67108864 (64 MiB).
	OfflineRetryMaxBytes int `yaml:"offline_retry_max_bytes"`
	// OfflineRetryMaxWait is how long a message waits for offline storage
	// to answer before it is bounced to its sender with an error. Default
	// 10m.
	OfflineRetryMaxWait time.Duration `yaml:"offline_retry_max_wait"`
	// RosterMaxItems is how many contacts one roster may hold, counting
	// the entries that only remember a subscription request waiting for
	// an answer. A roster set or a subscription that would add one more is
	// refused (not-allowed to the user, resource-constraint to a contact
	// asking to subscribe). Default 1000.
	RosterMaxItems int `yaml:"roster_max_items"`
	// RosterMaxItemBytes caps one roster item: its JID, name and group
	// names, plus 64 bytes of markup and 15 per group. A bigger one is
	// refused with not-acceptable (RFC 6121 §2.3.3). At least 256.
	// RosterMaxItems times this must stay within 2 MiB, half of what a
	// session may queue for its client, so that a full roster can always
	// be fetched. Default 2048.
	RosterMaxItemBytes int `yaml:"roster_max_item_bytes"`
	// RosterMaxPending is how many subscription requests may wait for one
	// user's answer; more are refused with resource-constraint until the
	// user answers some. Those waiting are sent again at each login, paced
	// like offline messages. Default 100.
	RosterMaxPending int `yaml:"roster_max_pending"`
	// OfflineExpiry is how long an offline message is kept; older ones are
	// deleted by the cluster's senior node (the only node when alone) once
	// an hour. Default 720h (30 days).
	OfflineExpiry time.Duration `yaml:"offline_expiry"`
	// FASTTokens lets clients exchange their password once for a token
	// and then log in with one round trip (XEP-0484 FAST, over SASL2 on
	// an encrypted stream). Tokens are kept in the shared database, so
	// any node of the cluster accepts them. Default true.
	FASTTokens *bool `yaml:"fast_tokens"`
	// FASTTokenLifetime is how long a FAST token stays valid. A client
	// that logs in with a token past half its lifetime gets a new one.
	// At least 1m. Default 504h (21 days).
	FASTTokenLifetime time.Duration `yaml:"fast_token_lifetime"`
}

// ServerInfoConfig lists the contact addresses of the service (XEP-0157),
// published in the server's disco#info so that clients and other servers
// know where to report abuse or ask for help. Each entry is a URI with a
// scheme (mailto:abuse@example.com, xmpp:admin@example.com,
// https://example.com/support). Default: none for every kind.
type ServerInfoConfig struct {
	// Abuse receives abuse reports (spam, harassment from this service).
	Abuse []string `yaml:"abuse"`
	// Admin reaches the service's administrators.
	Admin []string `yaml:"admin"`
	// Feedback receives feedback about the service.
	Feedback []string `yaml:"feedback"`
	// Sales answers commercial questions.
	Sales []string `yaml:"sales"`
	// Security receives reports of security problems.
	Security []string `yaml:"security"`
	// Support helps the service's users.
	Support []string `yaml:"support"`
	// Status tells about the state of the service (outages, maintenance).
	Status []string `yaml:"status"`
}

// DatabaseConfig selects the store.
type DatabaseConfig struct {
	// URL is a postgres:// URL. "" uses the embedded SQLite store in DataDir.
	// Environment: AVIARY_DATABASE. Default "".
	URL string `yaml:"url" env:"AVIARY_DATABASE"`
	// PoolSize is the maximum number of PostgreSQL connections. Default 10.
	PoolSize int `yaml:"pool_size"`
	// Timeout bounds every database call; past it the stanza that needed the
	// database gets an error instead of waiting. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// StartupRetries and StartupRetryInterval: how often a starting node
	// tries to reach PostgreSQL before it gives up (a database still
	// starting, or down for a moment). Wrong credentials or a missing
	// database fail at once. Defaults 10 and 3s.
	StartupRetries       int           `yaml:"startup_retries"`
	StartupRetryInterval time.Duration `yaml:"startup_retry_interval"`
}

// ClusterConfig configures clustering. With Hazelcast empty the node runs
// alone on cluster/local.
type ClusterConfig struct {
	// Hazelcast lists member addresses (host:port); non-empty enables
	// Hazelcast clustering. Default none.
	Hazelcast []string `yaml:"hazelcast"`
	// HazelcastClusterName is the Hazelcast cluster name. Default "aviary".
	HazelcastClusterName string `yaml:"hazelcast_cluster_name"`
	// HazelcastConfigFile is a JSON file with hazelcast-go-client settings
	// for anything not covered here. Default "".
	HazelcastConfigFile string `yaml:"hazelcast_config_file"`
	// NodeName is this node's stable, unique name. Default: the host name.
	NodeName string `yaml:"node_name"`
	// Listen is the node-to-node link address. Default ":5290".
	Listen string `yaml:"listen"`
	// Advertise is the link address other nodes dial; default Listen with
	// the bound port.
	Advertise string `yaml:"advertise"`
	// Secret authenticates node-to-node links; every node needs the same.
	// The links' TLS key is derived from it. Default "" (required when
	// Hazelcast is set).
	Secret string `yaml:"secret"`
	// PlaintextLinks sends node-to-node links unencrypted (still
	// authenticated by Secret): only on a private network, where TLS is an
	// avoidable cost. Every node needs the same value. Default false
	// (links are TLS 1.3).
	PlaintextLinks bool `yaml:"plaintext_links"`
	// StartupRetries and StartupRetryInterval: how often to try reaching
	// Hazelcast at start before running alone. Defaults 10 and 3s.
	StartupRetries       int           `yaml:"startup_retries"`
	StartupRetryInterval time.Duration `yaml:"startup_retry_interval"`
	// OperationTimeout bounds one cluster operation. Default 5s.
	OperationTimeout time.Duration `yaml:"operation_timeout"`
	// HeartbeatInterval and NodeTTL: how often a node refreshes its
	// membership entry and how long until silent nodes count as dead.
	// Defaults 2s and 10s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	NodeTTL           time.Duration `yaml:"node_ttl"`
	// CrashSafety keeps every message a client sent safe from the death
	// of any one node: the client's stream-management acknowledgement
	// waits until a second node holds a copy, and the copies are kept
	// until the recipient's client acknowledged the message (or it was
	// stored offline); when a node dies the survivors route their copies
	// again (server/router/CRASHSAFETY.md). false saves that work and
	// loses what a crashed node held, as before. Default true.
	CrashSafety *bool `yaml:"crash_safety"`
	// CrashResumeWait is how long the survivors of a crash wait, once
	// the node is found dead, for the clients of its resumable
	// stream-management sessions to try to resume them on another node
	// before routing again the messages those sessions had not had
	// acknowledged: the resumption fails, but its h says how many the
	// client received, and those are not sent twice (with crash safety
	// on). 0 does not wait (a resumption tried before the node was found
	// dead still counts). Default 10s.
	CrashResumeWait *time.Duration `yaml:"crash_resume_wait"`
}

// S2SConfig configures federation.
type S2SConfig struct {
	// Listen is the server-to-server listener; "" or "off" disables
	// federation. Default "" (off).
	Listen string `yaml:"listen"`
	// Hosts maps a remote domain to host:port, overriding DNS.
	Hosts map[string]string `yaml:"hosts"`
	// DialbackSecret signs Server Dialback keys; all nodes of a cluster share
	// it. Default: generated per node (fine for one node).
	DialbackSecret string `yaml:"dialback_secret"`
	// RequireValidCerts refuses peers whose certificate does not
	// authenticate them (no dialback fallback). Default false.
	RequireValidCerts bool `yaml:"require_valid_certs"`
	// CAFile adds trusted CA certificates for peers. Default "" (system roots).
	CAFile string `yaml:"ca_file"`
	// ConnectTimeout bounds setting up an outgoing stream. Default 15s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// IdleTimeout closes idle s2s streams. Default 10m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// HTTPConfig is the listener for BOSH, WebSocket, host-meta and the dispatcher.
type HTTPConfig struct {
	// Listen is the plain HTTP listener; "" or "off" turns it off. Default "" (off).
	Listen string `yaml:"listen"`
	// TLSListen is the HTTPS listener; "" or "off" turns it off. Default "" (off).
	TLSListen string `yaml:"tls_listen"`
	// CORSOrigins lists origins allowed to use BOSH from a browser; "*" any.
	// Default ["*"].
	CORSOrigins []string `yaml:"cors_origins"`
	// BOSHMaxWait caps the client's wait attribute. Default 60s.
	BOSHMaxWait time.Duration `yaml:"bosh_max_wait"`
	// BOSHInactivity is the inactivity timeout announced to clients. Default 60s.
	BOSHInactivity time.Duration `yaml:"bosh_inactivity"`
	// BOSHMaxPause caps a client's pause request. Default 120s.
	BOSHMaxPause time.Duration `yaml:"bosh_max_pause"`
	// BOSHHold and BOSHRequests cap the hold and requests attributes.
	// Defaults 1 and 2.
	BOSHHold     int `yaml:"bosh_hold"`
	BOSHRequests int `yaml:"bosh_requests"`
	// BOSHPolling is the shortest polling interval announced to BOSH
	// clients; empty requests faster than that end the session with
	// policy-violation (XEP-0124 §11, §12). Default 1s.
	BOSHPolling time.Duration `yaml:"bosh_polling"`
	// BOSHURL and WebSocketURL are the public endpoint URLs that
	// /.well-known/host-meta names (XEP-0156), e.g.
	// "https://chat.example.com/http-bind". Default "": derived from the
	// request's Host and scheme.
	BOSHURL      string `yaml:"bosh_url"`
	WebSocketURL string `yaml:"websocket_url"`
	// PlainSecure says when a plain-HTTP BOSH or WebSocket session counts as
	// encrypted (so that SASL PLAIN and require_tls accept it): "never",
	// "loopback" (requests from a loopback address, e.g. a TLS-terminating
	// proxy on the same host) or "always" (behind a TLS-terminating proxy).
	// HTTPS sessions are always secure. Default "loopback".
	PlainSecure string `yaml:"plain_secure"`
	// WebSocketPingInterval is how often an idle WebSocket is pinged; a
	// missing pong within the interval closes it. Default 30s.
	WebSocketPingInterval time.Duration `yaml:"websocket_ping_interval"`
	// ReadHeaderTimeout bounds reading a request's line and headers; a
	// slower client is disconnected. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadBodyTimeout bounds reading a request's body, from the end of its
	// headers to its last byte; a slower client gets 408 and is
	// disconnected. It does not limit how long a BOSH request is held
	// (bosh_max_wait) or how long a WebSocket lives after the upgrade.
	// Bodies are capped at c2s.max_stanza_bytes. Default 30s.
	ReadBodyTimeout time.Duration `yaml:"read_body_timeout"`
	// WriteTimeout bounds writing one response, from its first byte; a
	// client that does not read it is disconnected. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// AdminConfig is the admin console, JSON API and metrics listener.
type AdminConfig struct {
	// Listen is the admin listener. Default "127.0.0.1:9090"; "off" disables.
	Listen string `yaml:"listen"`
	// Admins are bare JIDs allowed to sign in with their XMPP password.
	Admins []string `yaml:"admins"`
	// CertFile and KeyFile turn on TLS for the admin listener. Default off.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ReadTimeout bounds reading one request's body (the largest is a
	// plugin upload, up to 64 MiB); a slower client gets 408 and is
	// disconnected. Headers must arrive within 10s, a response be read
	// within 1m, and an idle connection is closed after 2m. Default 1m.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MetricsToken, when set, must come with every request to /metrics as
	// "Authorization: Bearer <token>" (Prometheus: authorization:
	// {credentials: <token>}); at least 16 characters. Default "": /metrics
	// is open to whoever reaches the admin listener, which listens on
	// loopback by default (metrics hold counts, node and plugin names and
	// versions, never accounts or messages). A node serving /metrics
	// without a token on a non-loopback address logs a warning at start.
	MetricsToken string `yaml:"metrics_token"`
	// Profiling serves Go's runtime profiles (CPU, heap, goroutines,
	// mutex and block contention, execution traces) under /debug/pprof/ on
	// the admin listener, behind admin.metrics_token like /metrics: what a
	// node spends its CPU on under load can only be found on the running
	// node (`go tool pprof -http=: http://127.0.0.1:9090/debug/pprof/profile`).
	// A profile holds function names and stacks, never accounts or
	// messages, but taking one costs the node CPU; so it is off unless
	// asked for, and on a non-loopback listener it needs a token. Default
	// false.
	Profiling bool `yaml:"profiling"`
}

// PluginsConfig selects plugins and holds their settings.
type PluginsConfig struct {
	// Disabled lists built-in plugin IDs to turn off. Default none.
	Disabled []string `yaml:"disabled"`
	// Dir is where this node keeps what it derives from third-party
	// plugins: their compiled machine code (Dir/compiled), so that a
	// restart loads them without compiling again. Default DataDir/plugins.
	Dir string `yaml:"dir"`
	// Settings are per-plugin settings keyed by plugin ID.
	Settings map[string]map[string]any `yaml:"settings"`
	// Wasm bounds what the node does for a third-party (WebAssembly)
	// plugin while it handles one stanza.
	Wasm WasmConfig `yaml:"wasm"`
	// Rollout judges each node during a rolling plugin upgrade.
	Rollout RolloutConfig `yaml:"rollout"`
}

// RolloutConfig is how a rolling upgrade of a third-party plugin judges
// each node: after loading the new version, the node is watched on real
// stanzas (every call into the plugin) for HealthWindow before the next
// node moves. Too many failed calls (traps, timeouts) make it unhealthy:
// it and every node upgraded before it go back to the version they ran,
// and the rollout stops. The coordinator reads these settings; give every
// node the same.
type RolloutConfig struct {
	// HealthWindow is how long each node's new version is watched.
	// Default 30s.
	HealthWindow time.Duration `yaml:"health_window"`
	// MaxFailures is how many failed calls within the window make a node
	// unhealthy. Default 3.
	MaxFailures int `yaml:"max_failures"`
	// MaxFailureRatio: a node is also unhealthy when more than this share
	// of its calls within the window failed (between 0 and 1; 1 turns the
	// ratio off). Default 0.1.
	MaxFailureRatio float64 `yaml:"max_failure_ratio"`
}

// WasmConfig bounds the host side of WebAssembly plugins. The guest's own
// memory is capped by the runtime (64 MiB); these bound what the node
// copies out of it and keeps for it. A call past a bound is refused with
// an error the plugin sees, logged and counted
// (aviary_plugin_refused_calls_total), and a stanza the plugin then
// swallows is answered with <resource-constraint/>.
type WasmConfig struct {
	// MaxHostCalls is how many host calls (log, send, set_stanza, kv_get,
	// kv_set) a plugin may make while handling one stanza. Default 64.
	MaxHostCalls int `yaml:"max_host_calls"`
	// MaxHostBytes is how many bytes the node copies out of a plugin's
	// memory while it handles one stanza: log text, stanzas it sends, its
	// replacement stanza, key-value keys and values. At least
	// c2s.max_stanza_bytes. Default four times c2s.max_stanza_bytes
	// (1 MiB with its default).
	MaxHostBytes int `yaml:"max_host_bytes"`
	// MaxKVBytes is the size of one plugin's key-value store (keys plus
	// values), held in memory on every node and in the shared database.
	// Default 1048576 (1 MiB).
	MaxKVBytes int `yaml:"max_kv_bytes"`
}

// MAMConfig is the message archive (XEP-0313, plugin xep0313.mam; turn it
// off with plugins.disabled).
type MAMConfig struct {
	// Default is what is archived for an account that has set no
	// preferences (XEP-0441): "always" (every message), "roster" (only
	// messages with contacts in the roster) or "never". Default "always".
	Default string `yaml:"default"`
	// ExpireAfter is how long archived messages are kept; the cluster's
	// senior node (the only node when alone) deletes older ones once an
	// hour. 0 keeps them until the account is deleted. A group chat
	// room's owner may have the room's archive keep less, never more
	// (muc#roomconfig_archive_expires). Default 0.
	ExpireAfter time.Duration `yaml:"expire_after"`
	// MaxPage caps how many messages one query returns (RSM <max/>, and
	// the page size when the client names none). Default 100.
	MaxPage int `yaml:"max_page"`
}

// MUCConfig is group chat (XEP-0045, plugin xep0045.muc): a multi-user
// chat service at a subdomain of the domain, its rooms hosted across the
// cluster.
type MUCConfig struct {
	// Enabled serves the group chat service. Default true.
	Enabled *bool `yaml:"enabled"`
	// Domain is the service's address, a subdomain of domain. Default
	// "" (conference.<domain>; see Config.MUCDomain).
	Domain string `yaml:"domain"`
	// Name is the service's name in disco. Default "Chatrooms".
	Name string `yaml:"name"`
	// History is the most messages a room keeps to send to a new
	// occupant (a room's muc#roomconfig_historylength may ask for fewer).
	// Default 20.
	History int `yaml:"history"`
	// MaxOccupants bounds the occupants of one room (a room's
	// muc#roomconfig_maxusers may ask for fewer). Default 1000.
	MaxOccupants int `yaml:"max_occupants"`
	// MessageRate is how many messages (groupchat and private) one
	// occupant may send a second on average; past it and MessageBurst
	// the room answers resource-constraint. Default 5.
	MessageRate float64 `yaml:"message_rate"`
	// MessageBurst is how many messages an occupant may send at once
	// before MessageRate applies. Default 20.
	MessageBurst int `yaml:"message_burst"`
	// Create says who may create rooms: "local" (users of this domain),
	// "admins" (the configured administrators) or "anyone" (federated
	// users too). Default "local".
	Create string `yaml:"create"`
	// MaxRoomsPerUser bounds the rooms one account (bare JID) may own
	// when it creates another: a join that would create a room is
	// refused with not-allowed once the user created this many rooms
	// that still exist and still name them owner (persistent rooms, and
	// temporary ones until they empty), counted across the cluster.
	// Destroying a room, or giving its ownership away, frees its slot.
	// The configured administrators are exempt. -1 means no limit. Default 100: far
	// more rooms than a person or a team runs, while it stops one
	// account (a script, a stolen login) from filling the store and the
	// service's disco#items with rooms.
	MaxRoomsPerUser int `yaml:"max_rooms_per_user"`
}

// MUCDomain is the group chat service's domain: muc.domain, or
// conference.<domain> when it is empty.
func (c *Config) MUCDomain() string {
	if c.MUC.Domain != "" {
		return strings.ToLower(strings.TrimSuffix(c.MUC.Domain, "."))
	}
	return "conference." + strings.ToLower(c.Domain)
}

// On reports whether the group chat service runs.
func (m MUCConfig) On() bool { return m.Enabled == nil || *m.Enabled }

// ExternalServicesConfig lists the STUN and TURN servers that clients
// discover with XEP-0215 (plugin xep0215.extdisco) to set up audio and
// video calls behind NAT. TURN credentials are derived from a secret
// shared with the TURN server, the "TURN REST API" scheme of coturn's
// use-auth-secret/static-auth-secret and eturnal's secret: the username
// is "<expiry in Unix seconds>:<the user's bare JID>" and the password
// base64(HMAC-SHA1(secret, username)), so the TURN server checks them
// without asking Aviary. Every node must have the same list and secret.
type ExternalServicesConfig struct {
	// Secret is the shared secret for TURN credentials (coturn's
	// static-auth-secret). Default "": TURN services get only the static
	// username and password they name.
	Secret string `yaml:"secret"`
	// CredentialTTL is how long TURN credentials derived from Secret stay
	// valid; clients ask again when they expire. At least 1m. Default 24h.
	CredentialTTL time.Duration `yaml:"credential_ttl"`
	// Services are the servers listed, each with: type (stun, stuns,
	// turn or turns), host (name or address), port (default 3478 for
	// stun and turn, 5349 for stuns and turns), transport (udp or tcp;
	// default udp for stun and turn, tcp for stuns and turns), name (a
	// label for people, optional) and, for a TURN server that does not
	// take Secret's credentials, a static username and password. A TURN
	// service needs Secret or a username. Default none (XEP-0215 is not
	// advertised).
	Services []ExternalService `yaml:"services"`
}

// ComponentsConfig is the listener external components connect to
// (XEP-0114, plugin xep0114.component): gateways and bridges such as
// biboumi (IRC) that serve a subdomain of the domain. A component may
// connect to any node of the cluster, or to several at once; its domain
// is reached from every node and over s2s.
type ComponentsConfig struct {
	// Listen is the address components connect to. The protocol has no
	// TLS: bind it to loopback or a private network. Default "" (off).
	Listen string `yaml:"listen"`
	// Secrets maps each component's domain, a subdomain of domain (such
	// as irc.example.org), to the secret it authenticates with. Every
	// node needs the same map. Default none.
	Secrets map[string]string `yaml:"secrets"`
	// HandshakeTimeout is how long a new connection has to send its
	// stream header and handshake. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// UploadConfig is HTTP file upload (XEP-0363, plugin xep0363.upload): a
// service at upload.DOMAIN hands out slots, and the node's HTTP and HTTPS
// listeners take the PUT and serve the GET. Files are kept in the shared
// database in chunks, or in a directory every node mounts, so any node
// serves a file whichever node took it, and deleting an account deletes
// its files.
type UploadConfig struct {
	// URL is the public base URL of the HTTP(S) listeners that upload and
	// download URLs start with, such as https://upload.example.org:5443
	// (a load balancer in front of every node). Default "": the upload
	// service is off.
	URL string `yaml:"url"`
	// MaxFileSize is the largest file accepted, in bytes. Default
	// 104857600 (100 MiB).
	MaxFileSize int `yaml:"max_file_size"`
	// UserQuota is how many bytes of files one account may keep.
	// Default 1073741824 (1 GiB).
	UserQuota int `yaml:"user_quota"`
	// DomainQuota is how many bytes of files all accounts of the domain
	// may keep together, files and slots not yet used alike, counted
	// once for the whole cluster; 0 is no limit, anything else must be
	// at least max_file_size. Default 0 (the disk is the limit).
	DomainQuota int `yaml:"domain_quota"`
	// Store is where the contents of files are kept: "database" (the
	// shared database, in 256 KiB chunks) or "directory" (one file each
	// in upload.directory). Their descriptions (slots, owners, sizes,
	// expiry) stay in the database either way. Default "database".
	Store string `yaml:"store"`
	// Directory is, with store "directory", the absolute path of the
	// directory files are kept in: one shared filesystem (such as NFS)
	// mounted at this path on every node of the cluster, writable by the
	// user the nodes run as. Default "".
	Directory string `yaml:"directory"`
	// AllowedTypes are the content types accepted ("image/png"; "image/*"
	// for every image type). Default [] (any).
	AllowedTypes []string `yaml:"allowed_types"`
	// SlotTimeout is how long a slot may wait for its PUT. Default 5m.
	SlotTimeout time.Duration `yaml:"slot_timeout"`
	// ExpireAfter is how long an uploaded file is kept; one node of the
	// cluster deletes older files once an hour. 0 keeps them until their
	// account is deleted. Default 0.
	ExpireAfter time.Duration `yaml:"expire_after"`
}

// ExternalService is one STUN or TURN server (see ExternalServicesConfig).
type ExternalService struct {
	Type      string `yaml:"type"`
	Host      string `yaml:"host"`
	Port      int    `yaml:"port"`
	Transport string `yaml:"transport"`
	Name      string `yaml:"name"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// BalanceConfig is load publishing, redirects, draining and the dispatcher
// (server/balance).
type BalanceConfig struct {
	// C2SAddress, C2STLSAddress are the host:port clients should use for
	// this node's STARTTLS and direct-TLS listeners when the bound address
	// is not it (NAT, a wildcard bind). HTTPAddress and HTTPSAddress are the
	// same for the HTTP listeners (host:port). Default "": the bound
	// address, with a wildcard host replaced by cluster.advertise's host or
	// the machine's host name.
	C2SAddress    string `yaml:"c2s_address"`
	C2STLSAddress string `yaml:"c2s_tls_address"`
	HTTPAddress   string `yaml:"http_address"`
	HTTPSAddress  string `yaml:"https_address"`
	// Capacity is how many sessions count as a load of 1.0 when
	// c2s.max_sessions is 0 (with max_sessions set, load is
	// sessions/max_sessions). Default 10000.
	Capacity int `yaml:"capacity"`
	// LoadThreshold is the load above which new streams are redirected to a
	// less loaded node (served anyway when no node is below its threshold)
	// and the dispatcher stops naming this node. Default 0.9.
	LoadThreshold float64 `yaml:"load_threshold"`
	// PublishInterval is how often the node publishes its load in the
	// cluster. Default 2s.
	PublishInterval time.Duration `yaml:"publish_interval"`
	// DrainDeadline is how long a draining node waits for its sessions to
	// leave before it stops anyway. Default 2m.
	DrainDeadline time.Duration `yaml:"drain_deadline"`
	// DrainNotice is how long a draining node announces that it drains
	// (/dispatch/health and /readyz answer 503, the dispatcher and the
	// other nodes stop naming it) before it sends its sessions away, so
	// that a load balancer's health check has noticed by the time clients
	// reconnect and none is sent back to it. Keep it above the balancer's
	// check interval times its fall count (HAProxy "inter 2s fall 2": 4s).
	// Default 5s; 0 in a file means the default, a negative value sends
	// sessions away at once.
	DrainNotice time.Duration `yaml:"drain_notice"`
	// DrainRate is how many sessions per second a draining node sends
	// away, so the other nodes are not hit by every reconnection at once.
	// Default 1000.
	DrainRate int `yaml:"drain_rate"`
	// Weights are per-node weights for the dispatcher (node name → weight;
	// a node's load is divided by it). Default 1 for every node; 0 takes a
	// node out of the dispatcher.
	Weights map[string]float64 `yaml:"weights"`
	// RetryAfter is the Retry-After the dispatcher sends with 503 when every
	// node is over its limit. Default 30s.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// RuntimeConfig tunes the Go runtime under the node (server/gctune).
type RuntimeConfig struct {
	// GCMinHeadroomMB is the least heap growth, in MiB, the garbage
	// collector allows between cycles. Go's default (GOGC=100) lets the heap
	// grow by as much as is live, which on a node with a small live heap
	// means a collection every few megabytes of allocation (a login storm
	// collects many times a second); above GCMinHeadroomMB of live memory
	// the collector behaves as with GOGC=100. A negative value leaves the
	// collector alone, as does setting GOGC in the environment. Default 64.
	GCMinHeadroomMB int `yaml:"gc_min_headroom_mb"`
}

// ServerInfoList is one kind of XEP-0157 address: its key under
// server_info, the field of the serverinfo form, and the addresses.
type ServerInfoList struct {
	Key, Field string
	Addresses  []string
}

// Lists returns every kind of address in the order of XEP-0157's form,
// empty ones included.
func (s ServerInfoConfig) Lists() []ServerInfoList {
	return []ServerInfoList{
		{"abuse", "abuse-addresses", s.Abuse},
		{"admin", "admin-addresses", s.Admin},
		{"feedback", "feedback-addresses", s.Feedback},
		{"sales", "sales-addresses", s.Sales},
		{"security", "security-addresses", s.Security},
		{"status", "status-addresses", s.Status},
		{"support", "support-addresses", s.Support},
	}
}
