package tlsutil

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/conf"
)

func TestSelfSignedGeneratedOnceAndLogged(t *testing.T) {
	cfg := conf.Default()
	cfg.Domain = "chat.example"
	cfg.DataDir = t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	tc, err := Load(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyHostname("chat.example"); err != nil {
		t.Errorf("certificate does not cover the domain: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "SELF-SIGNED") {
		t.Errorf("no loud warning in %q", logs.String())
	}
	before, _ := os.ReadFile(filepath.Join(cfg.DataDir, GeneratedCert))
	if _, err := Load(cfg, log); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(cfg.DataDir, GeneratedCert))
	if !bytes.Equal(before, after) {
		t.Error("certificate regenerated although still valid")
	}
	// Configured files win.
	cfg2 := conf.Default()
	cfg2.TLS.CertFile = filepath.Join(cfg.DataDir, GeneratedCert)
	cfg2.TLS.KeyFile = filepath.Join(cfg.DataDir, GeneratedKey)
	if _, err := Load(cfg2, log); err != nil {
		t.Fatal(err)
	}
	cfg2.TLS.KeyFile = filepath.Join(cfg.DataDir, "missing.pem")
	if _, err := Load(cfg2, log); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Errorf("missing key: err = %v", err)
	}
}
