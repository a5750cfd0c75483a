package interop

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// TestBiboumiIRCGateway: biboumi (the IRC gateway, Debian) connects as
// the component irc.a.test to node A1 of a two-node cluster; a slixmpp
// user on node A2 joins #aviary on a local ngircd (Debian) through it and
// exchanges messages with a plain IRC client in the same channel.
func TestBiboumiIRCGateway(t *testing.T) {
	_, errBiboumi := exec.LookPath("biboumi")
	need(t, errBiboumi == nil, "biboumi")
	ngircd, errNgircd := exec.LookPath("ngircd")
	if errNgircd != nil {
		ngircd, errNgircd = "/usr/sbin/ngircd", nil
		if _, err := os.Stat(ngircd); err != nil {
			errNgircd = err
		}
	}
	need(t, errNgircd == nil, "ngircd")
	err := exec.Command("/usr/bin/python3", "-c", "import slixmpp").Run()
	need(t, err == nil, "python3-slixmpp")

	ircAddr := startNgircd(t, ngircd)
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-biboumi")
	compAddr := servertest.FreeAddr(t)
	const compSecret = "biboumi secret"
	tweak := func(cfg *conf.Config) {
		cfg.Components.Listen = compAddr
		cfg.Components.Secrets = map[string]string{"irc.a.test": compSecret}
	}
	a1, c1 := startFederatedClusterNode(t, pg, member, "a1", "bib.", "off", nil, tweak)
	tweak = func(cfg *conf.Config) {
		cfg.Components.Listen = "127.0.0.1:0"
		cfg.Components.Secrets = map[string]string{"irc.a.test": compSecret}
	}
	a2, c2 := startFederatedClusterNode(t, pg, member, "a2", "bib.", "off", nil, tweak)
	servertest.WaitClustered(t, c1, c2)
	servertest.CreateUser(t, a1, "alice", "pw")

	startBiboumi(t, compAddr, "irc.a.test", compSecret)
	// Wait until biboumi is connected and A2 knows it: a disco#info query
	// to it from A2 is answered by biboumi rather than bounced.
	probe := servertest.DialAddr(t, a2.Addr(server.ListenerC2S).String(), "a.test", false)
	probe.Login("alice", "pw", "probe")
	servertest.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		id := probe.NextID()
		probe.Send(`<iq type='get' id='%s' to='irc.a.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, id)
		res := probe.Await("disco#info answer", func(el *wire.Element) bool { return el.ID() == id })
		if res.Type() != "result" {
			return fmt.Errorf("irc.a.test not there yet: %s", res)
		}
		return nil
	})
	probe.Close()

	irc := dialIRC(t, ircAddr, "ircbob")
	irc.send("JOIN #aviary")
	irc.await("JOIN #aviary", func(l string) bool { return strings.Contains(l, " 366 ") }) // end of NAMES

	host, port := c2sAddr(t, a2)
	_, ircPort, _ := net.SplitHostPort(ircAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/slixmpp_biboumi.py", host, strconv.Itoa(port),
		"alice@a.test/laptop", "pw", "irc.a.test", "127.0.0.1", ircPort, "#aviary", "alice")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The IRC side: alice joins, says hello from XMPP; bob answers.
	if _, err := irc.next("alice's message in #aviary", func(l string) bool {
		return strings.HasPrefix(l, ":alice!") && strings.Contains(l, "PRIVMSG #aviary :hello from xmpp")
	}); err != nil {
		cancel()
		_ = cmd.Wait()
		t.Fatalf("irc: %v\nslixmpp:\n%s", err, out.String())
	}
	irc.send("PRIVMSG #aviary :hello from irc")
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "OK from #aviary%127.0.0.1@irc.a.test/ircbob") {
		t.Fatalf("slixmpp through biboumi: %v\n%s", err, out.String())
	}
	t.Logf("%s", strings.TrimSpace(out.String()))
}

// startNgircd runs an IRC server on a free loopback port and returns its
// address once it accepts connections.
func startNgircd(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	addr := servertest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf(`[Global]
Name = irc.test
Info = Aviary test IRC server
AdminInfo1 = test
AdminInfo2 = test
AdminEMail = test@example.org
Listen = 127.0.0.1
Ports = %s
MotdPhrase = "test"
[Options]
PAM = no
Ident = no
DNS = no
`, port)
	path := filepath.Join(dir, "ngircd.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, "ngircd", dir, bin, "-n", "-f", path)
	servertest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr
}

// startBiboumi runs biboumi as the component domain on addr.
func startBiboumi(t *testing.T, addr, domain, secret string) {
	t.Helper()
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf("hostname=%s\npassword=%s\nxmpp_server_ip=%s\nport=%s\ndb_name=%s\nidentd_port=0\nlog_level=1\npolicy_directory=%s\n",
		domain, secret, host, port, filepath.Join(dir, "biboumi.sqlite"), dir)
	path := filepath.Join(dir, "biboumi.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, "biboumi", dir, "biboumi", path)
}

// startDaemon runs a peer in the foreground until the test ends and
// shows its output if the test failed.
func startDaemon(t *testing.T, name, dir, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s output:\n%s", name, b)
		}
	})
}

// ircClient is a tiny raw-socket IRC client.
type ircClient struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func dialIRC(t *testing.T, addr, nick string) *ircClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &ircClient{t: t, conn: conn, rd: bufio.NewReader(conn)}
	c.send("NICK " + nick)
	c.send("USER " + nick + " 0 * :Aviary test")
	c.await("welcome", func(l string) bool { return strings.Contains(l, " 001 ") })
	return c
}

func (c *ircClient) send(line string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("irc: %v", err)
	}
}

// await reads lines, answering PINGs, until match accepts one.
func (c *ircClient) await(what string, match func(string) bool) string {
	c.t.Helper()
	line, err := c.next(what, match)
	if err != nil {
		c.t.Fatalf("irc: %v", err)
	}
	return line
}

// next is await that returns its failure.
func (c *ircClient) next(what string, match func(string) bool) (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for {
		line, err := c.rd.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("waiting for %s: %w", what, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "PING ") {
			c.send("PONG " + strings.TrimPrefix(line, "PING "))
			continue
		}
		if match(line) {
			return line, nil
		}
	}
}
