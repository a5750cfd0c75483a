// Package tlsutil loads the node's certificate, or generates a self-signed
// one for the domain when none is configured. server/certs serves it for
// the names no stored (ACME or imported) certificate covers.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/aviary-im/aviary/conf"
)

// Generated file names inside DataDir.
const (
	GeneratedCert = "selfsigned-cert.pem"
	GeneratedKey  = "selfsigned-key.pem"
)

// Where the certificate of Load came from.
const (
	SourceFile       = "file"        // tls.cert_file and tls.key_file
	SourceSelfSigned = "self-signed" // generated into data_dir
)

// Load returns the TLS configuration for the node: the files named in
// cfg.TLS, or a self-signed certificate for cfg.Domain kept in cfg.DataDir
// (generated on first use, reused afterwards), which is logged loudly
// because clients will not trust it.
func Load(cfg *conf.Config, log *slog.Logger) (*tls.Config, error) {
	cert, _, err := LoadCertificate(cfg, log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// LoadCertificate is Load's certificate and where it came from
// (SourceFile or SourceSelfSigned).
func LoadCertificate(cfg *conf.Config, log *slog.Logger) (tls.Certificate, string, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return tls.Certificate{}, "", fmt.Errorf("tlsutil: loading tls.cert_file/tls.key_file: %w", err)
		}
		return cert, SourceFile, nil
	}
	certPath := filepath.Join(cfg.DataDir, GeneratedCert)
	keyPath := filepath.Join(cfg.DataDir, GeneratedKey)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil && !coversDomain(cert, cfg.Domain) {
		err = errors.New("stale: domain changed")
	}
	if err != nil {
		if err := GenerateSelfSigned(cfg.Domain, certPath, keyPath); err != nil {
			return tls.Certificate{}, "", err
		}
		if cert, err = tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			return tls.Certificate{}, "", fmt.Errorf("tlsutil: %w", err)
		}
	}
	if cfg.TLS.ACME.Enabled {
		log.Info("serving a self-signed TLS certificate until ACME has one (tls.acme)", "domain", cfg.Domain, "cert", certPath)
	} else {
		log.Warn("USING A SELF-SIGNED TLS CERTIFICATE: clients will warn or refuse to connect; set tls.cert_file and tls.key_file, turn on tls.acme or run `aviary cert import` for production",
			"domain", cfg.Domain, "cert", certPath)
	}
	return cert, SourceSelfSigned, nil
}

func coversDomain(cert tls.Certificate, domain string) bool {
	if len(cert.Certificate) == 0 {
		return false
	}
	c, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false
	}
	return c.VerifyHostname(domain) == nil && time.Now().Before(c.NotAfter)
}

// SelfSignedWithNames returns the self-signed certificate Load keeps in
// cfg.DataDir, generated anew when it does not name each of names
// explicitly (a subjectAltName of its own, not only through *.domain):
// the service domains plugins claimed (conference.example.org), which
// peers check by name. Call it before any listener serves the old one.
func SelfSignedWithNames(cfg *conf.Config, names []string) (tls.Certificate, error) {
	certPath := filepath.Join(cfg.DataDir, GeneratedCert)
	keyPath := filepath.Join(cfg.DataDir, GeneratedKey)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil && coversDomain(cert, cfg.Domain) && namesAll(cert, names) {
		return cert, nil
	}
	if err := GenerateSelfSigned(cfg.Domain, certPath, keyPath, names...); err != nil {
		return tls.Certificate{}, err
	}
	if cert, err = tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsutil: %w", err)
	}
	return cert, nil
}

// namesAll reports whether the certificate lists every name as a DNS
// subjectAltName of its own.
func namesAll(cert tls.Certificate, names []string) bool {
	if len(cert.Certificate) == 0 {
		return false
	}
	c, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false
	}
	for _, n := range names {
		if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	return true
}

// Covers reports whether tc's certificate for domain (the first one, or
// what GetCertificate returns for it as the server name) is valid for
// name, wildcards included.
func Covers(tc *tls.Config, domain, name string) bool {
	if tc == nil {
		return false
	}
	var cert *tls.Certificate
	if len(tc.Certificates) > 0 {
		cert = &tc.Certificates[0]
	} else if tc.GetCertificate != nil {
		cert, _ = tc.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	}
	return cert != nil && coversDomain(*cert, name)
}

// GenerateSelfSigned writes a self-signed ECDSA P-256 certificate valid for
// domain, *.domain and the extra names (ten years) and its key, creating
// the directory.
func GenerateSelfSigned(domain, certPath, keyPath string, extra ...string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domain, Organization: []string{"Aviary self-signed"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(domain); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{domain, "*." + domain}
	}
	for _, n := range extra {
		if !slices.Contains(tmpl.DNSNames, n) {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	return nil
}
