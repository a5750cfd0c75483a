package conf

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
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

// Validate checks every part and returns all problems, each naming its key.
func (c *Config) Validate() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if d, err := jid.Parse(c.Domain); err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		add("domain", "%q is not a valid XMPP domain", c.Domain)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "must be debug, info, warn or error, not %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		add("log_format", "must be text or json, not %q", c.LogFormat)
	}
	switch c.MAM.Default {
	case "always", "roster", "never":
	default:
		add("mam.default", "must be always, roster or never, not %q", c.MAM.Default)
	}
	if c.MAM.ExpireAfter < 0 {
		add("mam.expire_after", "must not be negative")
	}
	if c.MAM.MaxPage < 1 || c.MAM.MaxPage > 1000 {
		add("mam.max_page", "must be between 1 and 1000, not %d", c.MAM.MaxPage)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls.cert_file", "cert_file and key_file must be set together")
	}
	errs = append(errs, c.validateACME()...)
	errs = append(errs, c.validateExternalServices()...)
	checkAddr := func(key, addr string) {
		if Off(addr) {
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add(key, "%q is not host:port (%v)", addr, err)
		}
	}
	checkAddr("c2s.listen", c.C2S.Listen)
	checkAddr("c2s.tls_listen", c.C2S.TLSListen)
	checkAddr("cluster.listen", c.Cluster.Listen)
	checkAddr("s2s.listen", c.S2S.Listen)
	checkAddr("http.listen", c.HTTP.Listen)
	checkAddr("http.tls_listen", c.HTTP.TLSListen)
	checkAddr("admin.listen", c.Admin.Listen)
	checkAddr("components.listen", c.Components.Listen)
	if !Off(c.Components.Listen) && len(c.Components.Secrets) == 0 {
		add("components.secrets", "components.listen is set but no component has a secret")
	}
	for dom, secret := range c.Components.Secrets {
		if !strings.HasSuffix(dom, "."+c.Domain) || strings.ContainsAny(dom, " /@") {
			add("components.secrets."+dom, "%q is not a subdomain of domain %q", dom, c.Domain)
		}
		if secret == "" {
			add("components.secrets."+dom, "the secret must not be empty")
		}
	}
	if u := c.Upload.URL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			add("upload.url", "%q is not an http or https URL", u)
		}
	}
	if c.Upload.MaxFileSize < 1 {
		add("upload.max_file_size", "must be at least 1, not %d", c.Upload.MaxFileSize)
	}
	if c.Upload.UserQuota < c.Upload.MaxFileSize {
		add("upload.user_quota", "must be at least upload.max_file_size (%d), not %d", c.Upload.MaxFileSize, c.Upload.UserQuota)
	}
	for _, t := range c.Upload.AllowedTypes {
		if major, minor, ok := strings.Cut(t, "/"); !ok || major == "" || minor == "" || strings.ContainsAny(t, " ;,") {
			add("upload.allowed_types", "%q is not a content type such as image/png or image/*", t)
		}
	}
	if c.Upload.ExpireAfter < 0 {
		add("upload.expire_after", "must not be negative, not %v", c.Upload.ExpireAfter)
	}
	if c.Upload.SlotTimeout < time.Second {
		add("upload.slot_timeout", "must be at least 1s, not %v", c.Upload.SlotTimeout)
	}
	if c.Components.HandshakeTimeout < 0 {
		add("components.handshake_timeout", "must not be negative, not %v", c.Components.HandshakeTimeout)
	}

	switch c.C2S.ResourceConflict {
	case "kick_old", "reject", "new_resource":
	default:
		add("c2s.resource_conflict", "must be kick_old, reject or new_resource, not %q", c.C2S.ResourceConflict)
	}
	if c.C2S.MaxStanzaBytes < 1024 {
		add("c2s.max_stanza_bytes", "must be at least 1024, not %d", c.C2S.MaxStanzaBytes)
	}
	if c.C2S.PreAuthMaxStanzaBytes < 1024 {
		add("c2s.preauth_max_stanza_bytes", "must be at least 1024, not %d", c.C2S.PreAuthMaxStanzaBytes)
	}
	for _, l := range []struct {
		key string
		v   int
	}{
		{"c2s.max_unauthenticated_per_address", c.C2S.MaxUnauthenticatedPerAddress},
		{"c2s.registration_limit", c.C2S.RegistrationLimit},
		{"c2s.sasl_account_failures", c.C2S.SASLAccountFailures},
	} {
		if l.v < -1 {
			add(l.key, "must be -1 (no limit) or more, not %d", l.v)
		}
	}
	if c.C2S.SCRAMIterations < 4096 {
		add("c2s.scram_iterations", "must be at least 4096 (RFC 7677), not %d", c.C2S.SCRAMIterations)
	}
	if c.C2S.OfflineLimit < 1 {
		add("c2s.offline_limit", "must be at least 1, not %d", c.C2S.OfflineLimit)
	}
	if c.C2S.OfflineMaxBytes < c.C2S.MaxStanzaBytes {
		add("c2s.offline_max_bytes", "must be at least c2s.max_stanza_bytes (%d), not %d", c.C2S.MaxStanzaBytes, c.C2S.OfflineMaxBytes)
	}
	if c.C2S.RosterMaxItems < 1 {
		add("c2s.roster_max_items", "must be at least 1, not %d", c.C2S.RosterMaxItems)
	}
	if c.C2S.RosterMaxItemBytes < MinRosterItemBytes {
		add("c2s.roster_max_item_bytes", "must be at least %d, not %d", MinRosterItemBytes, c.C2S.RosterMaxItemBytes)
	} else if c.C2S.RosterMaxItems > 0 && int64(c.C2S.RosterMaxItems)*int64(c.C2S.RosterMaxItemBytes) > MaxRosterBytes {
		add("c2s.roster_max_items", "%d items of c2s.roster_max_item_bytes %d make a roster of up to %d bytes; keep the product within %d (half of what a session may queue for its client) so a full roster can be fetched",
			c.C2S.RosterMaxItems, c.C2S.RosterMaxItemBytes, int64(c.C2S.RosterMaxItems)*int64(c.C2S.RosterMaxItemBytes), MaxRosterBytes)
	}
	if c.C2S.RosterMaxPending < 1 {
		add("c2s.roster_max_pending", "must be at least 1, not %d", c.C2S.RosterMaxPending)
	}
	if c.C2S.OfflineExpiry < 0 {
		add("c2s.offline_expiry", "must not be negative")
	}
	if c.C2S.FASTTokenLifetime < time.Minute {
		add("c2s.fast_token_lifetime", "must be at least 1m, not %v", c.C2S.FASTTokenLifetime)
	}
	for _, l := range c.ServerInfo.Lists() {
		for i, a := range l.Addresses {
			if u, err := url.Parse(a); err != nil || u.Scheme == "" || (u.Opaque == "" && u.Host == "" && u.Path == "") {
				add("server_info."+l.Key, "entry %d (%q) is not a URI with a scheme, such as mailto:abuse@example.com or xmpp:admin@example.com", i+1, a)
			}
		}
	}
	if c.C2S.MaxSessions < 0 {
		add("c2s.max_sessions", "must not be negative")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"c2s.auth_timeout", c.C2S.AuthTimeout}, {"c2s.ping_interval", c.C2S.PingInterval},
		{"c2s.idle_timeout", c.C2S.IdleTimeout}, {"c2s.sasl_failure_delay", c.C2S.SASLFailureDelay},
		{"c2s.sm_resume_timeout", c.C2S.SMResumeTimeout}, {"c2s.sasl_max_account_delay", c.C2S.SASLMaxAccountDelay},
	} {
		if d.v < 0 {
			add(d.key, "must not be negative, not %v", d.v)
		}
	}
	if c.Database.URL != "" {
		u, err := url.Parse(c.Database.URL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			add("database.url", "must be a postgres:// URL")
		}
	}
	if c.Database.PoolSize < 1 {
		add("database.pool_size", "must be at least 1")
	}
	if c.Database.StartupRetries < 1 {
		add("database.startup_retries", "must be at least 1, not %d", c.Database.StartupRetries)
	}
	if c.Database.StartupRetryInterval <= 0 {
		add("database.startup_retry_interval", "must be positive, not %v", c.Database.StartupRetryInterval)
	}
	if len(c.Cluster.Hazelcast) > 0 {
		for _, a := range c.Cluster.Hazelcast {
			if _, _, err := net.SplitHostPort(a); err != nil {
				add("cluster.hazelcast", "%q is not host:port", a)
			}
		}
		if c.Database.URL == "" {
			add("database.url", "clustering needs the shared PostgreSQL database")
		}
		if c.Cluster.Secret == "" {
			add("cluster.secret", "required when cluster.hazelcast is set: node links authenticate with it")
		}
		if Off(c.Cluster.Listen) {
			add("cluster.listen", "required when cluster.hazelcast is set")
		}
	}
	if c.Balance.LoadThreshold < 0 {
		add("balance.load_threshold", "must not be negative, not %v", c.Balance.LoadThreshold)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"balance.publish_interval", c.Balance.PublishInterval}, {"balance.drain_deadline", c.Balance.DrainDeadline},
		{"balance.retry_after", c.Balance.RetryAfter},
	} {
		if d.v < 0 {
			add(d.key, "must not be negative, not %v", d.v)
		}
	}
	if c.Balance.DrainRate < 0 {
		add("balance.drain_rate", "must not be negative")
	}
	if c.Balance.Capacity < 0 {
		add("balance.capacity", "must not be negative")
	}
	for node, w := range c.Balance.Weights {
		if w < 0 {
			add("balance.weights."+node, "must not be negative, not %v", w)
		}
	}
	if c.Cluster.HeartbeatInterval >= c.Cluster.NodeTTL {
		add("cluster.node_ttl", "must be longer than cluster.heartbeat_interval")
	}
	if c.Plugins.Wasm.MaxHostCalls < 1 {
		add("plugins.wasm.max_host_calls", "must be at least 1, not %d", c.Plugins.Wasm.MaxHostCalls)
	}
	if c.Plugins.Wasm.MaxHostBytes < c.C2S.MaxStanzaBytes {
		add("plugins.wasm.max_host_bytes", "must be at least c2s.max_stanza_bytes (%d), not %d: a plugin must be able to send or rewrite one stanza",
			c.C2S.MaxStanzaBytes, c.Plugins.Wasm.MaxHostBytes)
	}
	if c.Plugins.Wasm.MaxKVBytes < 1 {
		add("plugins.wasm.max_kv_bytes", "must be at least 1, not %d", c.Plugins.Wasm.MaxKVBytes)
	}
	if r := c.Plugins.Rollout; r.HealthWindow < 0 {
		add("plugins.rollout.health_window", "must not be negative, not %v", r.HealthWindow)
	}
	if c.Plugins.Rollout.MaxFailures < 1 {
		add("plugins.rollout.max_failures", "must be at least 1, not %d", c.Plugins.Rollout.MaxFailures)
	}
	if r := c.Plugins.Rollout.MaxFailureRatio; r <= 0 || r > 1 {
		add("plugins.rollout.max_failure_ratio", "must be above 0 and at most 1, not %v", r)
	}
	for dom, hp := range c.S2S.Hosts {
		if _, _, err := net.SplitHostPort(hp); err != nil {
			add("s2s.hosts."+dom, "%q is not host:port", hp)
		}
	}
	for _, a := range c.Admin.Admins {
		if j, err := jid.Parse(a); err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
			add("admin.admins", "%q is not a bare JID", a)
		}
	}
	switch c.HTTP.PlainSecure {
	case "never", "loopback", "always":
	default:
		add("http.plain_secure", "must be never, loopback or always, not %q", c.HTTP.PlainSecure)
	}
	for _, u := range []struct{ key, val string }{{"http.bosh_url", c.HTTP.BOSHURL}, {"http.websocket_url", c.HTTP.WebSocketURL}} {
		if u.val == "" {
			continue
		}
		if pu, err := url.Parse(u.val); err != nil || pu.Host == "" {
			add(u.key, "%q is not an absolute URL", u.val)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"http.read_header_timeout", c.HTTP.ReadHeaderTimeout}, {"http.read_body_timeout", c.HTTP.ReadBodyTimeout},
		{"http.write_timeout", c.HTTP.WriteTimeout}, {"http.idle_timeout", c.HTTP.IdleTimeout},
		{"admin.read_timeout", c.Admin.ReadTimeout},
	} {
		if d.v < 0 {
			add(d.key, "must not be negative, not %v", d.v)
		}
	}
	if t := c.Admin.MetricsToken; t != "" && len(t) < 16 {
		add("admin.metrics_token", "must be at least 16 characters (a random token), not %d", len(t))
	}
	for _, o := range c.HTTP.CORSOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			add("http.cors_origins", "%q is not an origin such as https://example.com", o)
		}
	}
	return errs
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

// validateExternalServices checks external_services (XEP-0215).
func (c *Config) validateExternalServices() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	es := c.ExternalServices
	if es.CredentialTTL < time.Minute {
		add("external_services.credential_ttl", "must be at least 1m, not %v", es.CredentialTTL)
	}
	for i, s := range es.Services {
		key := fmt.Sprintf("external_services.services[%d]", i)
		switch s.Type {
		case "stun", "stuns", "turn", "turns":
		default:
			add(key+".type", "must be stun, stuns, turn or turns, not %q", s.Type)
		}
		if s.Host == "" || strings.ContainsAny(s.Host, " /:@") && net.ParseIP(s.Host) == nil {
			add(key+".host", "%q is not a host name or address", s.Host)
		}
		if s.Port < 1 || s.Port > 65535 {
			add(key+".port", "must be between 1 and 65535, not %d", s.Port)
		}
		if s.Transport != "udp" && s.Transport != "tcp" {
			add(key+".transport", "must be udp or tcp, not %q", s.Transport)
		}
		if (s.Username == "") != (s.Password == "") {
			add(key+".username", "username and password must be set together")
		}
		if (s.Type == "turn" || s.Type == "turns") && es.Secret == "" && s.Username == "" {
			add(key+".username", "a TURN server needs credentials: set external_services.secret or this service's username and password")
		}
	}
	return errs
}
