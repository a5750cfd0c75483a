package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

//go:embed compare/prosody.cfg.lua.tmpl
var prosodyTemplate string

func requireServices() bool {
	return os.Getenv("AVIARY_REQUIRE_SERVICES") == "1" || os.Getenv("CI") == "true"
}

// writeCert writes a self-signed P-256 certificate for localhost.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func freePort(t *testing.T) int {
	t.Helper()
	ps, err := testutil.FreePorts(1) // Prosody binds it later
	if err != nil {
		t.Fatal(err)
	}
	return ps[0]
}

// startProsody runs a throwaway Prosody from the comparison's template and
// returns its c2s address and pid.
func startProsody(t *testing.T) (string, int) {
	t.Helper()
	bin, err := exec.LookPath("prosody")
	if err != nil {
		if requireServices() {
			t.Fatal("prosody is not installed (.ci/setup.sh installs it)")
		}
		t.Skip("prosody is not installed")
	}
	dir := t.TempDir()
	for _, d := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	certFile, keyFile := writeCert(t, dir)
	port := freePort(t)
	cfg := strings.NewReplacer("@@DIR@@", dir, "@@PORT@@", strconv.Itoa(port),
		"@@CERT@@", certFile, "@@KEY@@", keyFile, "@@DOMAIN@@", "localhost",
		"@@PROSODY_MAM@@", "", "@@PROSODY_MAM_OPTIONS@@", "").Replace(prosodyTemplate) // no archive, as compare.py without --archive
	cfgFile := filepath.Join(dir, "prosody.cfg.lua")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-F", "--config", cfgFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited := make(chan struct{})
	if err := testutil.StartChild(cmd, syscall.SIGKILL, func(error) { close(exited) }); err != nil {
		t.Fatalf("start prosody: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "prosody.log"))
			t.Fatalf("prosody exited: %s\n%s", out.String(), log)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	return addr, cmd.Process.Pid
}

// runTool runs the tool in-process with -json and decodes the result.
func runTool(t *testing.T, args ...string) Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"-json", "-timeout", "20s", "-drain", "10s"}, args...), &stdout, &stderr)
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("exit %d, bad JSON %q: %v\nstderr: %s", code, stdout.String(), err, stderr.String())
	}
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, stderr.String())
	}
	return res
}

func TestAgainstProsody(t *testing.T) {
	addr, pid := startProsody(t)
	cache := filepath.Join(t.TempDir(), "scram.cache")
	common := []string{"-servers", addr, "-domain", "localhost", "-concurrency", "4", "-scram-cache", cache}

	t.Run("ring", func(t *testing.T) {
		res := runTool(t, append(common, "-workload", "ring", "-prefix", "ring", "-users", "4",
			"-messages", "10", "-inflight", "3")...)
		if res.Create.OK+res.Create.Existing != 4 || res.Login.OK != 4 || res.Login.Failed != 0 {
			t.Fatalf("create %+v login %+v", res.Create, res.Login)
		}
		r := res.Ring
		if r == nil {
			t.Fatal("no ring result")
		}
		want := Counts{Sent: 40, Received: 40}
		if r.Counts != want || r.Stalled != 0 {
			t.Fatalf("ring counts %+v stalled %d, want %+v", r.Counts, r.Stalled, want)
		}
		if r.Latency.Count != 40 || r.Latency.P50 <= 0 || r.Latency.P999 < r.Latency.P50 || r.PerSec <= 0 {
			t.Fatalf("ring latency %+v, %v msgs/s", r.Latency, r.PerSec)
		}
	})
	t.Run("second run reuses accounts and cached keys", func(t *testing.T) {
		res := runTool(t, append(common, "-workload", "login", "-prefix", "ring", "-users", "4", "-mech", "SCRAM-SHA-1")...)
		if res.Create.Existing != 4 || res.Create.OK != 0 || res.Login.OK != 4 {
			t.Fatalf("create %+v login %+v", res.Create, res.Login)
		}
		c, err := loadSCRAMCache(cache)
		if err != nil || len(c.m) != 4 {
			t.Fatalf("cache has %d entries, %v", len(c.m), err)
		}
	})
	t.Run("plain", func(t *testing.T) {
		res := runTool(t, append(common, "-workload", "login", "-prefix", "ring", "-users", "4", "-create", "none", "-mech", "PLAIN")...)
		if res.Login.OK != 4 {
			t.Fatalf("login %+v", res.Login)
		}
	})
	t.Run("wrong password fails", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run([]string{"-json", "-servers", addr, "-users", "2", "-prefix", "ring", "-create", "none",
			"-password", "wrong", "-workload", "login"}, &stdout, &stderr)
		var res Result
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatal(err)
		}
		if code == 0 || res.Login.Failed != 2 || len(res.Login.Errors) == 0 {
			t.Fatalf("exit %d, login %+v", code, res.Login)
		}
	})
	t.Run("broadcast", func(t *testing.T) {
		res := runTool(t, append(common, "-workload", "broadcast", "-prefix", "bc", "-users", "4",
			"-messages", "5", "-inflight", "2")...)
		b := res.Broadcast
		if b == nil || b.Followers != 3 || b.Subscribed != 3 {
			t.Fatalf("broadcast %+v", b)
		}
		if want := (Counts{Sent: 15, Received: 15}); b.Counts != want {
			t.Fatalf("broadcast counts %+v, want %+v", b.Counts, want)
		}
	})
	// Prosody's mod_muc (the comparison's template loads it): the first
	// occupant gets a locked room (201) and unlocks it; every occupant,
	// the sender included, gets every message.
	t.Run("muc", func(t *testing.T) {
		res := runTool(t, append(common, "-workload", "muc", "-prefix", "muc", "-users", "4",
			"-messages", "5", "-interval", "10ms")...)
		m := res.MUC
		if m == nil || m.Room != "bench@conference.localhost" || m.Occupants != 4 || m.Joined != 4 || len(m.JoinErrors) != 0 {
			t.Fatalf("muc %+v", m)
		}
		if want := (Counts{Sent: 80, Received: 80}); m.Counts != want || m.Messages != 20 {
			t.Fatalf("muc counts %+v (%d messages), want %+v (20 messages)", m.Counts, m.Messages, want)
		}
		if m.Latency.Count != 80 || m.PerSec <= 0 {
			t.Fatalf("muc latency %+v, %v deliveries/s", m.Latency, m.PerSec)
		}
	})
	t.Run("idle memory", func(t *testing.T) {
		res := runTool(t, append(common, "-workload", "idle", "-prefix", "idle", "-users", "5",
			"-rss-pid", strconv.Itoa(pid), "-settle", "2s")...)
		m := res.Memory
		if res.Login.OK != 5 || m == nil || m.Sessions != 5 || m.BeforeKiB <= 0 || m.AfterKiB <= 0 {
			t.Fatalf("login %+v memory %+v", res.Login, m)
		}
	})
}
