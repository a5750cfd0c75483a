package s2s

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

func TestDialbackKey(t *testing.T) {
	// Expected value computed independently (Python hmac/hashlib) with the
	// XEP-0185 example inputs.
	got := dialbackKey("s3cr3tf0rd14lb4ck", "example.net", "example.com", "D60000229F")
	if want := "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc"; got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	cases := []struct {
		name                        string
		secret, recv, orig, id, key string
		ok                          bool
	}{
		{"same inputs", "s", "b.test", "a.test", "id1", dialbackKey("s", "b.test", "a.test", "id1"), true},
		{"other secret", "x", "b.test", "a.test", "id1", dialbackKey("s", "b.test", "a.test", "id1"), false},
		{"other stream", "s", "b.test", "a.test", "id2", dialbackKey("s", "b.test", "a.test", "id1"), false},
		{"swapped domains", "s", "a.test", "b.test", "id1", dialbackKey("s", "b.test", "a.test", "id1"), false},
		{"empty key", "s", "b.test", "a.test", "id1", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkDialbackKey(tc.secret, tc.recv, tc.orig, tc.id, tc.key); got != tc.ok {
				t.Fatalf("check = %v, want %v", got, tc.ok)
			}
		})
	}
}

func TestCertNames(t *testing.T) {
	ca := newTestCA(t)
	v := &certVerifier{roots: x509.NewCertPool(), now: time.Now}
	v.roots.AddCert(ca.cert)
	cases := []struct {
		name   string
		names  certNames
		domain string
		want   error // nil, ErrCertName
	}{
		{"xmppAddr", certNames{xmppAddr: []string{"a.test"}}, "a.test", nil},
		{"xmppAddr case-insensitive", certNames{xmppAddr: []string{"A.Test"}}, "a.test", nil},
		{"xmppAddr other domain", certNames{xmppAddr: []string{"b.test"}}, "a.test", ErrCertName},
		{"srv-id xmpp-server", certNames{srv: []string{"_xmpp-server.a.test"}}, "a.test", nil},
		{"srv-id xmpps-server", certNames{srv: []string{"_xmpps-server.a.test"}}, "a.test", nil},
		{"srv-id client service", certNames{srv: []string{"_xmpp-client.a.test"}}, "a.test", ErrCertName},
		{"dns-id", certNames{dns: []string{"a.test"}}, "a.test", nil},
		{"dns-id wildcard", certNames{dns: []string{"*.example.test"}}, "chat.example.test", nil},
		{"dns-id wildcard not two levels", certNames{dns: []string{"*.test"}}, "x.a.test", ErrCertName},
		{"no names (CN only)", certNames{}, "a.test", ErrCertName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := issue(t, ca, "a.test", tc.names)
			err := v.verify([]*x509.Certificate{c.leaf}, tc.domain)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("verify = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("untrusted", func(t *testing.T) {
		c := domainCert(t, nil, "a.test")
		if err := v.verify([]*x509.Certificate{c.leaf}, "a.test"); !errors.Is(err, ErrCertUntrusted) {
			t.Fatalf("verify = %v", err)
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		if err := v.verify(nil, "a.test"); !errors.Is(err, ErrNoCert) {
			t.Fatalf("verify = %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		c := domainCert(t, ca, "a.test")
		late := &certVerifier{roots: v.roots, now: func() time.Time { return time.Now().Add(48 * time.Hour) }}
		if err := late.verify([]*x509.Certificate{c.leaf}, "a.test"); !errors.Is(err, ErrCertUntrusted) {
			t.Fatalf("verify = %v", err)
		}
	})
	t.Run("ca file", func(t *testing.T) {
		fv, err := newCertVerifier(ca.pemPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := fv.verify([]*x509.Certificate{domainCert(t, ca, "a.test").leaf}, "a.test"); err != nil {
			t.Fatal(err)
		}
		if _, err := newCertVerifier(ca.pemPath + ".missing"); err == nil {
			t.Fatal("missing ca_file accepted")
		}
	})
}

// fakeResolver answers SRV lookups from a table; absent names are NXDOMAIN.
type fakeResolver map[string][]*net.SRV

func (f fakeResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	recs, ok := f[key]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
	}
	return key, recs, nil
}

func TestLookupTargets(t *testing.T) {
	cases := []struct {
		name    string
		res     fakeResolver
		want    []target
		wantErr error
	}{
		{
			name: "no SRV: domain on 5269",
			res:  fakeResolver{},
			want: []target{{host: "example.test", port: 5269}},
		},
		{
			name: "xmpp-server records by priority",
			res: fakeResolver{"_xmpp-server._tcp.example.test": {
				{Target: "backup.example.test.", Port: 5270, Priority: 20, Weight: 0},
				{Target: "main.example.test.", Port: 5269, Priority: 10, Weight: 0},
			}},
			want: []target{{host: "main.example.test", port: 5269}, {host: "backup.example.test", port: 5270}},
		},
		{
			name: "direct TLS merged with STARTTLS by priority",
			res: fakeResolver{
				"_xmpps-server._tcp.example.test": {{Target: "tls.example.test.", Port: 443, Priority: 5}},
				"_xmpp-server._tcp.example.test":  {{Target: "plain.example.test.", Port: 5269, Priority: 10}},
			},
			want: []target{{host: "tls.example.test", port: 443, directTLS: true}, {host: "plain.example.test", port: 5269}},
		},
		{
			name:    "service decidedly not available",
			res:     fakeResolver{"_xmpp-server._tcp.example.test": {{Target: ".", Port: 0}}},
			wantErr: ErrNoTargets,
		},
		{
			name: "dot for STARTTLS, direct TLS offered",
			res: fakeResolver{
				"_xmpp-server._tcp.example.test":  {{Target: ".", Port: 0}},
				"_xmpps-server._tcp.example.test": {{Target: "tls.example.test", Port: 5270}},
			},
			want: []target{{host: "tls.example.test", port: 5270, directTLS: true}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookupTargets(t.Context(), tc.res, "example.test")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("targets %+v, want %+v", got, tc.want)
			}
		})
	}
	t.Run("weights keep every record", func(t *testing.T) {
		res := fakeResolver{"_xmpp-server._tcp.example.test": {
			{Target: "a.example.test", Port: 1, Priority: 10, Weight: 60},
			{Target: "b.example.test", Port: 2, Priority: 10, Weight: 30},
			{Target: "c.example.test", Port: 3, Priority: 10, Weight: 0},
			{Target: "d.example.test", Port: 4, Priority: 5, Weight: 0},
		}}
		for range 50 {
			got, err := lookupTargets(t.Context(), res, "example.test")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 4 || got[0].host != "d.example.test" {
				t.Fatalf("targets %+v", got)
			}
			seen := map[string]bool{}
			for _, g := range got {
				seen[g.host] = true
			}
			if len(seen) != 4 {
				t.Fatalf("duplicate or missing targets %+v", got)
			}
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := lookupTargets(ctx, fakeResolver{}, "example.test"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestDNSDialling: with no static entry, the service dials what the
// resolver names: an SRV record for STARTTLS, or one for direct TLS
// (XEP-0368), pointing at the peer on loopback.
func TestDNSDialling(t *testing.T) {
	for _, service := range []string{"_xmpp-server", "_xmpps-server"} {
		t.Run(service, func(t *testing.T) {
			ca := newTestCA(t)
			b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
			res := fakeResolver{service + "._tcp.b.test": {srvRecord(b.addr(), 1)}}
			a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath, resolver: res})
			b.cfg.S2S.Hosts["a.test"] = a.addr()
			a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "via srv"))
			b.expect(isBody("via srv"), "message via SRV")
		})
	}
}

// TestNextTargetAfterBrokenStream: the first SRV target accepts TCP but
// breaks the stream; the service moves on to the next target instead of
// bouncing the message.
func TestNextTargetAfterBrokenStream(t *testing.T) {
	broken := fakePeer(t, func(c net.Conn) {
		_, _ = c.Write([]byte("<this is not xmpp>"))
		c.Close()
	})
	ca := newTestCA(t)
	b := startNode(t, nodeOpts{domain: "b.test", cert: domainCert(t, ca, "b.test"), caFile: ca.pemPath})
	res := fakeResolver{"_xmpp-server._tcp.b.test": {srvRecord(broken, 1), srvRecord(b.addr(), 2)}}
	a := startNode(t, nodeOpts{domain: "a.test", cert: domainCert(t, ca, "a.test"), caFile: ca.pemPath, resolver: res})
	b.cfg.S2S.Hosts["a.test"] = a.addr()
	a.svc.Send(t.Context(), msg("alice@a.test", "bob@b.test", "second target"))
	b.expect(isBody("second target"), "message via the second SRV target")
}

func TestStaticTarget(t *testing.T) {
	cases := []struct {
		in   string
		want target
		err  bool
	}{
		{"127.0.0.2:5269", target{host: "127.0.0.2", port: 5269}, false},
		{"tls://xmpp.example.test:5270", target{host: "xmpp.example.test", port: 5270, directTLS: true}, false},
		{"[::1]:5269", target{host: "::1", port: 5269}, false},
		{"nohost", target{}, true},
		{"h:99999", target{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := staticTarget(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestDomainOf(t *testing.T) {
	cases := map[string]string{
		"a.test":            "a.test",
		"User@A.Test/res":   "a.test",
		"user@a.test/res@x": "a.test",
		"a.test/res":        "a.test",
		"":                  "",
		"example.test.":     "example.test",
	}
	for in, want := range cases {
		if got := domainOf(in); got != want {
			t.Errorf("domainOf(%q) = %q, want %q", in, got, want)
		}
	}
}
