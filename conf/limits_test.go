package conf

import (
	"strings"
	"testing"
	"time"
)

// The request limits of the HTTP and admin listeners are validated with
// errors naming their keys.
func TestListenerLimitKeysValidated(t *testing.T) {
	checkKeyErrors(t, []keyCase{
		{"http.read_header_timeout", func(c *Config) { c.HTTP.ReadHeaderTimeout = -time.Second }},
		{"http.read_body_timeout", func(c *Config) { c.HTTP.ReadBodyTimeout = -time.Second }},
		{"http.write_timeout", func(c *Config) { c.HTTP.WriteTimeout = -time.Second }},
		{"http.idle_timeout", func(c *Config) { c.HTTP.IdleTimeout = -time.Second }},
		{"admin.read_timeout", func(c *Config) { c.Admin.ReadTimeout = -time.Second }},
		{"admin.metrics_token", func(c *Config) { c.Admin.MetricsToken = "short" }},
	})
	c := Default()
	if c.HTTP.ReadBodyTimeout != 30*time.Second || c.HTTP.ReadHeaderTimeout != 10*time.Second ||
		c.HTTP.WriteTimeout != 30*time.Second || c.HTTP.IdleTimeout != 2*time.Minute || c.Admin.ReadTimeout != time.Minute {
		t.Errorf("defaults: %+v %+v", c.HTTP, c.Admin)
	}
	c.Admin.MetricsToken = strings.Repeat("k", 16)
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("a 16-character metrics token: %v", errs)
	}
}

// admin.profiling on a listener others can reach needs a token.
func TestProfilingNeedsTokenOffLoopback(t *testing.T) {
	checkKeyErrors(t, []keyCase{
		{"admin.profiling", func(c *Config) { c.Admin.Profiling = true; c.Admin.Listen = "0.0.0.0:9090" }},
		{"admin.profiling", func(c *Config) { c.Admin.Profiling = true; c.Admin.Listen = "[2001:db8::1]:9090" }},
	})
	for _, tc := range []struct{ listen, token string }{
		{"127.0.0.1:9090", ""}, {"localhost:9090", ""}, {"[::1]:9090", ""}, {"off", ""},
		{"0.0.0.0:9090", strings.Repeat("k", 16)},
	} {
		c := Default()
		c.Admin.Profiling, c.Admin.Listen, c.Admin.MetricsToken = true, tc.listen, tc.token
		if errs := c.Validate(); len(errs) != 0 {
			t.Errorf("profiling on %s with token %q: %v", tc.listen, tc.token, errs)
		}
	}
}

// keyCase is a change to the default configuration that must fail
// validation with one error naming key.
type keyCase struct {
	key string
	mod func(*Config)
}

func checkKeyErrors(t *testing.T, cases []keyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			c := Default()
			tc.mod(c)
			errs := c.Validate()
			if len(errs) != 1 || errs[0].Key != tc.key {
				t.Fatalf("errors %v, want one naming %s", errs, tc.key)
			}
		})
	}
}
