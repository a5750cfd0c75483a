package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Bundle is a certificate chain and its key as found on disk.
type Bundle struct {
	Dir        string
	Chain, Key []byte
}

// ReadDir finds certificates in dir laid out as certbot and most other
// tools do: fullchain.pem and privkey.pem, or cert.pem (with chain.pem
// appended when present) and privkey.pem or key.pem. When dir itself has
// none, each subdirectory is searched, one certificate per directory
// (certbot's /etc/letsencrypt/live has one per certificate name).
// Symbolic links are followed.
func ReadDir(dir string) ([]Bundle, error) {
	b, err := readBundle(dir)
	if err == nil {
		return []Bundle{b}, nil
	}
	if !errors.Is(err, ErrNoCertificate) {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	var out []Bundle
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
			continue
		}
		b, err := readBundle(sub)
		if errors.Is(err, ErrNoCertificate) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w in %s or its subdirectories (want fullchain.pem and privkey.pem, or cert.pem, chain.pem and privkey.pem or key.pem)", ErrNoCertificate, dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

func readBundle(dir string) (Bundle, error) {
	read := func(name string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
		return data, nil
	}
	b := Bundle{Dir: dir}
	var err error
	if b.Chain, err = read("fullchain.pem"); err != nil {
		return b, err
	}
	if b.Chain == nil {
		if b.Chain, err = read("cert.pem"); err != nil {
			return b, err
		}
		if b.Chain != nil {
			chain, err := read("chain.pem")
			if err != nil {
				return b, err
			}
			b.Chain = append(append(b.Chain, '\n'), chain...)
		}
	}
	for _, name := range []string{"privkey.pem", "key.pem"} {
		if b.Key != nil {
			break
		}
		if b.Key, err = read(name); err != nil {
			return b, err
		}
	}
	switch {
	case b.Chain == nil && b.Key == nil:
		return b, ErrNoCertificate
	case b.Chain == nil:
		return b, fmt.Errorf("%w: %s has a private key but no fullchain.pem or cert.pem", ErrBadCertificate, dir)
	case b.Key == nil:
		return b, fmt.Errorf("%w: %s has a certificate but no privkey.pem or key.pem", ErrBadCertificate, dir)
	}
	return b, nil
}

// ForDomain checks that a certificate serves domain: one of its names is
// the domain or a name under it (a service), or a wildcard covering the
// domain.
func ForDomain(c *Certificate, domain string) error {
	domain = strings.ToLower(domain)
	_, parent, _ := strings.Cut(domain, ".")
	for _, n := range c.Names {
		if n == domain || strings.HasSuffix(n, "."+domain) || n == "*."+parent {
			return nil
		}
	}
	return fmt.Errorf("%w: it is for %s, none of them %s or a name under it", ErrBadCertificate, strings.Join(c.Names, ", "), domain)
}

// Untrusted says why clients relying on the system's certificate
// authorities would not trust c ("" when they would).
func Untrusted(c *Certificate, now time.Time) string {
	inter := x509.NewCertPool()
	for _, der := range c.tls.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	_, err := c.tls.Leaf.Verify(x509.VerifyOptions{DNSName: c.Names[0], Intermediates: inter, CurrentTime: now})
	if err != nil {
		return err.Error()
	}
	return ""
}
