package httpd

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/aviary-im/aviary/conf"
)

func TestSecureAndRemoteAddr(t *testing.T) {
	for _, tc := range []struct {
		name, plainSecure, peer, xff string
		tls                          bool
		secure                       bool
		remote                       string
	}{
		{"https", "never", "203.0.113.9:4000", "", true, true, "203.0.113.9:4000"},
		{"loopback trusted", "loopback", "127.0.0.1:4000", "", false, true, "127.0.0.1:4000"},
		{"ipv6 loopback trusted", "loopback", "[::1]:4000", "", false, true, "[::1]:4000"},
		{"remote plain http", "loopback", "203.0.113.9:4000", "", false, false, "203.0.113.9:4000"},
		{"never", "never", "127.0.0.1:4000", "", false, false, "127.0.0.1:4000"},
		{"always", "always", "203.0.113.9:4000", "", false, true, "203.0.113.9:4000"},
		{"proxy on loopback", "loopback", "127.0.0.1:4000", "198.51.100.7, 192.0.2.1", false, true, "192.0.2.1:0"},
		{"forged header from outside", "loopback", "203.0.113.9:4000", "192.0.2.1", false, false, "203.0.113.9:4000"},
		{"garbage header", "loopback", "127.0.0.1:4000", "not-an-ip", false, true, "127.0.0.1:4000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := conf.Default()
			cfg.HTTP.PlainSecure = tc.plainSecure
			s := &Server{cfg: ConfigFrom(cfg)}
			r := httptest.NewRequest("POST", "/http-bind", nil)
			r.RemoteAddr = tc.peer
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := s.secure(r); got != tc.secure {
				t.Errorf("secure %v, want %v", got, tc.secure)
			}
			if got := s.remoteAddr(r); got != tc.remote {
				t.Errorf("remote %q, want %q", got, tc.remote)
			}
		})
	}
}
