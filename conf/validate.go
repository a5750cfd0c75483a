package conf

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

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
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls.cert_file", "cert_file and key_file must be set together")
	}
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

	switch c.C2S.ResourceConflict {
	case "kick_old", "reject", "new_resource":
	default:
		add("c2s.resource_conflict", "must be kick_old, reject or new_resource, not %q", c.C2S.ResourceConflict)
	}
	if c.C2S.MaxStanzaBytes < 1024 {
		add("c2s.max_stanza_bytes", "must be at least 1024, not %d", c.C2S.MaxStanzaBytes)
	}
	if c.C2S.SCRAMIterations < 4096 {
		add("c2s.scram_iterations", "must be at least 4096 (RFC 7677), not %d", c.C2S.SCRAMIterations)
	}
	if c.C2S.OfflineExpiry < 0 {
		add("c2s.offline_expiry", "must not be negative")
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
		{"c2s.sm_resume_timeout", c.C2S.SMResumeTimeout},
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
	for _, o := range c.HTTP.CORSOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			add("http.cors_origins", "%q is not an origin such as https://example.com", o)
		}
	}
	return errs
}
