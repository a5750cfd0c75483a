package conf

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestACMEValidation: tls.acme problems are errors naming the key.
func TestACMEValidation(t *testing.T) {
	cases := []struct {
		name string
		set  func(c *Config)
		key  string
		msg  string
	}{
		{"directory not https", func(c *Config) { c.TLS.ACME.Directory = "http://acme.example/dir" }, "tls.acme.directory", "not an https:// URL"},
		{"email", func(c *Config) { c.TLS.ACME.Email = "not an address" }, "tls.acme.email", "not an e-mail address"},
		{"renew_before", func(c *Config) { c.TLS.ACME.RenewBefore = -time.Hour }, "tls.acme.renew_before", "must be positive"},
		{"dns-01", func(c *Config) { c.TLS.ACME.Challenges = []string{"dns-01"} }, "tls.acme.challenges", "dns-01 is not supported"},
		{"unknown challenge", func(c *Config) { c.TLS.ACME.Challenges = []string{"http-02"} }, "tls.acme.challenges", `"http-02" is not http-01 or tls-alpn-01`},
		{"twice", func(c *Config) { c.TLS.ACME.Challenges = []string{"http-01", "http-01"} }, "tls.acme.challenges", "listed twice"},
		{"wildcard name", func(c *Config) { c.TLS.ACME.Names = []string{"*.chat.example.com"} }, "tls.acme.names", "wildcards need dns-01"},
		{"IP name", func(c *Config) { c.TLS.ACME.Names = []string{"192.0.2.1"} }, "tls.acme.names", "is an IP address"},
		{"bad name", func(c *Config) { c.TLS.ACME.Names = []string{"up_load.chat.example.com"} }, "tls.acme.names", "not a DNS name"},
		{"localhost domain", func(c *Config) { c.Domain = "localhost" }, "tls.acme.enabled", `the domain "localhost" has a single label`},
		{"no challenges", func(c *Config) { c.TLS.ACME.Challenges = []string{} }, "tls.acme.challenges", "at least one"},
		{"http-01 without http.listen", func(c *Config) {
			c.HTTP.Listen = "off"
			c.TLS.ACME.Challenges = []string{"http-01"}
		}, "tls.acme.challenges", "http-01 needs http.listen"},
		{"tls-alpn-01 without a TLS listener", func(c *Config) {
			c.C2S.TLSListen = "off"
			c.TLS.ACME.Challenges = []string{"tls-alpn-01"}
		}, "tls.acme.challenges", "tls-alpn-01 needs http.tls_listen or c2s.tls_listen"},
	}
	base := func() *Config {
		c := Default()
		c.Domain = "chat.example.com"
		c.HTTP.Listen = ":80"
		c.TLS.ACME.Enabled = true
		return c
	}
	if errs := base().Validate(); len(errs) != 0 {
		t.Fatalf("the base configuration is invalid: %v", errs)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.set(c)
			errs := c.Validate()
			if len(errs) == 0 || !strings.Contains(errs.Error(), tc.key+": ") || !strings.Contains(errs.Error(), tc.msg) {
				t.Errorf("errors %v, want %s: ...%s", errs, tc.key, tc.msg)
			}
		})
	}
	// One listener missing is fine when the other challenge has one.
	c := base()
	c.HTTP.Listen = "off"
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("http-01 and tls-alpn-01 with only c2s.tls_listen: %v", errs)
	}
	// Off, names are checked for syntax only.
	c = Default()
	c.TLS.ACME.Names = []string{"conference.localhost"}
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("ACME off, a localhost service name: %v", errs)
	}
}

func TestACMENames(t *testing.T) {
	c := Default()
	c.Domain = "Chat.Example.com"
	if got := c.ACMENames(); !slices.Equal(got, []string{"chat.example.com", "conference.chat.example.com", "upload.chat.example.com", "pubsub.chat.example.com"}) {
		t.Errorf("defaults: %v", got)
	}
	c.TLS.ACME.Names = []string{}
	if got := c.ACMENames(); !slices.Equal(got, []string{"chat.example.com"}) {
		t.Errorf("empty list: %v", got)
	}
	c.TLS.ACME.Names = []string{"Upload.Chat.Example.com.", "chat.example.com", " upload.chat.example.com"}
	if got := c.ACMENames(); !slices.Equal(got, []string{"chat.example.com", "upload.chat.example.com"}) {
		t.Errorf("duplicates and case: %v", got)
	}
}
