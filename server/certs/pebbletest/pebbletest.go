// Package pebbletest runs Pebble, Let's Encrypt's ACME test server
// (github.com/letsencrypt/pebble/v2, built by .ci/setup.sh from the Go
// module proxy), for tests: one process per test on loopback ports, with
// a DNS server of its own that sends every name to 127.0.0.1, so that
// Pebble's validation authority really connects to the node under test on
// the ports it is given (HTTPPort for HTTP-01, TLSPort for TLS-ALPN-01).
//
// The binary is $AVIARY_PEBBLE, else ~/.cache/aviary/pebble-VERSION/pebble,
// else pebble on $PATH. When it is missing the test is skipped, unless
// AVIARY_REQUIRE_SERVICES=1 or CI=true, when it fails.
package pebbletest

import (
	"github.com/aviary-im/aviary/internal/testutil"

	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// Version is the Pebble release .ci/setup.sh installs.
const Version = "v2.10.3"

// Options configure a Pebble.
type Options struct {
	// HTTPPort and TLSPort are where the validation authority connects
	// for HTTP-01 and TLS-ALPN-01 (on 127.0.0.1, whatever the name).
	HTTPPort, TLSPort int
	// Validity is the lifetime of issued certificates. Default 90 days.
	Validity time.Duration
	// AlwaysValid skips validation (PEBBLE_VA_ALWAYS_VALID).
	AlwaysValid bool
}

// Pebble is one running Pebble.
type Pebble struct {
	// Directory is the ACME directory URL (tls.acme.directory).
	Directory string
	// CAFile is the PEM file of the CA of Pebble's HTTPS listener
	// (tls.acme.ca_file).
	CAFile string

	mgmt   string
	client *http.Client
	log    string
}

// Binary returns the Pebble executable, or "".
func Binary() string {
	if p := os.Getenv("AVIARY_PEBBLE"); p != "" {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "aviary", "pebble-"+Version, "pebble")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	return ""
}

// Start runs Pebble until the test ends.
func Start(t testing.TB, o Options) *Pebble {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "pebbletest: no pebble binary (run .ci/setup.sh, or set AVIARY_PEBBLE)"
		if pgtest.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if o.Validity <= 0 {
		o.Validity = 90 * 24 * time.Hour
	}
	dir := t.TempDir()
	caPEM, certPEM, keyPEM, err := listenerCert()
	if err != nil {
		t.Fatal(err)
	}
	p := &Pebble{CAFile: filepath.Join(dir, "ca.pem"), log: filepath.Join(dir, "pebble.log")}
	for name, data := range map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	dns, err := startDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })

	// Pebble cannot report the ports it bound, so they are picked here;
	// another process may take one first, which Pebble reports as "address
	// already in use": then pick again.
	for attempt := 0; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		p.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", ports[0])
		p.mgmt = fmt.Sprintf("https://127.0.0.1:%d", ports[1])
		err = p.run(t, dir, bin, dns.Addr().String(), ports, o)
		if err == nil {
			return p
		}
		if attempt >= 2 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("pebbletest: %v", err)
		}
	}
}

func (p *Pebble) run(t testing.TB, dir, bin, dnsAddr string, ports []int, o Options) error {
	var cfg struct {
		Pebble map[string]any `json:"pebble"`
	}
	cfg.Pebble = map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"certificate":             filepath.Join(dir, "cert.pem"),
		"privateKey":              filepath.Join(dir, "key.pem"),
		"httpPort":                o.HTTPPort,
		"tlsPort":                 o.TLSPort,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{
			"default": map[string]any{"description": "aviary tests", "validityPeriod": int(o.Validity / time.Second)},
		},
	}
	data, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return err
	}
	logf, err := os.Create(p.log)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-config", cfgPath, "-dnsserver", dnsAddr)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after up to 15 s
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce answers
		"PEBBLE_AUTHZREUSE=0",      // every order validates
		"PEBBLE_VA_ALWAYS_VALID="+map[bool]string{true: "1", false: "0"}[o.AlwaysValid])
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(p.log)
			return fmt.Errorf("pebble exited (%v): %s", err, out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.Directory, nil)
		resp, err := p.client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			out, _ := os.ReadFile(p.log)
			return fmt.Errorf("pebble not ready after 30s (%v): %s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling a process we do not control
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			t.Logf("pebble log:\n%s", out)
		}
	})
	return nil
}

// Roots returns the CA that issues Pebble's certificates (it is generated
// at every start), to verify what a node serves.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebbletest: root CA: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pool := x509.NewCertPool()
	if resp.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebbletest: root CA: %s %q", resp.Status, body)
	}
	return pool
}

// Log returns what Pebble has logged so far.
func (p *Pebble) Log() string {
	out, _ := os.ReadFile(p.log)
	return string(out)
}

// listenerCert makes a CA and a certificate for 127.0.0.1 and localhost
// signed by it, for Pebble's own HTTPS.
func listenerCert() (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebbletest listener CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// freePorts are ports Pebble or a node binds later; testutil.FreePorts
// keeps other processes off them meanwhile.
func freePorts(n int) ([]int, error) { return testutil.FreePorts(n) }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// for a node listener Pebble must know before the node starts.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return p[0]
}
