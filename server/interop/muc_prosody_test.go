package interop

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
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
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// prosodyStaticMapModule makes Prosody's outgoing s2s find chosen
// domains at fixed addresses instead of in DNS, as Aviary's s2s.hosts
// does (it wraps the resolver mod_s2s asks).
const prosodyStaticMapModule = `
local service = require "net.resolvers.service";
local manual = require "net.resolvers.manual";
local map = module:get_option("s2s_static_map", {});
if not service._aviary_new then
	service._aviary_new = service.new;
	service.new = function(hostname, srv, proto, extra, ...)
		local t = map[hostname];
		if not t then return service._aviary_new(hostname, srv, proto, extra, ...); end
		if srv == "xmpps-server" then return manual.new({}, "tcp", extra); end
		return manual.new({ { "tcp4", t.ip, t.port, extra } }, "tcp", extra);
	end
end
`

// mucProsody is a throwaway Debian Prosody with a group chat component,
// federating with one Aviary domain by dialback.
type mucProsody struct {
	c2sAddr, s2sAddr string
}

// startMUCProsody runs Prosody for domain (users) and rooms.<domain>
// (its muc component) on 127.0.0.2, reaching the Aviary domain peer and
// its service domains at peerAddr; it stops when the test ends.
func startMUCProsody(t *testing.T, domain, peer, peerAddr string, peerServices ...string) *mucProsody {
	t.Helper()
	bin, err := exec.LookPath("prosody")
	need(t, err == nil, "prosody")
	const ip = "127.0.0.2"
	dir := t.TempDir()
	for _, d := range []string{"data", "plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write(filepath.Join("plugins", "mod_s2s_static_map.lua"), []byte(prosodyStaticMapModule))
	certPath, keyPath := selfSignedPEM(t, dir, domain) // self-signed on both sides: Server Dialback
	peerHost, peerPort, err := net.SplitHostPort(peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	var staticMap []string
	for _, h := range append([]string{peer}, peerServices...) {
		staticMap = append(staticMap, fmt.Sprintf("[%q] = { ip = %q, port = %s }", h, peerHost, peerPort))
	}
	p := &mucProsody{c2sAddr: freeAddrOn(t, ip), s2sAddr: freeAddrOn(t, ip)}
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	logPath := filepath.Join(dir, "prosody.log")
	cfgPath := write("prosody.cfg.lua", fmt.Appendf(nil, `
run_as_root = true
pidfile = %q
data_path = %q
plugin_paths = { %q }
log = { { levels = { min = "debug" }, to = "file", filename = %q } }
interfaces = { %q }
local_interfaces = { %q }
c2s_ports = { %s }
s2s_ports = { %s }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
admin_socket = %q
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "ping", "s2s_static_map", "admin_shell" }
modules_disabled = { "s2s_bidi", "offline", "c2s_direct_tls" }
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
s2s_require_encryption = true
s2s_secure_auth = false
s2s_timeout = 10
ssl = { certificate = %q, key = %q }
s2s_static_map = { %s }
VirtualHost %q
Component %q "muc"
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "plugins"), logPath,
		ip, ip, port(p.c2sAddr), port(p.s2sAddr), filepath.Join(dir, "admin.sock"),
		certPath, keyPath, strings.Join(staticMap, ", "), domain, "rooms."+domain))
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{logPath, out.Name()} {
				b, _ := os.ReadFile(f)
				if len(b) > 30000 {
					b = b[len(b)-30000:]
				}
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	cmd := exec.Command(bin, "--config", cfgPath, "-F")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prosody: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("prosody exited: %v", err)
		default:
		}
		for _, a := range []string{p.c2sAddr, p.s2sAddr} {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
	out2, err := exec.Command("prosodyctl", "--config", cfgPath, "register", "pat", domain, "pat-secret").CombinedOutput()
	if err != nil {
		t.Fatalf("prosodyctl register: %v\n%s", err, out2)
	}
	return p
}

// freeAddrOn returns host:port with a port free on host a moment ago.
func freeAddrOn(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	defer ln.Close()
	return net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

// TestGroupChatWithProsody federates Aviary (aviary.test, group chat at
// conference.aviary.test) with a real Prosody (prosody.test, group chat
// at rooms.prosody.test): pat of Prosody joins alice's Aviary room over
// s2s and they talk both ways; then alice joins pat's Prosody room and
// they talk both ways there.
func TestGroupChatWithProsody(t *testing.T) {
	_, err := exec.LookPath("prosody")
	need(t, err == nil, "prosody")
	avS2S := servertest.FreeAddr(t)
	// Prosody's ports are picked before Aviary starts, so Aviary's
	// s2s.hosts can name them.
	cfg := servertest.DefaultConfig(t)
	cfg.Domain = "aviary.test"
	cfg.S2S.Listen = avS2S
	cfg.S2S.DialbackSecret = "muc-prosody-interop"
	cfg.S2S.ConnectTimeout = 10 * time.Second
	pr := startMUCProsody(t, "prosody.test", "aviary.test", avS2S, "conference.aviary.test")
	cfg.S2S.Hosts = map[string]string{"prosody.test": pr.s2sAddr, "rooms.prosody.test": pr.s2sAddr}
	av := servertest.RunServer(t, cfg, server.WithService(server.NewFederationService()))
	servertest.CreateUser(t, av, "alice", "alice-secret")

	alice := servertest.DialAddr(t, av.Addr(server.ListenerC2S).String(), "aviary.test", false)
	alice.Login("alice", "alice-secret", "desk")
	pat := servertest.DialAddr(t, pr.c2sAddr, "prosody.test", false)
	pat.Login("pat", "pat-secret", "laptop")
	for _, c := range []*servertest.Client{alice, pat} {
		c.Timeout = 30 * time.Second // the first stanza each way waits for s2s and dialback
	}

	t.Run("lounge@conference.aviary.test", func(t *testing.T) {
		chatInFederatedRoom(t, "lounge@conference.aviary.test", alice, "alice", pat, "pat")
	})
	t.Run("porch@rooms.prosody.test", func(t *testing.T) {
		chatInFederatedRoom(t, "porch@rooms.prosody.test", pat, "pat", alice, "alice")
	})
}

// selfSignedPEM writes a self-signed certificate for name and its key
// as PEM files in dir.
func selfSignedPEM(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	cert := testutil.SelfSignedCert(t, name)
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for p, b := range map[string][]byte{
		certPath: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		keyPath:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath
}
