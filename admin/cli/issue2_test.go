package cli

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/server/tlsutil"
	"github.com/aviary-im/aviary/wire"
)

// startNode builds and starts a node the way `aviary serve` does, and
// returns a stop function (also run at cleanup; stopping twice is a no-op).
func startNode(t *testing.T, cfg *conf.Config) (*server.Node, func()) {
	t.Helper()
	n, err := server.New(cfg, server.WithLogger(servertest.TestLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
	}
	t.Cleanup(stop)
	return n, stop
}

func iqResult(t *testing.T, c *servertest.Client, xml string) *wire.Element {
	t.Helper()
	id := c.NextID()
	c.Send(strings.Replace(xml, "<iq ", "<iq id='"+id+"' ", 1))
	el := c.Await("iq "+id, func(el *wire.Element) bool { return el.Name == "iq" && el.ID() == id })
	if el.Type() != "result" {
		t.Fatalf("%s: got %s", xml, el)
	}
	return el
}

func cli(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--data-dir", dir, "--domain", "localhost")
	if code := runUser(context.Background(), args, nil, strings.NewReader(stdin), &out, &errOut); code != 0 {
		t.Fatalf("aviary user %v: exit %d: %s", args, code, errOut.String())
	}
	return out.String()
}

// TestIssue2RestartKeepsData: accounts made with `aviary user add|passwd`
// on a data directory are what a node on that directory authenticates
// against; roster, vCard, private XML and offline messages written through
// one node are there for the next node started on the same directory, and
// the generated certificate is reused.
func TestIssue2RestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	cli(t, dir, "", "add", "alice", "--password", "first-pass-4711")
	cli(t, dir, "correct-horse-4711\n", "passwd", "alice")
	cli(t, dir, "", "add", "bob", "--password", "bobs-pass-4711")

	cfg := servertest.DefaultConfig(t)
	cfg.DataDir = dir
	n1, stop1 := startNode(t, cfg)

	old := servertest.DialTLS(t, n1)
	if err := old.AuthSCRAM("SCRAM-SHA-256", "alice", "first-pass-4711"); err == nil {
		t.Fatal("the password before `aviary user passwd` still works")
	}
	alice := servertest.DialTLS(t, n1)
	alice.Login("alice", "correct-horse-4711", "r")
	iqResult(t, alice, "<iq type='set'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bobby'/></query></iq>")
	iqResult(t, alice, "<iq type='set'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard></iq>")
	iqResult(t, alice, "<iq type='set'><query xmlns='jabber:iq:private'><notes xmlns='x:notes'>remember</notes></query></iq>")
	alice.Send("<message to='bob@localhost' type='chat' id='m1'><body>while you were out</body></message>")
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		msgs, err := n1.Store().CountOffline(context.Background(), "bob@localhost")
		if err != nil || msgs != 1 {
			return fmt.Errorf("bob's offline count %d, %v", msgs, err)
		}
		return nil
	})
	cert1, _ := os.ReadFile(filepath.Join(dir, tlsutil.GeneratedCert))
	stop1()

	checkStoredCredentials(t, filepath.Join(dir, "aviary.db"), "alice", "correct-horse-4711")

	n2, _ := startNode(t, cfg)
	if cert2, _ := os.ReadFile(filepath.Join(dir, tlsutil.GeneratedCert)); len(cert1) == 0 || !bytes.Equal(cert1, cert2) {
		t.Error("self-signed certificate not reused after restart")
	}
	alice = servertest.DialTLS(t, n2)
	alice.Login("alice", "correct-horse-4711", "r")
	roster := iqResult(t, alice, "<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
	if item := roster.Child("query", wire.NSRoster).Child("item", ""); item == nil || item.Attr("jid") != "bob@localhost" || item.Attr("name") != "Bobby" {
		t.Errorf("roster after restart: %s", roster)
	}
	vc := iqResult(t, alice, "<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
	if got := vc.Child("vCard", "vcard-temp").ChildText("FN", ""); got != "Alice Liddell" {
		t.Errorf("vCard after restart: %s", vc)
	}
	pr := iqResult(t, alice, "<iq type='get'><query xmlns='jabber:iq:private'><notes xmlns='x:notes'/></query></iq>")
	if got := pr.Child("query", "jabber:iq:private").Child("notes", "x:notes"); got == nil || got.Text != "remember" {
		t.Errorf("private XML after restart: %s", pr)
	}
	bob := servertest.DialTLS(t, n2)
	bob.Login("bob", "bobs-pass-4711", "r")
	bob.Send("<presence/>")
	m := bob.Await("offline message", func(el *wire.Element) bool {
		return el.Name == "message" && el.ChildText("body", "") == "while you were out"
	})
	if d := m.Child("delay", wire.NSDelay); d == nil || d.Attr("stamp") == "" || d.Attr("from") != "localhost" {
		t.Errorf("offline message without XEP-0203 delay: %s", m)
	}
}

// checkStoredCredentials opens the embedded database and checks that the
// users table holds only salt, iteration count, StoredKey and ServerKey per
// mechanism, that they are the RFC 5802 values for password, and that
// neither the password nor a salted password is stored anywhere.
func checkStoredCredentials(t *testing.T, path, user, password string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var cols []string
	rows, err := db.Query("SELECT name FROM pragma_table_info('users')")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		rows.Scan(&c)
		cols = append(cols, c)
	}
	rows.Close()
	sort.Strings(cols)
	// locked_at (migration 4) is when an administrator locked the
	// account, NULL otherwise: no credential.
	want := "created_at locked_at sha1_iter sha1_salt sha1_server sha1_stored sha256_iter sha256_salt sha256_server sha256_stored username"
	if got := strings.Join(cols, " "); got != want {
		t.Errorf("users columns = %s, want %s", got, want)
	}
	var salted [][]byte
	for _, m := range []struct {
		prefix string
		h      func() hash.Hash
	}{{"sha1", sha1.New}, {"sha256", sha256.New}} {
		var salt, stored, srv []byte
		var iter int
		err := db.QueryRow("SELECT "+m.prefix+"_salt, "+m.prefix+"_iter, "+m.prefix+"_stored, "+m.prefix+"_server FROM users WHERE username = ?", user).
			Scan(&salt, &iter, &stored, &srv)
		if err != nil {
			t.Fatal(err)
		}
		if len(salt) < 16 || iter < 4096 {
			t.Errorf("%s: salt %d bytes, %d iterations", m.prefix, len(salt), iter)
		}
		sp, err := pbkdf2.Key(m.h, password, salt, iter, m.h().Size())
		if err != nil {
			t.Fatal(err)
		}
		salted = append(salted, sp)
		mac := func(key []byte, s string) []byte { h := hmac.New(m.h, key); h.Write([]byte(s)); return h.Sum(nil) }
		ck := m.h()
		ck.Write(mac(sp, "Client Key"))
		if !bytes.Equal(stored, ck.Sum(nil)) || !bytes.Equal(srv, mac(sp, "Server Key")) {
			t.Errorf("%s: StoredKey/ServerKey are not the RFC 5802 values", m.prefix)
		}
	}
	// Nothing in any table holds the password or a salted password.
	tables, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		tables.Scan(&n)
		names = append(names, n)
	}
	tables.Close()
	for _, tbl := range names {
		rows, err := db.Query(`SELECT * FROM "` + tbl + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cs, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cs))
			ptrs := make([]any, len(cs))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			for i, v := range vals {
				var b []byte
				switch v := v.(type) {
				case []byte:
					b = v
				case string:
					b = []byte(v)
				}
				if bytes.Contains(b, []byte(password)) {
					t.Errorf("table %s column %s holds the password", tbl, cs[i])
				}
				for _, sp := range salted {
					if bytes.Contains(b, sp) {
						t.Errorf("table %s column %s holds a salted password", tbl, cs[i])
					}
				}
			}
		}
		rows.Close()
	}
}

// TestIssue2ListenersOff: `aviary serve` flags turn each client listener
// on or off, and the node then listens on exactly the ones that are on.
func TestIssue2ListenersOff(t *testing.T) {
	cases := []struct {
		name         string
		plain, tls   string
		wantPlain    bool
		wantTLS      bool
		registration bool
	}{
		{"starttls only", "127.0.0.1:0", "off", true, false, false},
		{"direct tls only", "off", "127.0.0.1:-1", false, true, true},
		{"both", "127.0.0.1:0", "127.0.0.1:0", true, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"--domain", "localhost", "--data-dir", dir, "--c2s-listen", tc.plain, "--c2s-tls-listen", tc.tls,
				"--admin-listen", "off", "--cluster-listen", "off"}
			if tc.registration {
				args = append(args, "--allow-registration")
			}
			var errOut bytes.Buffer
			cfg, code := serveConfig(args, nil, &errOut)
			if cfg == nil {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if cfg.C2S.AllowRegistration != tc.registration {
				t.Errorf("allow_registration = %v", cfg.C2S.AllowRegistration)
			}
			n, _ := startNode(t, cfg)
			if got := n.Addr(server.ListenerC2S) != nil; got != tc.wantPlain {
				t.Errorf("STARTTLS listener on = %v, want %v", got, tc.wantPlain)
			}
			if got := n.Addr(server.ListenerC2STLS) != nil; got != tc.wantTLS {
				t.Errorf("direct-TLS listener on = %v, want %v", got, tc.wantTLS)
			}
			servertest.CreateUser(t, n, "alice", "pw")
			if tc.wantPlain {
				c := servertest.Dial(t, n)
				c.StartTLS()
				if err := c.AuthPLAIN("alice", "pw"); err != nil {
					t.Error(err)
				}
			}
			if tc.wantTLS {
				servertest.DialTLS(t, n).Login("alice", "pw", "r")
			}
		})
	}
}

// TestServeSetFlag: `aviary serve --set key=value` reaches every key that
// has no flag of its own; the named flags win; a bad key is named.
func TestServeSetFlag(t *testing.T) {
	dir := t.TempDir()
	var errOut bytes.Buffer
	cfg, code := serveConfig([]string{"--data-dir", dir,
		"--set", "c2s.auth_timeout=7s", "--set", "c2s.max_stanza_bytes=4096", "--set", "balance.load_threshold=0.5",
		"--set", "s2s.hosts=a.example=10.0.0.7:5269,b.example=10.0.0.8:5269", "--set", "c2s.require_tls=false", "--set", "c2s.listen=127.0.0.1:1",
		"--c2s-listen", "127.0.0.1:2"}, []string{"AVIARY_C2S_AUTH_TIMEOUT=9s"}, &errOut)
	if cfg == nil {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if cfg.C2S.AuthTimeout != 7*time.Second || cfg.C2S.MaxStanzaBytes != 4096 || cfg.Balance.LoadThreshold != 0.5 ||
		cfg.S2S.Hosts["b.example"] != "10.0.0.8:5269" || *cfg.C2S.RequireTLS || cfg.C2S.Listen != "127.0.0.1:2" {
		t.Errorf("config = %+v", cfg.C2S)
	}
	for _, bad := range []struct{ arg, want string }{
		{"c2s.bogus=1", "c2s.bogus: unknown key"},
		{"c2s.auth_timeout=soon", "c2s.auth_timeout"},
		{"nokey", "key=value"},
	} {
		errOut.Reset()
		if cfg, code := serveConfig([]string{"--data-dir", dir, "--set", bad.arg}, nil, &errOut); cfg != nil || code == 0 || !strings.Contains(errOut.String(), bad.want) {
			t.Errorf("--set %s: exit %d, %q; want an error naming %q", bad.arg, code, errOut.String(), bad.want)
		}
	}
}
