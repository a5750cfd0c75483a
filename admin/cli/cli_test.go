package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml string
		code       int
		want       string
	}{
		{"good", "domain: chat.example\nc2s:\n  listen: \"127.0.0.1:5222\"\n", 0, "ok"},
		{"unknown key", "domain: chat.example\nc2s:\n  listen: \":5222\"\n  bogus_key: 3\n", 1, "bogus_key"},
		{"bad value", "domain: chat.example\nc2s:\n  resource_conflict: maybe\n", 1, "c2s.resource_conflict"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			code := runConfig([]string{"check", path}, nil, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errOut.String())
			}
			if got := out.String() + errOut.String(); !strings.Contains(got, tc.want) {
				t.Errorf("output %q does not name %q", got, tc.want)
			}
		})
	}
}

func TestConfigCheckNamesLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("domain: chat.example\nc2s:\n  resource_conflict: maybe\n"), 0o600)
	var out, errOut bytes.Buffer
	runConfig([]string{"check", path}, nil, &out, &errOut)
	if !strings.Contains(errOut.String(), path+":3:") {
		t.Errorf("no file:line in %q", errOut.String())
	}
}

func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		args = append(args, "--data-dir", dir, "--domain", "chat.example") // flags after NAME work too
		code := runUser(ctx, args, nil, strings.NewReader(stdin), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := run("", "add", "Alice", "--password", "pw1"); code != 0 || !strings.Contains(out, "alice@chat.example") {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	if code, _, _ := run("pw2\n", "add", "bob"); code != 0 {
		t.Fatal("add with stdin password failed")
	}
	if code, _, errOut := run("", "add", "alice", "--password", "x"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("duplicate add: %d %q", code, errOut)
	}
	if code, out, _ := run("", "list"); code != 0 || out != "alice\nbob\n" {
		t.Errorf("list = %d %q", code, out)
	}
	if code, out, _ := run("", "list", "--contains", "li"); code != 0 || out != "alice\n" {
		t.Errorf("list --contains = %d %q", code, out)
	}
	if code, _, errOut := run("new\n", "passwd", "alice"); code != 0 {
		t.Fatalf("passwd: %s", errOut)
	}
	if code, _, errOut := run("new\n", "passwd", "carol"); code != 1 || !strings.Contains(errOut, "no user") {
		t.Errorf("passwd unknown: %d %q", code, errOut)
	}
	if code, _, _ := run("", "delete", "bob"); code != 0 {
		t.Fatal("delete failed")
	}
	if code, _, errOut := run("", "delete", "bob"); code != 1 || !strings.Contains(errOut, "no user") {
		t.Errorf("delete twice: %d %q", code, errOut)
	}
	if code, out, _ := run("", "list"); code != 0 || out != "alice\n" {
		t.Errorf("list after delete = %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "aviary.db")); err != nil {
		t.Errorf("embedded store not in data dir: %v", err)
	}
}

func TestServeFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("domain: file.example\nc2s:\n  listen: \"127.0.0.1:1111\"\n  tls_listen: \"127.0.0.1:2222\"\n"), 0o600)
	env := []string{"AVIARY_DOMAIN=env.example", "AVIARY_C2S_TLS_LISTEN=127.0.0.1:3333"}
	var errOut bytes.Buffer
	cfg, code := serveConfig([]string{"--config", path, "--domain", "flag.example", "--data-dir", dir,
		"--c2s-listen", "off", "--allow-registration", "--database", "postgres://u@127.0.0.1/x", "--log-level", "debug"}, env, &errOut)
	if cfg == nil {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	checks := []struct{ name, got, want string }{
		{"domain (flag over env over file)", cfg.Domain, "flag.example"},
		{"c2s.listen off", cfg.C2S.Listen, "off"},
		{"c2s.tls_listen from env", cfg.C2S.TLSListen, "127.0.0.1:3333"},
		{"data_dir", cfg.DataDir, dir},
		{"database.url", cfg.Database.URL, "postgres://u@127.0.0.1/x"},
		{"log_level", cfg.LogLevel, "debug"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !cfg.C2S.AllowRegistration {
		t.Error("--allow-registration not applied")
	}
	if _, code := serveConfig([]string{"--c2s-listen", "nonsense"}, nil, &errOut); code != 1 || !strings.Contains(errOut.String(), "c2s.listen") {
		t.Errorf("bad address: exit %d, %q", code, errOut.String())
	}
}

func TestConfigCheckNegativeDuration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("c2s:\n  ping_interval: -5s\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := runConfig([]string{"check", path}, nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "c2s.ping_interval") {
		t.Errorf("exit %d, %q", code, errOut.String())
	}
}
