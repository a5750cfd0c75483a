package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/server/tlsutil"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// certbotDir writes a certificate for each name as certbot lays out
// /etc/letsencrypt/live: a directory per name with fullchain.pem and
// privkey.pem.
func certbotDir(t *testing.T, names ...string) string {
	t.Helper()
	live := t.TempDir()
	for _, n := range names {
		d := filepath.Join(live, n)
		if err := tlsutil.GenerateSelfSigned(n, filepath.Join(d, "fullchain.pem"), filepath.Join(d, "privkey.pem")); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(live, "README"), []byte("certbot's note"), 0o644)
	return live
}

func servedSerial(t *testing.T, addr net.Addr, name string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr.String(), &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return fmt.Sprintf("%x", c.ConnectionState().PeerCertificates[0].SerialNumber.Bytes())
}

// TestCertImport: `aviary cert import` checks certbot's live directory
// and stores every certificate in PostgreSQL; a running node serves them
// at its next handshake without a restart; list shows them; delete puts
// the node back on its own certificate.
func TestCertImport(t *testing.T) {
	pg := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const domain = "chat.example.com"
	cfg := servertest.DefaultConfig(t)
	cfg.Domain, cfg.Database.URL = domain, pg.URL()
	n := servertest.RunServer(t, cfg)
	before := servedSerial(t, n.Addr(server.ListenerC2STLS), domain)

	env := []string{"AVIARY_DATABASE=" + pg.URL(), "AVIARY_DOMAIN=" + domain, "AVIARY_DATA_DIR=" + t.TempDir()}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runCert(ctx, args, env, &out, &errb)
		return code, out.String(), errb.String()
	}

	live := certbotDir(t, domain, "conference."+domain)
	code, out, errs := run("import", live)
	if code != 0 || !strings.Contains(out, "imported chat.example.com: chat.example.com, *.chat.example.com") ||
		!strings.Contains(out, "imported conference.chat.example.com") || !strings.Contains(out, "in 36") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "warning: chat.example.com: clients that trust the usual certificate authorities will refuse it") {
		t.Errorf("no warning about the self-signed certificate:\n%s", errs)
	}
	// The node hears of both certificates (one write each) and serves
	// each name the best one: its own, or the domain's wildcard.
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		imported := 0
		for _, c := range n.Certs().Certificates() {
			if c.Source == "imported" {
				imported++
			}
		}
		if imported != 2 {
			return fmt.Errorf("the node serves %d imported certificates, want 2", imported)
		}
		return nil
	})
	for name, id := range map[string]string{domain: domain, "conference." + domain: "conference." + domain, "upload." + domain: domain} {
		want := n.Certs().Lookup(name)
		if want.ID != id {
			t.Errorf("%s: served from %s, want %s", name, want.ID, id)
		}
		if got := servedSerial(t, n.Addr(server.ListenerC2STLS), name); got != want.Serial || got == before {
			t.Errorf("%s: handshake serial %s, want the imported %s", name, got, want.Serial)
		}
	}

	code, out, _ = run("list")
	if code != 0 || !strings.Contains(out, "conference.chat.example.com") || !strings.Contains(out, "imported") || !strings.Contains(out, "ISSUER") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	code, out, _ = run("list", "--json")
	if code != 0 || !strings.Contains(out, `"source": "imported"`) || !strings.Contains(out, `"not_after"`) {
		t.Errorf("list --json: exit %d\n%s", code, out)
	}

	if code, _, errs := run("delete", "nothing.example.com"); code != 1 || !strings.Contains(errs, "no stored certificate") {
		t.Errorf("delete of nothing: exit %d %s", code, errs)
	}
	if code, out, errs := run("delete", domain); code != 0 || !strings.Contains(out, "deleted chat.example.com") {
		t.Fatalf("delete: exit %d %s%s", code, out, errs)
	}
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := servedSerial(t, n.Addr(server.ListenerC2STLS), domain); got != before {
			return fmt.Errorf("after delete the node serves %s, want its own %s", got, before)
		}
		return nil
	})
}

// TestCertImportRefuses: nothing is stored when any certificate is
// unusable, and the message says which and why.
func TestCertImportRefuses(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	env := []string{"AVIARY_DOMAIN=chat.example.com", "AVIARY_DATA_DIR=" + dataDir}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runCert(ctx, args, env, &out, &errb)
		return code, out.String(), errb.String()
	}
	good := certbotDir(t, "chat.example.com")
	other := certbotDir(t, "other.example.net")
	mismatch := certbotDir(t, "conference.chat.example.com")
	// The key of another certificate.
	key, _ := os.ReadFile(filepath.Join(good, "chat.example.com", "privkey.pem"))
	os.WriteFile(filepath.Join(mismatch, "conference.chat.example.com", "privkey.pem"), key, 0o600)
	// cert.pem + chain.pem + key.pem, without a key.
	noKey := t.TempDir()
	os.WriteFile(filepath.Join(noKey, "cert.pem"), []byte("x"), 0o600)

	for _, tc := range []struct {
		name, dir, want string
	}{
		{"empty", t.TempDir(), "no certificate found"},
		{"another domain", other, "none of them chat.example.com"},
		{"key of another certificate", mismatch, "the private key is not the certificate's"},
		{"no key", noKey, "no privkey.pem or key.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run("import", tc.dir)
			if code != 1 || !strings.Contains(errs, tc.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errs, tc.want)
			}
		})
	}
	code, out, _ := run("list")
	if code != 0 || !strings.Contains(out, "no stored certificates") {
		t.Errorf("something was stored: %s", out)
	}
	if code, _, _ := run("import"); code != 2 {
		t.Errorf("import without DIR: exit %d, want 2", code)
	}
	// cert.pem with chain.pem and key.pem is accepted too.
	split := t.TempDir()
	cert, _ := os.ReadFile(filepath.Join(good, "chat.example.com", "fullchain.pem"))
	os.WriteFile(filepath.Join(split, "cert.pem"), cert, 0o600)
	os.WriteFile(filepath.Join(split, "chain.pem"), nil, 0o600)
	os.WriteFile(filepath.Join(split, "key.pem"), key, 0o600)
	if code, out, errs := run("import", split); code != 0 || !strings.Contains(out, "imported chat.example.com") {
		t.Errorf("cert.pem/chain.pem/key.pem: exit %d %s%s", code, out, errs)
	}
}
