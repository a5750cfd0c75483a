package s2s

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// prosodyStaticMap is a Prosody module that resolves chosen domains to
// fixed addresses instead of DNS, as Aviary's s2s.hosts does: it wraps the
// SRV resolver that mod_s2s uses for outgoing connections.
const prosodyStaticMap = `
local service = require "net.resolvers.service";
local manual = require "net.resolvers.manual";
local map = module:get_option("s2s_static_map", {});
if not service._aviary_new then
	service._aviary_new = service.new;
	service.new = function(hostname, srv, proto, extra, ...)
		local t = map[hostname];
		if t then
			if srv == "xmpps-server" then return manual.new({}, "tcp", extra); end
			return manual.new({ { "tcp4", t.ip, t.port, extra } }, "tcp", extra);
		end
		return service._aviary_new(hostname, srv, proto, extra, ...);
	end
end
`

// prosodyServer is a throwaway Prosody process for one test.
type prosodyServer struct {
	domain  string
	c2sAddr string
	s2sAddr string
	dir     string
	cfgPath string
}

type prosodyOpts struct {
	domain     string
	cert       *issued
	caFile     string
	secureAuth bool   // s2s_secure_auth: certificates required
	peer       string // the Aviary domain
	peerAddr   string // its s2s listener
}

// startProsody runs Prosody on 127.0.0.2 with its own config, data and
// plugin directories, and stops it when the test ends.
func startProsody(t *testing.T, o prosodyOpts) *prosodyServer {
	t.Helper()
	bin := requireBinary(t, "prosody", "/usr/bin/prosody")
	ctl := requireBinary(t, "prosodyctl", "/usr/bin/prosodyctl")
	const ip = "127.0.0.2"
	dir := t.TempDir()
	for _, d := range []string{"data", "plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins", "mod_s2s_static_map.lua"), []byte(prosodyStaticMap), 0o644); err != nil {
		t.Fatal(err)
	}
	c2sPort, s2sPort := freePort(t, ip), freePort(t, ip)
	peerHost, peerPort, err := net.SplitHostPort(o.peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	secure := "false"
	if o.secureAuth {
		secure = "true"
	}
	logPath := filepath.Join(dir, "prosody.log")
	cfg := fmt.Sprintf(`
run_as_root = true
pidfile = %[1]q
data_path = %[2]q
plugin_paths = { %[3]q }
log = { { levels = { min = "debug" }, to = "file", filename = %[4]q } }
interfaces = { %[5]q }
local_interfaces = { %[5]q }
c2s_ports = { %[6]d }
s2s_ports = { %[7]d }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
admin_socket = %[8]q
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "ping", "s2s_static_map", "admin_shell" }
modules_disabled = { "s2s_bidi", "offline", "c2s_direct_tls" }
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = true
s2s_secure_auth = %[9]s
s2s_timeout = 10
ssl = { certificate = %[10]q, key = %[11]q, cafile = %[12]q }
s2s_static_map = { [%[13]q] = { ip = %[14]q, port = %[15]s } }
VirtualHost %[16]q
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "plugins"), logPath,
		ip, c2sPort, s2sPort, filepath.Join(dir, "admin.sock"), secure,
		o.cert.certPath, o.cert.keyPath, o.caFile, o.peer, peerHost, peerPort, o.domain)
	p := &prosodyServer{
		domain:  o.domain,
		c2sAddr: net.JoinHostPort(ip, strconv.Itoa(c2sPort)),
		s2sAddr: net.JoinHostPort(ip, strconv.Itoa(s2sPort)),
		dir:     dir,
		cfgPath: filepath.Join(dir, "prosody.cfg.lua"),
	}
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	dumpOnFailure(t, logPath)

	cmd := exec.Command(bin, "--config", p.cfgPath, "-F")
	cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	dumpOnFailure(t, out.Name())
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
	alive := func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("prosody exited: %v", err)
		default:
			return nil
		}
	}
	waitListening(t, p.c2sAddr, 30*time.Second, alive)
	waitListening(t, p.s2sAddr, 30*time.Second, alive)
	_ = ctl
	return p
}

// register creates a user with prosodyctl, against this server's config.
func (p *prosodyServer) register(t *testing.T, user, pass string) {
	t.Helper()
	ctl := requireBinary(t, "prosodyctl", "/usr/bin/prosodyctl")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctl, "--config", p.cfgPath, "register", user, p.domain, pass)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("prosodyctl register: %v\n%s", err, out)
	}
}

// TestInteropProsody federates an Aviary s2s Service (domain aviary.test,
// on 127.0.0.1) with a real Prosody (prosody.test, on 127.0.0.2), both
// ways, with certificates from a test CA (SASL EXTERNAL) and with
// self-signed certificates (dialback).
func TestInteropProsody(t *testing.T) {
	requireBinary(t, "prosody", "/usr/bin/prosody")
	for _, tc := range []struct {
		name       string
		selfSigned bool
		wantMethod string
	}{
		{"sasl external", false, "sasl-external"},
		{"dialback", true, "dialback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			var aviaryCert, prosodyCert *issued
			if tc.selfSigned {
				aviaryCert, prosodyCert = domainCert(t, nil, "aviary.test"), domainCert(t, nil, "prosody.test")
			} else {
				aviaryCert, prosodyCert = domainCert(t, ca, "aviary.test"), domainCert(t, ca, "prosody.test")
			}
			av := startNode(t, nodeOpts{domain: "aviary.test", cert: aviaryCert, caFile: ca.pemPath, secret: "interop"})
			pr := startProsody(t, prosodyOpts{domain: "prosody.test", cert: prosodyCert, caFile: ca.pemPath,
				secureAuth: !tc.selfSigned, peer: "aviary.test", peerAddr: av.addr()})
			av.cfg.S2S.Hosts["prosody.test"] = pr.s2sAddr
			pr.register(t, "pat", "secret-pw")
			pat := loginC2S(t, pr.c2sAddr, "prosody.test", "pat", "secret-pw", "laptop")

			t.Run("aviary to prosody message", func(t *testing.T) {
				av.svc.Send(t.Context(), msg("alice@aviary.test/home", "pat@prosody.test", "hi pat"))
				el := pat.expect(isBody("hi pat"), "message from aviary")
				if el.From() != "alice@aviary.test/home" {
					t.Fatalf("from %q", el.From())
				}
			})
			t.Run("prosody to aviary message", func(t *testing.T) {
				pat.send(`<message to='alice@aviary.test' type='chat' id='p1'><body>hi alice</body></message>`)
				el := av.expect(isBody("hi alice"), "message from prosody")
				if el.From() != pat.jid || el.To() != "alice@aviary.test" {
					t.Fatalf("addresses: %s (client %s)", el, pat.jid)
				}
			})
			t.Run("iq from prosody user answered by aviary", func(t *testing.T) {
				pat.send(`<iq to='aviary.test' type='get' id='ping-a'><ping xmlns='urn:xmpp:ping'/></iq>`)
				el := pat.expect(func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "ping-a" }, "ping result")
				if el.Type() != "result" || el.From() != "aviary.test" {
					t.Fatalf("got %s", el)
				}
			})
			t.Run("iq from aviary answered by prosody", func(t *testing.T) {
				iq := wire.New("iq", "from", "alice@aviary.test/home", "to", "prosody.test", "type", "get", "id", "ping-p").
					Append(wire.NewNS("ping", wire.NSPing))
				av.svc.Send(t.Context(), iq)
				el := av.expect(func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == "ping-p" }, "prosody ping result")
				if el.Type() != "result" || el.To() != "alice@aviary.test/home" {
					t.Fatalf("got %s", el)
				}
			})
			t.Run("presence subscription to prosody user", func(t *testing.T) {
				av.svc.Send(t.Context(), wire.New("presence", "from", "alice@aviary.test", "to", "pat@prosody.test", "type", "subscribe", "id", "sub1"))
				el := pat.expect(func(el *wire.Element) bool { return el.Name == "presence" && el.Type() == "subscribe" }, "subscription request")
				if el.From() != "alice@aviary.test" {
					t.Fatalf("got %s", el)
				}
				pat.send(`<presence to='alice@aviary.test' type='subscribed'/>`)
				av.expect(func(el *wire.Element) bool { return el.Name == "presence" && el.Type() == "subscribed" }, "subscribed")
			})
			t.Run("error for a user that does not exist", func(t *testing.T) {
				iq := wire.New("iq", "from", "alice@aviary.test/home", "to", "nobody@prosody.test", "type", "get", "id", "nouser").
					Append(wire.NewNS("query", "jabber:iq:version"))
				av.svc.Send(t.Context(), iq)
				el := av.expect(func(el *wire.Element) bool { return el.ID() == "nouser" }, "error for missing user")
				if !el.IsError() {
					t.Fatalf("got %s", el)
				}
			})
			t.Run("authentication method", func(t *testing.T) {
				c := av.outConnFor("aviary.test", "prosody.test")
				if c == nil {
					t.Fatal("no outgoing stream")
				}
				c.mu.Lock()
				m := c.method
				c.mu.Unlock()
				if m != tc.wantMethod {
					t.Fatalf("authenticated by %q, want %q", m, tc.wantMethod)
				}
			})
		})
	}
}

// TestInteropProsodyRequireValidCerts: with require_valid_certs, Aviary
// refuses a Prosody whose certificate it cannot verify, both ways, and
// the senders get errors.
func TestInteropProsodyRequireValidCerts(t *testing.T) {
	requireBinary(t, "prosody", "/usr/bin/prosody")
	ca := newTestCA(t)
	av := startNode(t, nodeOpts{domain: "aviary.test", cert: domainCert(t, ca, "aviary.test"), caFile: ca.pemPath,
		require: true, connectTimeout: 5 * time.Second})
	pr := startProsody(t, prosodyOpts{domain: "prosody.test", cert: domainCert(t, nil, "prosody.test"), caFile: ca.pemPath,
		peer: "aviary.test", peerAddr: av.addr()})
	av.cfg.S2S.Hosts["prosody.test"] = pr.s2sAddr
	pr.register(t, "pat", "secret-pw")
	pat := loginC2S(t, pr.c2sAddr, "prosody.test", "pat", "secret-pw", "laptop")

	t.Run("aviary refuses to send", func(t *testing.T) {
		av.svc.Send(t.Context(), msg("alice@aviary.test", "pat@prosody.test", "not sent"))
		el := av.expect(isErrorCond("remote-server-not-found"), "bounce")
		if el.ID() != "m-not sent" {
			t.Fatalf("got %s", el)
		}
	})
	t.Run("aviary refuses to receive", func(t *testing.T) {
		pat.send(`<message to='alice@aviary.test' type='chat' id='refused'><body>not received</body></message>`)
		el := pat.expect(func(el *wire.Element) bool { return el.ID() == "refused" }, "error from prosody")
		if !el.IsError() {
			t.Fatalf("got %s", el)
		}
		av.expectNone()
	})
}
