package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// apiClient calls a node's admin JSON API (admin/api/openapi.yaml) with an
// API token. Every operator command that acts on a running cluster goes
// through it, so the console, the API and the CLI can never disagree.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

// apiFlags are the flags of every API-backed command.
type apiFlags struct {
	admin, token string
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.admin, "admin", "", "admin API base `URL` of any node, e.g. http://127.0.0.1:9090 (env AVIARY_ADMIN_URL)")
	fs.StringVar(&f.token, "token", "", "API `token` from `aviary admin login` (env AVIARY_ADMIN_TOKEN)")
}

func (f *apiFlags) client(environ []string) (*apiClient, error) {
	env := envMap(environ)
	base, tok := f.admin, f.token
	if base == "" {
		base = env["AVIARY_ADMIN_URL"]
	}
	if tok == "" {
		tok = env["AVIARY_ADMIN_TOKEN"]
	}
	if base == "" {
		base = "http://127.0.0.1:9090"
	}
	if _, err := url.Parse(base); err != nil {
		return nil, fmt.Errorf("--admin: %v", err)
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: tok, hc: &http.Client{Timeout: 60 * time.Second}}, nil
}

func envMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// call sends a request; body may be nil, a []byte (sent as is) or a value
// (sent as JSON). out, when not nil, receives the JSON answer.
func (c *apiClient) call(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ct = bytes.NewReader(b), "application/wasm"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd, ct = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// login signs in with a password and issues an API token.
func (c *apiClient) login(ctx context.Context, user, password, name string) (string, error) {
	// A cookie session, used only to create the token.
	jar := &cookieJar{}
	c.hc.Jar = jar
	defer func() { c.hc.Jar = nil }()
	var who struct {
		CSRF string `json:"csrf"`
	}
	if err := c.call(ctx, "POST", "/api/login", map[string]string{"username": user, "password": password}, &who); err != nil {
		return "", err
	}
	raw, _ := json.Marshal(map[string]string{"name": name})
	req, _ := http.NewRequestWithContext(ctx, "POST", c.base+"/api/tokens", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", who.CSRF)
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		return "", fmt.Errorf("creating a token: %s", resp.Status)
	}
	return tok.Token, nil
}

// cookieJar is the smallest jar: one host, every cookie sent back.
type cookieJar struct{ cookies []*http.Cookie }

func (j *cookieJar) SetCookies(u *url.URL, cs []*http.Cookie) { j.cookies = append(j.cookies, cs...) }
func (j *cookieJar) Cookies(u *url.URL) []*http.Cookie        { return j.cookies }

func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

func init() {
	Register(Command{Name: "admin", Summary: "sign in to the admin API and print an API token", Run: func(args []string) int {
		return runAdmin(context.Background(), args, os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	}})
}

func runAdmin(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "login" {
		fmt.Fprintln(stderr, "usage: aviary admin login [--admin URL] [--name NAME] USER   (password on stdin; prints a token for AVIARY_ADMIN_TOKEN)")
		return 2
	}
	fs := flag.NewFlagSet("aviary admin login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	name := fs.String("name", "cli", "what the token is for")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "aviary admin login: want exactly one USER")
		return 2
	}
	c, err := af.client(environ)
	if err != nil {
		fmt.Fprintln(stderr, "aviary admin login:", err)
		return 2
	}
	pw, err := readPassword(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "aviary admin login: reading the password from stdin:", err)
		return 2
	}
	tok, err := c.login(ctx, fs.Arg(0), pw, *name)
	if err != nil {
		fmt.Fprintln(stderr, "aviary admin login:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// pathEscape escapes one path segment (a full JID has a slash).
func pathEscape(s string) string { return url.PathEscape(s) }
