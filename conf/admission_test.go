package conf

import (
	"testing"
	"time"
)

// The overload protection keys (issue 23) have their documented defaults,
// accept -1 as "no limit", and a bad value is an error naming its key.
func TestAdmissionKeysValidated(t *testing.T) {
	c := Default()
	if c.C2S.MaxTLSHandshakesPerSecond != 1000 || c.C2S.MaxLoginsPerSecond != 500 ||
		c.C2S.AdmissionWait != 2*time.Second || c.C2S.MaxNegotiating != 2000 || c.C2S.AdmissionLatency != 0 {
		t.Errorf("defaults: handshakes %d logins %d wait %v negotiating %d", c.C2S.MaxTLSHandshakesPerSecond,
			c.C2S.MaxLoginsPerSecond, c.C2S.AdmissionWait, c.C2S.MaxNegotiating)
	}
	c.C2S.MaxTLSHandshakesPerSecond, c.C2S.MaxLoginsPerSecond, c.C2S.MaxNegotiating = -1, -1, -1
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("-1 (no limit): %v", errs)
	}
	for _, tc := range []struct {
		key string
		mod func(*Config)
	}{
		{"c2s.max_tls_handshakes_per_second", func(c *Config) { c.C2S.MaxTLSHandshakesPerSecond = -2 }},
		{"c2s.max_logins_per_second", func(c *Config) { c.C2S.MaxLoginsPerSecond = -5 }},
		{"c2s.max_negotiating", func(c *Config) { c.C2S.MaxNegotiating = -2 }},
		{"c2s.admission_wait", func(c *Config) { c.C2S.AdmissionWait = -time.Second }},
		{"c2s.admission_latency", func(c *Config) { c.C2S.AdmissionLatency = -time.Second }},
	} {
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
