// Package clustertest runs Aviary nodes as real `aviary serve` processes
// for process-level tests of clustering and shared storage: a binary built
// once with `go build`, one process per node with its own ports, data
// directory and node name, all sharing one PostgreSQL database, one
// Hazelcast cluster and one cluster secret.
//
// Child processes cannot be told to bind port 0 and report back, so ports
// are picked by listening on 127.0.0.1:0 and closing (FreePorts) and then
// passed on the command line. Processes run in their own process group and
// die with the test binary (Pdeathsig); Kill SIGKILLs the whole group.
//
// The tests in this package (clustertest_test.go and friends) use it; the
// script .ci/cluster/run-3-nodes.sh does the same by hand.
package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
)

// Build compiles the aviary binary (cmd/aviary) into dir
// and returns its path. It runs `go build` from the module root, found by
// walking up from the current directory to go.mod.
func Build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "aviary")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/aviary")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("clustertest: go build: %w\n%s", err, b)
	}
	return out, nil
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("clustertest: go.mod not found above the working directory")
		}
		d = up
	}
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1, never one
// given before in this process or to another test process (a stopped
// node's ports stay reserved for its restart; testutil.FreePorts says
// how).
func FreePorts(n int) ([]int, error) { return testutil.FreePorts(n) }

// NodeConfig describes one node process.
type NodeConfig struct {
	Bin      string // the aviary binary
	Name     string // --node-name
	Domain   string // --domain; default "localhost"
	Database string // --database (PostgreSQL URL)
	// Hazelcast member addresses and cluster name; empty runs the node
	// alone on cluster/local.
	Hazelcast     []string
	HazelcastName string
	Secret        string // AVIARY_CLUSTER_SECRET
	Dir           string // data dir, config file and log live here
	// ExtraYAML is appended to the generated config file (timing knobs,
	// admins...).
	ExtraYAML string
	// Env is added to the environment.
	Env []string
}

// Node is one `aviary serve` process. Its ports are fixed at creation
// and kept across Kill/Start, like a real machine's.
type Node struct {
	Cfg                      NodeConfig
	C2SPort, LinkPort, Admin int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	runs   int
}

// NewNode picks the node's ports; Start runs it.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	ps, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "data"), 0o700); err != nil {
		return nil, err
	}
	return &Node{Cfg: cfg, C2SPort: ps[0], LinkPort: ps[1], Admin: ps[2]}, nil
}

// C2SAddr is the STARTTLS client listener.
func (n *Node) C2SAddr() string { return "127.0.0.1:" + strconv.Itoa(n.C2SPort) }

// LinkAddr is the node-to-node link listener.
func (n *Node) LinkAddr() string { return "127.0.0.1:" + strconv.Itoa(n.LinkPort) }

// AdminURL is the admin API base URL.
func (n *Node) AdminURL() string { return "http://127.0.0.1:" + strconv.Itoa(n.Admin) }

// LogPath is the file the process's stderr goes to (appended across runs).
func (n *Node) LogPath() string { return filepath.Join(n.Cfg.Dir, "node.log") }

// Args returns the command line of `aviary serve` for this node.
func (n *Node) Args() []string {
	a := []string{"serve",
		"--config", filepath.Join(n.Cfg.Dir, "aviary.yaml"),
		"--domain", n.Cfg.Domain,
		"--data-dir", filepath.Join(n.Cfg.Dir, "data"),
		"--node-name", n.Cfg.Name,
		"--c2s-listen", n.C2SAddr(),
		"--c2s-tls-listen", "off",
		"--cluster-listen", n.LinkAddr(),
		"--admin-listen", "127.0.0.1:" + strconv.Itoa(n.Admin),
		"--log-level", "debug",
	}
	if n.Cfg.Database != "" {
		a = append(a, "--database", n.Cfg.Database)
	}
	if len(n.Cfg.Hazelcast) > 0 {
		a = append(a, "--hazelcast", strings.Join(n.Cfg.Hazelcast, ","))
		if n.Cfg.HazelcastName != "" {
			a = append(a, "--hazelcast-cluster-name", n.Cfg.HazelcastName)
		}
	}
	return a
}

// Start launches the process and waits until its admin /healthz answers
// and its client listener accepts, or the process exits, or ctx ends.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.cmd != nil {
		n.mu.Unlock()
		return fmt.Errorf("clustertest: node %s already running", n.Cfg.Name)
	}
	if err := os.WriteFile(filepath.Join(n.Cfg.Dir, "aviary.yaml"), []byte(n.Cfg.ExtraYAML), 0o600); err != nil {
		n.mu.Unlock()
		return err
	}
	logf, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.mu.Unlock()
		return err
	}
	n.runs++
	fmt.Fprintf(logf, "==== run %d: %s %s\n", n.runs, n.Cfg.Bin, strings.Join(n.Args(), " "))
	cmd := exec.Command(n.Cfg.Bin, n.Args()...)
	cmd.Dir = n.Cfg.Dir
	cmd.Env = append(os.Environ(), n.Cfg.Env...)
	if n.Cfg.Secret != "" {
		cmd.Env = append(cmd.Env, "AVIARY_CLUSTER_SECRET="+n.Cfg.Secret)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited := make(chan struct{})
	err = testutil.StartChild(cmd, syscall.SIGKILL, func(error) {
		logf.Close()
		close(exited)
	})
	if err != nil {
		logf.Close()
		n.mu.Unlock()
		return fmt.Errorf("clustertest: start %s: %w", n.Cfg.Name, err)
	}
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	return n.waitReady(ctx, exited)
}

func (n *Node) waitReady(ctx context.Context, exited chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			return fmt.Errorf("clustertest: node %s exited during start:\n%s", n.Cfg.Name, n.LogTail(40))
		case <-ctx.Done():
			// A Go process dumps its goroutines on SIGQUIT: show where it hangs.
			n.signal(syscall.SIGQUIT)
			return fmt.Errorf("clustertest: node %s not ready: %w\n%s", n.Cfg.Name, ctx.Err(), n.LogTail(3000))
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get(n.AdminURL() + "/healthz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		c, err := net.DialTimeout("tcp", n.C2SAddr(), time.Second)
		if err != nil {
			continue
		}
		c.Close()
		return nil
	}
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Kill SIGKILLs the node's process group (no goodbye) and waits for it.
func (n *Node) Kill() { n.signal(syscall.SIGKILL) }

// Freeze SIGSTOPs the node's process group: it reads, writes and answers
// nothing until killed (what it has not done by then it never does).
func (n *Node) Freeze() error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return errors.New("clustertest: node not running")
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGSTOP)
}

// Stop sends SIGTERM (graceful shutdown) and waits, killing after 30s.
func (n *Node) Stop() { n.signal(syscall.SIGTERM) }

// Pause freezes the node's process group (SIGSTOP): its sockets stay open
// and the kernel keeps accepting into their buffers, but nothing is read,
// handled or answered, as on a machine that hangs. Resume (SIGCONT)
// lets it run on; Kill works on a paused node too.
func (n *Node) Pause() { n.notify(syscall.SIGSTOP) }

// Resume continues a paused node.
func (n *Node) Resume() { n.notify(syscall.SIGCONT) }

// notify sends sig to the running process group without waiting.
func (n *Node) notify(sig syscall.Signal) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}

func (n *Node) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd, n.exited = nil, nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// LogTail returns the last lines of the node's log.
func (n *Node) LogTail(lines int) string {
	b, _ := os.ReadFile(n.LogPath())
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// Admin is a client of one node's admin JSON API.
type Admin struct {
	Base  string
	Token string
	HTTP  *http.Client
}

// AdminLogin signs in with an admin's XMPP password, creates an API token
// (valid on every node: tokens live in the shared database) and returns a
// client using it.
func AdminLogin(ctx context.Context, base, user, password string) (*Admin, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	var login struct{ CSRF string }
	if err := doJSON(ctx, hc, "POST", base+"/api/login", nil, map[string]string{"username": user, "password": password}, &login); err != nil {
		return nil, err
	}
	var tok struct{ Token string }
	h := http.Header{"X-CSRF-Token": {login.CSRF}}
	if err := doJSON(ctx, hc, "POST", base+"/api/tokens", h, map[string]string{"name": "clustertest"}, &tok); err != nil {
		return nil, err
	}
	return &Admin{Base: base, Token: tok.Token, HTTP: &http.Client{Timeout: 10 * time.Second}}, nil
}

// On returns a client for another node's API with the same token.
func (a *Admin) On(base string) *Admin {
	return &Admin{Base: base, Token: a.Token, HTTP: a.HTTP}
}

// Do calls the API: method, path (e.g. "/api/overview"), a JSON body or
// nil, and decodes the reply into out (may be nil).
func (a *Admin) Do(ctx context.Context, method, path string, body, out any) error {
	return doJSON(ctx, a.HTTP, method, a.Base+path, http.Header{"Authorization": {"Bearer " + a.Token}}, body, out)
}

// Overview is the part of GET /api/overview the tests read.
type Overview struct {
	Clustered      bool `json:"clustered"`
	Detached       bool `json:"detached"`
	ClusterEnabled bool `json:"cluster_enabled"`
	Nodes          []struct {
		Name       string  `json:"name"`
		Healthy    bool    `json:"healthy"`
		StanzasIn  float64 `json:"stanzas_in_per_sec"`
		StanzasOut float64 `json:"stanzas_out_per_sec"`
	} `json:"nodes"`
	Sessions   int     `json:"sessions"`
	StanzasIn  float64 `json:"stanzas_in_per_sec"`
	StanzasOut float64 `json:"stanzas_out_per_sec"`
}

// Overview fetches GET /api/overview.
func (a *Admin) Overview(ctx context.Context) (Overview, error) {
	var o Overview
	err := a.Do(ctx, "GET", "/api/overview", nil, &o)
	return o, err
}

// Metric reads one sample from the node's /metrics: the line of the
// metric name whose labels include every given label pair (such as
// `kind="kept"`), summed over the lines that match.
func (a *Admin) Metric(ctx context.Context, name string, labels ...string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", a.Base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var sum float64
	found := false
lines:
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %v", name, line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no %s%v in /metrics", name, labels)
	}
	return sum, nil
}

// Session is one entry of GET /api/sessions.
type Session struct {
	JID       string `json:"jid"`
	Node      string `json:"node"`
	Priority  int    `json:"priority"`
	Available bool   `json:"available"`
}

// Sessions fetches GET /api/sessions (the cluster-wide routing table as
// this node sees it).
func (a *Admin) Sessions(ctx context.Context) ([]Session, error) {
	var ss []Session
	err := a.Do(ctx, "GET", "/api/sessions", nil, &ss)
	return ss, err
}

func doJSON(ctx context.Context, hc *http.Client, method, url string, h http.Header, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("clustertest: %s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("clustertest: %s %s: decoding %q: %w", method, url, b, err)
		}
	}
	return nil
}
