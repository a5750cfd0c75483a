package conf

import (
	"strings"
	"testing"
)

func TestWithLive(t *testing.T) {
	c := Default()
	c.Cluster.Secret = "s3cret-s3cret-s3cret"
	c.Database.URL = "postgres://aviary:pw@db/aviary"
	next, err := c.WithLive(map[string]string{"log_level": "debug", "c2s.allow_registration": "true", "c2s.registration_limit": "3"})
	if err != nil {
		t.Fatal(err)
	}
	if next.LogLevel != "debug" || !next.C2S.AllowRegistration || next.C2S.RegistrationLimit != 3 {
		t.Errorf("next: %s %v %d", next.LogLevel, next.C2S.AllowRegistration, next.C2S.RegistrationLimit)
	}
	if c.LogLevel != "info" || c.C2S.AllowRegistration || c.C2S.RegistrationLimit != 10 {
		t.Errorf("the running configuration changed: %s %v %d", c.LogLevel, c.C2S.AllowRegistration, c.C2S.RegistrationLimit)
	}
	for _, tc := range []struct {
		name    string
		changes map[string]string
		want    []string
	}{
		{"not live", map[string]string{"log_level": "warn", "c2s.listen": ":5223"}, []string{"c2s.listen: cannot change while the node runs"}},
		{"bad value", map[string]string{"c2s.allow_registration": "sometimes"}, []string{"c2s.allow_registration"}},
		{"invalid", map[string]string{"log_level": "loud"}, []string{"log_level"}},
		{"unknown", map[string]string{"nope": "1"}, []string{"nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.WithLive(tc.changes)
			if err == nil || got != nil {
				t.Fatalf("accepted: %+v", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if c.LogLevel != "info" {
				t.Error("a refused change touched the running configuration")
			}
		})
	}
	entries := map[string]Entry{}
	for _, e := range c.Entries() {
		entries[e.Key] = e
	}
	if e := entries["cluster.secret"]; e.Value != "(set)" || !e.Secret {
		t.Errorf("cluster.secret shows %+v", e)
	}
	if e := entries["database.url"]; strings.Contains(e.Value, "pw") || !strings.Contains(e.Value, "aviary:xxxxx@db") {
		t.Errorf("database.url shows %q", e.Value)
	}
	if e := entries["log_level"]; e.Value != "info" || !e.Live {
		t.Errorf("log_level: %+v", e)
	}
	if e := entries["c2s.auth_timeout"]; e.Value != "30s" || e.Live {
		t.Errorf("c2s.auth_timeout: %+v", e)
	}
	if v, err := c.Get("c2s.registration_limit"); v != "10" || err != nil {
		t.Errorf("Get = %q, %v", v, err)
	}
}
