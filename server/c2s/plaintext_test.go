package c2s_test

import (
	"strings"
	"testing"

	"github.com/aviary-im/aviary/server/servertest"
)

// TestPLAINNeedsTLSEvenWhenTLSOptional: with c2s.require_tls false a
// client may authenticate without TLS, but only with SCRAM: PLAIN is
// neither offered nor accepted on an unencrypted stream.
func TestPLAINNeedsTLSEvenWhenTLSOptional(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	off := false
	cfg.C2S.RequireTLS = &off
	n := servertest.RunServer(t, cfg)
	servertest.CreateUser(t, n, "alice", "alicepw")
	c := servertest.Dial(t, n)
	if got := strings.Join(c.Mechanisms(), " "); got != "SCRAM-SHA-256 SCRAM-SHA-1" {
		t.Errorf("mechanisms without TLS = %q, want SCRAM only", got)
	}
	if st := c.Features.Child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"); st == nil || st.Child("required", "") != nil {
		t.Errorf("starttls should be offered, not required: %s", c.Features)
	}
	if got := saslCond(c.AuthPLAIN("alice", "alicepw")); got != "encryption-required" {
		t.Errorf("PLAIN without TLS: %s, want encryption-required", got)
	}
	if err := c.AuthSCRAM("SCRAM-SHA-256", "alice", "alicepw"); err != nil {
		t.Errorf("SCRAM without TLS (allowed by config): %v", err)
	}
}
