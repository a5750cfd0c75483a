package conf

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// MaxRosterBytes bounds a full roster result (c2s.roster_max_items times
// c2s.roster_max_item_bytes): half of the 4 MiB a client session may have
// queued before it is closed as a slow consumer, so a roster fetched while
// other stanzas wait still fits.
const MaxRosterBytes = 2 << 20

// MinRosterItemBytes is the least c2s.roster_max_item_bytes. A contact
// whose bare JID is longer than the limit less 64 bytes of markup cannot
// be in a roster (RFC 7622 allows 2047 bytes; real ones are far shorter).
const MinRosterItemBytes = 256

// Validate checks every part and returns all problems, each naming its
// key: one validator per section, in the order of the file.
func (c *Config) Validate() Errors {
	var v validator
	c.validateNode(&v)
	c.MAM.validate(&v)
	c.validateMUC(&v)
	c.TLS.validate(&v)
	v.errs = append(v.errs, c.validateACME()...)
	c.C2S.validate(&v)
	c.ServerInfo.validate(&v)
	c.Database.validate(&v)
	c.Cluster.validate(&v, c.Database)
	c.S2S.validate(&v)
	c.HTTP.validate(&v)
	c.Admin.validate(&v)
	c.Plugins.validate(&v, c.C2S)
	c.ExternalServices.validate(&v)
	c.Components.validate(&v, c.Domain)
	c.Upload.validate(&v)
	c.Balance.validate(&v)
	return v.errs
}

// validator collects the problems of a configuration.
type validator struct{ errs Errors }

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// addr checks a listener address (host:port, or off).
func (v *validator) addr(key, addr string) {
	if Off(addr) {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		v.add(key, "%q is not host:port (%v)", addr, err)
	}
}

// oneOf checks that a key has one of the allowed values.
func (v *validator) oneOf(key, value string, allowed ...string) {
	if slices.Contains(allowed, value) {
		return
	}
	v.add(key, "must be %s or %s, not %q", strings.Join(allowed[:len(allowed)-1], ", "), allowed[len(allowed)-1], value)
}

// nonNegative checks durations that must not be negative.
func (v *validator) nonNegative(durations ...keyed[time.Duration]) {
	for _, d := range durations {
		if d.v < 0 {
			v.add(d.key, "must not be negative, not %v", d.v)
		}
	}
}

// keyed is a value with the key it came from.
type keyed[T any] struct {
	key string
	v   T
}

func (c *Config) validateNode(v *validator) {
	if d, err := jid.Parse(c.Domain); err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		v.add("domain", "%q is not a valid XMPP domain", c.Domain)
	}
	v.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")
	v.oneOf("log_format", c.LogFormat, "text", "json")
}

// validateMUC checks the group chat service's keys (its domain must be a
// subdomain of domain).
func (c *Config) validateMUC(v *validator) {
	if !c.MUC.On() {
		return
	}
	d := c.MUCDomain()
	if j, err := jid.Parse(d); err != nil || j.Localpart() != "" || j.Resourcepart() != "" ||
		!strings.HasSuffix(d, "."+strings.ToLower(c.Domain)) {
		v.add("muc.domain", "%q must be a subdomain of %s", c.MUC.Domain, c.Domain)
	}
	if c.MUC.History < 0 || c.MUC.History > 1000 {
		v.add("muc.history", "must be between 0 and 1000, not %d", c.MUC.History)
	}
	if c.MUC.MaxOccupants < 1 {
		v.add("muc.max_occupants", "must be at least 1, not %d", c.MUC.MaxOccupants)
	}
	if c.MUC.MessageRate <= 0 {
		v.add("muc.message_rate", "must be more than 0, not %v", c.MUC.MessageRate)
	}
	if c.MUC.MessageBurst < 1 {
		v.add("muc.message_burst", "must be at least 1, not %d", c.MUC.MessageBurst)
	}
	v.oneOf("muc.create", c.MUC.Create, "local", "admins", "anyone")
	if c.MUC.MaxRoomsPerUser < -1 {
		v.add("muc.max_rooms_per_user", "must be at least 1, or -1 for no limit, not %d", c.MUC.MaxRoomsPerUser)
	}
}

func (c MAMConfig) validate(v *validator) {
	v.oneOf("mam.default", c.Default, "always", "roster", "never")
	if c.ExpireAfter < 0 {
		v.add("mam.expire_after", "must not be negative")
	}
	if c.MaxPage < 1 || c.MaxPage > 1000 {
		v.add("mam.max_page", "must be between 1 and 1000, not %d", c.MaxPage)
	}
}

func (c TLSConfig) validate(v *validator) {
	if (c.CertFile == "") != (c.KeyFile == "") {
		v.add("tls.cert_file", "cert_file and key_file must be set together")
	}
	v.oneOf("tls.session_tickets", c.SessionTickets, "cluster", "node", "off")
}

func (c C2SConfig) validate(v *validator) {
	v.addr("c2s.listen", c.Listen)
	v.addr("c2s.tls_listen", c.TLSListen)
	v.oneOf("c2s.resource_conflict", c.ResourceConflict, "kick_old", "reject", "new_resource")
	if c.MaxStanzaBytes < 1024 {
		v.add("c2s.max_stanza_bytes", "must be at least 1024, not %d", c.MaxStanzaBytes)
	}
	if c.PreAuthMaxStanzaBytes < 1024 {
		v.add("c2s.preauth_max_stanza_bytes", "must be at least 1024, not %d", c.PreAuthMaxStanzaBytes)
	}
	for _, l := range []keyed[int]{
		{"c2s.max_unauthenticated_per_address", c.MaxUnauthenticatedPerAddress},
		{"c2s.max_tls_handshakes_per_second", c.MaxTLSHandshakesPerSecond},
		{"c2s.max_logins_per_second", c.MaxLoginsPerSecond},
		{"c2s.max_negotiating", c.MaxNegotiating},
		{"c2s.registration_limit", c.RegistrationLimit},
		{"c2s.sasl_account_failures", c.SASLAccountFailures},
	} {
		if l.v < -1 {
			v.add(l.key, "must be -1 (no limit) or more, not %d", l.v)
		}
	}
	if c.SCRAMIterations < 4096 {
		v.add("c2s.scram_iterations", "must be at least 4096 (RFC 7677), not %d", c.SCRAMIterations)
	}
	if c.OfflineLimit < 1 {
		v.add("c2s.offline_limit", "must be at least 1, not %d", c.OfflineLimit)
	}
	if c.OfflineMaxBytes < c.MaxStanzaBytes {
		v.add("c2s.offline_max_bytes", "must be at least c2s.max_stanza_bytes (%d), not %d", c.MaxStanzaBytes, c.OfflineMaxBytes)
	}
	if c.OfflineRetryMaxBytes != -1 && c.OfflineRetryMaxBytes < c.MaxStanzaBytes {
		v.add("c2s.offline_retry_max_bytes", "must be -1 (keep none) or at least c2s.max_stanza_bytes (%d), not %d", c.MaxStanzaBytes, c.OfflineRetryMaxBytes)
	}
	if c.OfflineRetryMaxWait <= 0 {
		v.add("c2s.offline_retry_max_wait", "must be positive, not %v", c.OfflineRetryMaxWait)
	}
	if c.RosterMaxItems < 1 {
		v.add("c2s.roster_max_items", "must be at least 1, not %d", c.RosterMaxItems)
	}
	if c.RosterMaxItemBytes < MinRosterItemBytes {
		v.add("c2s.roster_max_item_bytes", "must be at least %d, not %d", MinRosterItemBytes, c.RosterMaxItemBytes)
	} else if c.RosterMaxItems > 0 && int64(c.RosterMaxItems)*int64(c.RosterMaxItemBytes) > MaxRosterBytes {
		v.add("c2s.roster_max_items", "%d items of c2s.roster_max_item_bytes %d make a roster of up to %d bytes; keep the product within %d (half of what a session may queue for its client) so a full roster can be fetched",
			c.RosterMaxItems, c.RosterMaxItemBytes, int64(c.RosterMaxItems)*int64(c.RosterMaxItemBytes), MaxRosterBytes)
	}
	if c.RosterMaxPending < 1 {
		v.add("c2s.roster_max_pending", "must be at least 1, not %d", c.RosterMaxPending)
	}
	if c.OfflineExpiry < 0 {
		v.add("c2s.offline_expiry", "must not be negative")
	}
	if c.FASTTokenLifetime < time.Minute {
		v.add("c2s.fast_token_lifetime", "must be at least 1m, not %v", c.FASTTokenLifetime)
	}
	if c.MaxSessions < 0 {
		v.add("c2s.max_sessions", "must not be negative")
	}
	if c.AdmissionWait <= 0 {
		v.add("c2s.admission_wait", "must be positive, not %v", c.AdmissionWait)
	}
	if c.AdmissionLatency < 0 {
		v.add("c2s.admission_latency", "must not be negative (0 turns the governor off), not %v", c.AdmissionLatency)
	}
	v.nonNegative(
		keyed[time.Duration]{"c2s.auth_timeout", c.AuthTimeout}, keyed[time.Duration]{"c2s.ping_interval", c.PingInterval},
		keyed[time.Duration]{"c2s.idle_timeout", c.IdleTimeout}, keyed[time.Duration]{"c2s.sasl_failure_delay", c.SASLFailureDelay},
		keyed[time.Duration]{"c2s.sm_resume_timeout", c.SMResumeTimeout}, keyed[time.Duration]{"c2s.sasl_max_account_delay", c.SASLMaxAccountDelay},
	)
}

func (c ServerInfoConfig) validate(v *validator) {
	for _, l := range c.Lists() {
		for i, a := range l.Addresses {
			if u, err := url.Parse(a); err != nil || u.Scheme == "" || (u.Opaque == "" && u.Host == "" && u.Path == "") {
				v.add("server_info."+l.Key, "entry %d (%q) is not a URI with a scheme, such as mailto:abuse@example.com or xmpp:admin@example.com", i+1, a)
			}
		}
	}
}

func (c DatabaseConfig) validate(v *validator) {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			v.add("database.url", "must be a postgres:// URL")
		}
	}
	if c.PoolSize < 1 {
		v.add("database.pool_size", "must be at least 1")
	}
	if c.StartupRetries < 1 {
		v.add("database.startup_retries", "must be at least 1, not %d", c.StartupRetries)
	}
	if c.StartupRetryInterval <= 0 {
		v.add("database.startup_retry_interval", "must be positive, not %v", c.StartupRetryInterval)
	}
}

// validate checks the cluster section; clustering needs the shared
// database too.
func (c ClusterConfig) validate(v *validator, db DatabaseConfig) {
	v.addr("cluster.listen", c.Listen)
	if len(c.Hazelcast) > 0 {
		for _, a := range c.Hazelcast {
			if _, _, err := net.SplitHostPort(a); err != nil {
				v.add("cluster.hazelcast", "%q is not host:port", a)
			}
		}
		if db.URL == "" {
			v.add("database.url", "clustering needs the shared PostgreSQL database")
		}
		if c.Secret == "" {
			v.add("cluster.secret", "required when cluster.hazelcast is set: node links authenticate with it")
		}
		if Off(c.Listen) {
			v.add("cluster.listen", "required when cluster.hazelcast is set")
		}
	}
	if c.HeartbeatInterval >= c.NodeTTL {
		v.add("cluster.node_ttl", "must be longer than cluster.heartbeat_interval")
	}
	if c.CrashResumeWait != nil && *c.CrashResumeWait < 0 {
		v.add("cluster.crash_resume_wait", "must not be negative")
	}
}

func (c S2SConfig) validate(v *validator) {
	v.addr("s2s.listen", c.Listen)
	for dom, hp := range c.Hosts {
		if _, _, err := net.SplitHostPort(hp); err != nil {
			v.add("s2s.hosts."+dom, "%q is not host:port", hp)
		}
	}
}

func (c HTTPConfig) validate(v *validator) {
	v.addr("http.listen", c.Listen)
	v.addr("http.tls_listen", c.TLSListen)
	v.oneOf("http.plain_secure", c.PlainSecure, "never", "loopback", "always")
	for _, u := range []keyed[string]{{"http.bosh_url", c.BOSHURL}, {"http.websocket_url", c.WebSocketURL}} {
		if u.v == "" {
			continue
		}
		if pu, err := url.Parse(u.v); err != nil || pu.Host == "" {
			v.add(u.key, "%q is not an absolute URL", u.v)
		}
	}
	v.nonNegative(
		keyed[time.Duration]{"http.read_header_timeout", c.ReadHeaderTimeout}, keyed[time.Duration]{"http.read_body_timeout", c.ReadBodyTimeout},
		keyed[time.Duration]{"http.write_timeout", c.WriteTimeout}, keyed[time.Duration]{"http.idle_timeout", c.IdleTimeout},
	)
	for _, o := range c.CORSOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			v.add("http.cors_origins", "%q is not an origin such as https://example.com", o)
		}
	}
}

func (c AdminConfig) validate(v *validator) {
	v.addr("admin.listen", c.Listen)
	for _, a := range c.Admins {
		if j, err := jid.Parse(a); err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
			v.add("admin.admins", "%q is not a bare JID", a)
		}
	}
	v.nonNegative(keyed[time.Duration]{"admin.read_timeout", c.ReadTimeout})
	if t := c.MetricsToken; t != "" && len(t) < 16 {
		v.add("admin.metrics_token", "must be at least 16 characters (a random token), not %d", len(t))
	}
	if c.Profiling && c.MetricsToken == "" && !loopbackListen(c.Listen) {
		v.add("admin.profiling", "needs admin.metrics_token when admin.listen (%q) is not a loopback address: profiles would be open to anyone reaching it", c.Listen)
	}
}

// loopbackListen reports whether a listen address names a loopback host
// ("localhost", 127.0.0.0/8 or ::1); "off" and unparsable addresses are
// loopback for this purpose (nothing is served, or v.addr reports them).
func loopbackListen(addr string) bool {
	if addr == "" || addr == "off" {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validate checks the plugins section; a plugin must be able to send or
// rewrite one client stanza.
func (c PluginsConfig) validate(v *validator, c2s C2SConfig) {
	if c.Wasm.MaxHostCalls < 1 {
		v.add("plugins.wasm.max_host_calls", "must be at least 1, not %d", c.Wasm.MaxHostCalls)
	}
	if c.Wasm.MaxHostBytes < c2s.MaxStanzaBytes {
		v.add("plugins.wasm.max_host_bytes", "must be at least c2s.max_stanza_bytes (%d), not %d: a plugin must be able to send or rewrite one stanza",
			c2s.MaxStanzaBytes, c.Wasm.MaxHostBytes)
	}
	if c.Wasm.MaxKVBytes < 1 {
		v.add("plugins.wasm.max_kv_bytes", "must be at least 1, not %d", c.Wasm.MaxKVBytes)
	}
	v.nonNegative(keyed[time.Duration]{"plugins.rollout.health_window", c.Rollout.HealthWindow})
	if c.Rollout.MaxFailures < 1 {
		v.add("plugins.rollout.max_failures", "must be at least 1, not %d", c.Rollout.MaxFailures)
	}
	if r := c.Rollout.MaxFailureRatio; r <= 0 || r > 1 {
		v.add("plugins.rollout.max_failure_ratio", "must be above 0 and at most 1, not %v", r)
	}
}

func (c BalanceConfig) validate(v *validator) {
	if c.LoadThreshold < 0 {
		v.add("balance.load_threshold", "must not be negative, not %v", c.LoadThreshold)
	}
	v.nonNegative(
		keyed[time.Duration]{"balance.publish_interval", c.PublishInterval}, keyed[time.Duration]{"balance.drain_deadline", c.DrainDeadline},
		keyed[time.Duration]{"balance.retry_after", c.RetryAfter},
	)
	if c.DrainRate < 0 {
		v.add("balance.drain_rate", "must not be negative")
	}
	if c.Capacity < 0 {
		v.add("balance.capacity", "must not be negative")
	}
	for node, w := range c.Weights {
		if w < 0 {
			v.add("balance.weights."+node, "must not be negative, not %v", w)
		}
	}
}

// validateACME checks tls.acme. The names' syntax is checked even while
// ACME is off; whether a CA would issue for them only when it is on.
func (c *Config) validateACME() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	a := c.TLS.ACME
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		add("tls.acme.directory", "%q is not an https:// URL (RFC 8555 requires HTTPS)", a.Directory)
	}
	if a.Email != "" {
		if m, err := mail.ParseAddress(a.Email); err != nil || m.Address != a.Email {
			add("tls.acme.email", "%q is not an e-mail address such as admin@example.com", a.Email)
		}
	}
	if a.RenewBefore <= 0 {
		add("tls.acme.renew_before", "must be positive, not %v", a.RenewBefore)
	}
	seen := map[string]bool{}
	for _, ch := range a.Challenges {
		switch ch {
		case "http-01", "tls-alpn-01":
		case "dns-01":
			add("tls.acme.challenges", "dns-01 is not supported: use http-01 or tls-alpn-01")
			continue
		default:
			add("tls.acme.challenges", "%q is not http-01 or tls-alpn-01", ch)
			continue
		}
		if seen[ch] {
			add("tls.acme.challenges", "%s is listed twice", ch)
		}
		seen[ch] = true
	}
	for _, n := range a.Names {
		if msg := acmeNameProblem(n, a.Enabled); msg != "" {
			add("tls.acme.names", "%q %s", n, msg)
		}
	}
	if !a.Enabled {
		return errs
	}
	if msg := acmeNameProblem(c.Domain, true); msg != "" {
		add("tls.acme.enabled", "the domain %q %s", c.Domain, msg)
	}
	if len(a.Challenges) == 0 {
		add("tls.acme.challenges", "must name at least one of http-01 and tls-alpn-01")
	}
	httpOff := Off(c.HTTP.Listen)
	tlsOff := Off(c.HTTP.TLSListen) && Off(c.C2S.TLSListen)
	if httpOff && seen["http-01"] && !(seen["tls-alpn-01"] && !tlsOff) {
		add("tls.acme.challenges", "http-01 needs http.listen (port 80 of every name must reach it)")
	}
	if tlsOff && seen["tls-alpn-01"] && !(seen["http-01"] && !httpOff) {
		add("tls.acme.challenges", "tls-alpn-01 needs http.tls_listen or c2s.tls_listen (port 443 of every name must reach one)")
	}
	return errs
}

// acmeNameProblem says why a CA cannot issue a certificate for name by
// HTTP-01 or TLS-ALPN-01 ("" when it can); public adds the checks for
// names no public CA issues for.
func acmeNameProblem(name string, public bool) string {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	switch {
	case net.ParseIP(n) != nil:
		return "is an IP address: a CA issues for DNS names"
	case strings.HasPrefix(n, "*."):
		return "is a wildcard: wildcards need dns-01, which is not supported"
	case public && !strings.Contains(n, "."):
		return "has a single label: a CA issues only for public DNS names"
	case public && (n == "localhost" || strings.HasSuffix(n, ".localhost")):
		return "is a localhost name: a CA issues only for public DNS names"
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return "is not a DNS name"
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return "is not a DNS name (letters, digits, hyphens and dots)"
			}
		}
	}
	return ""
}

func (c ExternalServicesConfig) validate(v *validator) {
	if c.CredentialTTL < time.Minute {
		v.add("external_services.credential_ttl", "must be at least 1m, not %v", c.CredentialTTL)
	}
	for i, s := range c.Services {
		key := fmt.Sprintf("external_services.services[%d]", i)
		v.oneOf(key+".type", s.Type, "stun", "stuns", "turn", "turns")
		if s.Host == "" || strings.ContainsAny(s.Host, " /:@") && net.ParseIP(s.Host) == nil {
			v.add(key+".host", "%q is not a host name or address", s.Host)
		}
		if s.Port < 1 || s.Port > 65535 {
			v.add(key+".port", "must be between 1 and 65535, not %d", s.Port)
		}
		v.oneOf(key+".transport", s.Transport, "udp", "tcp")
		if (s.Username == "") != (s.Password == "") {
			v.add(key+".username", "username and password must be set together")
		}
		if (s.Type == "turn" || s.Type == "turns") && c.Secret == "" && s.Username == "" {
			v.add(key+".username", "a TURN server needs credentials: set external_services.secret or this service's username and password")
		}
	}
}

func (c ComponentsConfig) validate(v *validator, domain string) {
	v.addr("components.listen", c.Listen)
	if !Off(c.Listen) && len(c.Secrets) == 0 {
		v.add("components.secrets", "components.listen is set but no component has a secret")
	}
	for dom, secret := range c.Secrets {
		if !strings.HasSuffix(dom, "."+domain) || strings.ContainsAny(dom, " /@") {
			v.add("components.secrets."+dom, "%q is not a subdomain of domain %q", dom, domain)
		}
		if secret == "" {
			v.add("components.secrets."+dom, "the secret must not be empty")
		}
	}
	v.nonNegative(keyed[time.Duration]{"components.handshake_timeout", c.HandshakeTimeout})
}

func (c UploadConfig) validate(v *validator) {
	if c.URL != "" {
		if pu, err := url.Parse(c.URL); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			v.add("upload.url", "%q is not an http or https URL", c.URL)
		}
	}
	if c.MaxFileSize < 1 {
		v.add("upload.max_file_size", "must be at least 1, not %d", c.MaxFileSize)
	}
	if c.UserQuota < c.MaxFileSize {
		v.add("upload.user_quota", "must be at least upload.max_file_size (%d), not %d", c.MaxFileSize, c.UserQuota)
	}
	if c.DomainQuota != 0 && c.DomainQuota < c.MaxFileSize {
		v.add("upload.domain_quota", "must be 0 (no limit) or at least upload.max_file_size (%d), not %d", c.MaxFileSize, c.DomainQuota)
	}
	v.oneOf("upload.store", c.Store, "database", "directory")
	if c.URL == "" && (c.Store == "directory" || c.DomainQuota != 0) {
		// The service is off without a URL: a store or quota set for it
		// would be silently ignored.
		v.add("upload.url", "must be set to turn the upload service on (upload.store or upload.domain_quota is set for it)")
	}
	switch {
	case c.Store == "directory":
		if err := writableDir(c.Directory); err != nil {
			v.add("upload.directory", "%v (upload.store is directory)", err)
		}
	case c.Directory != "":
		v.add("upload.directory", "is set but upload.store is %q, not directory", c.Store)
	}
	for _, t := range c.AllowedTypes {
		if major, minor, ok := strings.Cut(t, "/"); !ok || major == "" || minor == "" || strings.ContainsAny(t, " ;,") {
			v.add("upload.allowed_types", "%q is not a content type such as image/png or image/*", t)
		}
	}
	v.nonNegative(keyed[time.Duration]{"upload.expire_after", c.ExpireAfter})
	if c.SlotTimeout < time.Second {
		v.add("upload.slot_timeout", "must be at least 1s, not %v", c.SlotTimeout)
	}
}

// writableDir checks that dir is an absolute path to a directory this
// process can create files in, by creating one.
func writableDir(dir string) error {
	if dir == "" {
		return errors.New("must be set")
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%q is not an absolute path", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%q is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".aviary-write-check-*")
	if err != nil {
		return fmt.Errorf("%q is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
