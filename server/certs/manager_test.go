package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
)

func TestParsePEM(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	chain, key := ca.issue(t, []string{"Chat.Example", "conference.chat.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	c, err := ParsePEM(chain, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "chat.example" || strings.Join(c.Names, ",") != "chat.example,conference.chat.example" {
		t.Errorf("ID %q names %v: want lowercased names, the first as ID", c.ID, c.Names)
	}
	if c.Issuer != "Aviary tests Test CA" || len(c.TLS().Certificate) != 2 || c.TLS().Leaf == nil {
		t.Errorf("issuer %q, chain of %d", c.Issuer, len(c.TLS().Certificate))
	}

	_, otherKey := ca.issue(t, []string{"chat.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredKey := ca.issue(t, []string{"chat.example"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	for _, tc := range []struct {
		name       string
		chain, key []byte
		want       string
	}{
		{"key of another certificate", chain, otherKey, "not the certificate's"},
		{"expired", expired, expiredKey, "expired at"},
		{"no certificate", key, key, "no PEM CERTIFICATE"},
		{"no key", chain, chain, "no PEM private key"},
		{"garbage", []byte("hello"), []byte("hello"), "no PEM CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePEM(tc.chain, tc.key, now)
			if !errors.Is(err, ErrBadCertificate) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrBadCertificate saying %q", err, tc.want)
			}
		})
	}
}

// TestSelection: by SNI, an exact name wins over a wildcard, the one that
// expires last wins among several, an expired stored certificate gives way
// to the fallback, unknown names and no SNI get the fallback or the
// domain's.
func TestSelection(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	ctx := context.Background()
	st := sqliteStore(t)
	fbChain, fbKey := ca.issue(t, []string{"fallback.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	fb, err := ParsePEM(fbChain, fbKey, now)
	if err != nil {
		t.Fatal(err)
	}
	fb.Source = SourceSelfSigned
	m, err := New(Options{Config: ConfigFrom(testConfig("chat.example")), Store: st, Fallback: fb, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	put := func(names []string, life time.Duration) *Certificate {
		t.Helper()
		chain, key := ca.issue(t, names, now.Add(-time.Hour), now.Add(life))
		c, err := Put(ctx, st, chain, key, SourceImported, "n1", now.Add(-time.Hour)) // stored while valid
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serve := func(sni string) string {
		t.Helper()
		tc, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		if err != nil {
			t.Fatal(err)
		}
		return tc.Leaf.DNSNames[0] + "/" + tc.Leaf.NotAfter.Sub(now).Round(time.Hour).String()
	}
	if got := serve("chat.example"); got != "fallback.example/1h0m0s" {
		t.Errorf("before Reload: %s, want the fallback", got)
	}
	put([]string{"chat.example", "conference.chat.example"}, 10*time.Hour)
	put([]string{"conference.chat.example"}, 20*time.Hour)
	put([]string{"*.chat.example"}, 30*time.Hour)
	put([]string{"old.example"}, -time.Minute/2) // expires in the past
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for sni, want := range map[string]string{
		"chat.example":            "chat.example/10h0m0s",
		"CHAT.example.":           "chat.example/10h0m0s",
		"":                        "chat.example/10h0m0s",
		"conference.chat.example": "conference.chat.example/20h0m0s",
		"upload.chat.example":     "*.chat.example/30h0m0s",
		"a.b.chat.example":        "fallback.example/1h0m0s",
		"other.example":           "fallback.example/1h0m0s",
		"old.example":             "fallback.example/1h0m0s",
	} {
		if got := serve(sni); got != want {
			t.Errorf("SNI %q: served %s, want %s", sni, got, want)
		}
	}
	infos := m.Certificates()
	if len(infos) != 5 || infos[4].Source != SourceSelfSigned || infos[0].ID != "*.chat.example" {
		t.Errorf("Certificates() = %+v", infos)
	}
}

func TestDBStore(t *testing.T) {
	ctx := context.Background()
	st := sqliteStore(t)
	if _, err := st.Get(ctx, "cert/x"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get of nothing: %v, want ErrNotFound", err)
	}
	heard := make(chan struct{}, 10)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go st.Watch(wctx, func() { heard <- struct{}{} })
	<-heard // the first call: watching
	if err := st.Put(ctx, "state/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "cert/x", []byte("2")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not hear a certificate written")
	}
	if err := st.Delete(ctx, "cert/x"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not hear a certificate deleted")
	}
	all, err := st.List(ctx, "state/")
	if err != nil || len(all) != 1 || string(all["state/x"]) != "1" {
		t.Errorf("List(state/) = %v, %v", all, err)
	}
	if err := st.Delete(ctx, "cert/never"); err != nil {
		t.Errorf("deleting what is not there: %v", err)
	}
	// Deleting an account never touches what is stored here.
	for _, user := range []string{"aviary", "certs"} {
		_ = st.db.(storage.Users).DeleteUser(ctx, user)
	}
	if v, err := st.Get(ctx, "state/x"); err != nil || string(v) != "1" {
		t.Errorf("after deleting the accounts aviary and certs: %q, %v", v, err)
	}
}
