// Package ejabberdtest runs a throwaway Debian ejabberd for interop
// tests: one virtual host, c2s and s2s listeners on a loopback address,
// in-band registration open, and outgoing s2s that never asks DNS.
//
// ejabberd has no static host map like Aviary's s2s.hosts. Its outgoing
// streams all go to one port (outgoing_s2s_port) and find a peer's
// address by name: SRV records through Erlang's resolver, then the
// system's getaddrinfo. The VM runs with an inetrc (ERL_INETRC) that
// names no DNS server, so SRV lookups fail at once; and when a peer has
// a name other than localhost (conference.localhost, say), ejabberd runs
// in a mount namespace of its own (unshare, as root: CI runs as root)
// where /etc/hosts lists the peers and /etc/resolv.conf names no server,
// so getaddrinfo finds them there and never asks a DNS server either.
package ejabberdtest

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

// Options of one ejabberd.
type Options struct {
	Domain string
	// IP is the loopback address its listeners bind (127.0.0.3 when
	// empty).
	IP string
	// CertFile and KeyFile are PEM files with the domain's certificate
	// (and those of its service hosts, when it has any) and its key.
	CertFile, KeyFile string
	// CAFile, when set, is the CA ejabberd trusts for peers'
	// certificates.
	CAFile string
	// OutgoingPort is the port every outgoing s2s stream connects to.
	OutgoingPort int
	// Peers maps each name its outgoing streams may reach to an IPv4
	// address.
	Peers map[string]string
	// Modules is YAML added under modules: (indented by two spaces),
	// for example a group chat service.
	Modules string
}

// Server is a running ejabberd.
type Server struct {
	Domain  string
	C2SAddr string
	S2SAddr string
	Dir     string // its config, spool and logs
}

// Binaries reports whether ejabberd and erl are installed, and the
// erl path.
func Binaries() (erl string, ok bool) {
	if _, err := exec.LookPath("ejabberdctl"); err != nil {
		if _, err := os.Stat("/usr/sbin/ejabberdctl"); err != nil {
			return "", false
		}
	}
	erl, err := exec.LookPath("erl")
	if err != nil {
		return "", false
	}
	return erl, true
}

// CanIsolateHosts reports whether Start can give ejabberd a hosts file
// of its own (peers named other than localhost): it needs unshare and
// root for the mount namespace.
func CanIsolateHosts() bool {
	_, err := exec.LookPath("unshare")
	return err == nil && os.Geteuid() == 0
}

// Start runs ejabberd until the test ends; it fails the test when
// ejabberd is not installed (callers skip first when they may).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	erl, ok := Binaries()
	if !ok {
		t.Fatal("ejabberdtest: ejabberd is not installed (.ci/setup.sh installs it)")
	}
	libs, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/ejabberd-*")
	if len(libs) == 0 {
		libs, _ = filepath.Glob("/usr/lib/*/ejabberd-*")
	}
	if len(libs) == 0 {
		t.Fatal("ejabberdtest: ejabberd's Erlang application directory not found")
	}
	ip := o.IP
	if ip == "" {
		ip = "127.0.0.3"
	}
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var bundle []byte
	for _, f := range []string{o.CertFile, o.KeyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	bundlePath := write("cert.pem", bundle)
	caLine := ""
	if o.CAFile != "" {
		caLine = fmt.Sprintf("ca_file: %q\n", o.CAFile)
	}
	c2sPort, s2sPort := freePort(t, ip), freePort(t, ip)
	cfgPath := write("ejabberd.yml", fmt.Appendf(nil, `
hosts:
  - %[1]q
loglevel: debug
log_rotate_count: 0
certfiles:
  - %[2]q
%[3]slisten:
  - port: %[4]d
    ip: %[5]q
    module: ejabberd_c2s
  - port: %[6]d
    ip: %[5]q
    module: ejabberd_s2s_in
s2s_use_starttls: required
outgoing_s2s_port: %[7]d
outgoing_s2s_families: [ipv4]
s2s_timeout: 10
auth_method: internal
auth_password_format: plain
access_rules:
  register:
    allow: all
  s2s:
    allow: all
  c2s:
    allow: all
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_register:
    access: register
    ip_access: all
  mod_s2s_dialback: {}
  mod_version: {}
%[8]s`, o.Domain, bundlePath, caLine, c2sPort, ip, s2sPort, o.OutgoingPort, o.Modules))
	inetrc := write("inetrc", []byte(inetrcFor(o.Peers)))
	logPath := filepath.Join(dir, "ejabberd.log")
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{logPath, out.Name()} {
				b, _ := os.ReadFile(p)
				t.Logf("---- %s (last 6 KiB):\n%s", p, tail(b, 6<<10))
			}
		}
	})
	args := []string{erl, "-noinput", "-mnesia", "dir", strconv.Quote(spool), "-s", "ejabberd"}
	if needsHostsFile(o.Peers) {
		if !CanIsolateHosts() {
			t.Fatal("ejabberdtest: peers other than localhost need unshare (util-linux), run as root, to give ejabberd a hosts file of its own")
		}
		unshare, _ := exec.LookPath("unshare")
		hosts := write("hosts", []byte(hostsFor(o.Peers)))
		resolv := write("resolv.conf", nil)
		// unshare execs the shell, which execs erl: one process, so the
		// parent-death signal holds; mounts stay private to it.
		args = append([]string{unshare, "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"`,
			hosts, resolv}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"EJABBERD_CONFIG_PATH="+cfgPath,
		"EJABBERD_LOG_PATH="+logPath,
		"ERL_LIBS="+filepath.Dir(libs[0]),
		"ERL_CRASH_DUMP="+filepath.Join(dir, "erl_crash.dump"),
		"ERL_INETRC="+inetrc,
	)
	cmd.Stdout, cmd.Stderr = out, out
	exited := make(chan error, 1)
	if err := testutil.StartChild(cmd, syscall.SIGKILL, func(err error) { exited <- err }); err != nil {
		t.Fatalf("ejabberdtest: starting ejabberd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})
	s := &Server{
		Domain:  o.Domain,
		C2SAddr: net.JoinHostPort(ip, strconv.Itoa(c2sPort)),
		S2SAddr: net.JoinHostPort(ip, strconv.Itoa(s2sPort)),
		Dir:     dir,
	}
	for _, addr := range []string{s.C2SAddr, s.S2SAddr} {
		testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("ejabberdtest: ejabberd exited: %v", err)
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
	}
	return s
}

// inetrcFor is an Erlang inetrc that resolves exactly peers for the VM's
// own lookups (host entries, looked up there only) and gives its DNS
// client no server: neither resolv.conf nor a hosts file is read.
func inetrcFor(peers map[string]string) string {
	var b strings.Builder
	b.WriteString("{resolv_conf, \"\"}.\n{hosts_file, \"\"}.\n")
	for _, n := range slices.Sorted(maps.Keys(peers)) {
		ip := net.ParseIP(peers[n]).To4()
		if ip == nil {
			continue
		}
		fmt.Fprintf(&b, "{host, {%d,%d,%d,%d}, [%q]}.\n", ip[0], ip[1], ip[2], ip[3], n)
	}
	b.WriteString("{lookup, [file]}.\n")
	return b.String()
}

// needsHostsFile reports whether a peer has a name the machine's
// /etc/hosts may lack.
func needsHostsFile(peers map[string]string) bool {
	for n := range peers {
		if n != "localhost" {
			return true
		}
	}
	return false
}

// hostsFor is an /etc/hosts naming localhost and the peers.
func hostsFor(peers map[string]string) string {
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	for _, n := range slices.Sorted(maps.Keys(peers)) {
		if n != "localhost" {
			fmt.Fprintf(&b, "%s %s\n", peers[n], n)
		}
	}
	return b.String()
}

// freePort is a port ejabberd binds on host later; testutil.FreePortsOn
// keeps other processes off it meanwhile.
func freePort(t testing.TB, host string) int {
	t.Helper()
	ps, err := testutil.FreePortsOn(host, 1)
	if err != nil {
		t.Fatal(err)
	}
	return ps[0]
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
