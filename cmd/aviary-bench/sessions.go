package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// Config is everything a run needs; main fills it from flags.
type Config struct {
	Servers     []string // host:port, users spread round-robin
	Domain      string   // XMPP domain of every server
	Users       int      // number of accounts
	Prefix      string   // user names are Prefix + index
	Password    string   // one password for all
	Create      string   // "ibr", "none" or "cmd"
	CreateCmd   string   // with Create=cmd: shell command, {user} {password} {domain} replaced
	Concurrency int      // parallel logins
	Mech        string   // SASL mechanism: auto, PLAIN, SCRAM-SHA-1
	PostQuantum bool     // offer X25519MLKEM768 in TLS
	// TLSResume gives each user a TLS session cache, so its reconnections
	// resume the TLS session (as phones' TLS stacks do).
	TLSResume  bool
	tlsCaches  tlsCaches
	SASL2      bool          // use XEP-0388 SASL2 with XEP-0386 Bind 2 where offered
	Timeout    time.Duration // per connection step
	Workload   string        // login, ring, broadcast, muc, idle
	Room       string        // muc: the room's local part
	MUCService string        // muc: the service's domain ("": conference.Domain)
	Messages   int           // ring: per sender; broadcast: presence changes
	InFlight   int           // ring: per sender; broadcast: rounds in flight
	Drain      time.Duration // wait for stragglers after the last send
	// SubscribeTimeout bounds the broadcast set-up (some servers rewrite
	// the hub's whole roster per subscription, so it is slow).
	SubscribeTimeout time.Duration
	RSSPids          []int         // server processes whose VmRSS is read
	Settle           time.Duration // idle: wait before reading RSS after login
	Hold             time.Duration // idle: keep sessions open this long
	// Churn is, for idle with Hold, the percent of the sessions closed and
	// logged in again each minute (background reconnections).
	Churn float64
	// Interval is the ring's pause between one sender's writes (0: as fast
	// as the window allows), to run a steady load rather than a flood.
	Interval time.Duration
	// Stop, when closed, ends the ring's sending early (SIGUSR1): what was
	// sent is still drained and counted, so a load can run for as long as
	// something else takes.
	Stop <-chan struct{}
	// StartFile, when set, holds the ring, once logged in, until the file
	// exists: several processes (a load and a probe) start their rings
	// together however long each took to log in.
	StartFile string
	// Reconnect makes ring sessions behave like a real client through a
	// rolling restart: stream management (XEP-0198) with acknowledgements,
	// see-other-host followed, other disconnects reconnected through the
	// dispatcher (or the next server), unacknowledged messages resent.
	Reconnect bool
	// AckDelay makes -reconnect clients answer the server's <r/> this much
	// later (with what they received by then), as clients that save
	// battery do: the server holds more unacknowledged.
	AckDelay time.Duration
	// BOSHPause makes BOSH sessions, once logged in, wait this long after
	// each answered poll: what the server has for them waits in its queue
	// meanwhile.
	BOSHPause time.Duration
	// Dispatch are base URLs of the cluster's HTTP listeners; -reconnect
	// asks GET /dispatch there for a node after a disconnect.
	Dispatch []string
	// HTTP are the HTTP listeners of the -servers, in the same order
	// (base URLs), for WebSocket and BOSH sessions.
	HTTP []string
	// Transports shares the users out over tcp, websocket and bosh by
	// weight (user i gets the transport of i mod the sum of weights).
	Transports []transportShare
	// Flows, when set, replaces the ring by pairs: user 2k on
	// Servers[from] sends to user 2k+1 on Servers[to], with (from, to) the
	// flow k mod len(Flows); receivers send nothing. It places senders
	// and receivers on chosen nodes (a node of senders only, of
	// receivers only, of both).
	Flows [][2]int
}

// transportShare is one -transports entry.
type transportShare struct {
	name   string
	weight int
}

// transportOf is user i's transport.
func (c *Config) transportOf(i int) string {
	total := 0
	for _, t := range c.Transports {
		total += t.weight
	}
	if total == 0 {
		return transportTCP
	}
	k := i % total
	for _, t := range c.Transports {
		if k < t.weight {
			return t.name
		}
		k -= t.weight
	}
	return transportTCP
}

// serverOf is the index in Servers (and HTTP) user i logs in to first.
func (c *Config) serverOf(i int) int {
	if len(c.Flows) > 0 {
		f := c.Flows[(i/2)%len(c.Flows)]
		return f[i%2]
	}
	return i % len(c.Servers)
}

func (c *Config) user(i int) string { return c.Prefix + strconv.Itoa(i) }

func (c *Config) dial(i int) dialOptions {
	tr, addr := c.transportOf(i), c.Servers[c.serverOf(i)]
	if tr != transportTCP {
		addr = c.HTTP[c.serverOf(i)]
	}
	return dialOptions{
		Transport:   tr,
		Addr:        addr,
		Domain:      c.Domain,
		Mech:        c.Mech,
		Timeout:     c.Timeout,
		Resource:    "bench",
		PostQuantum: c.PostQuantum,
		SASL2:       c.SASL2,
		TLSSessions: c.tlsCaches.of(c.TLSResume, i),
	}
}

// tlsCaches holds each user's TLS session cache (-tls-resume).
type tlsCaches struct {
	mu sync.Mutex
	m  map[int]tls.ClientSessionCache
}

func (t *tlsCaches) of(on bool, i int) tls.ClientSessionCache {
	if !on {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[int]tls.ClientSessionCache{}
	}
	c := t.m[i]
	if c == nil {
		c = tls.NewLRUClientSessionCache(2)
		t.m[i] = c
	}
	return c
}

// PhaseStats describes a phase that does one thing per user.
type PhaseStats struct {
	OK       int      `json:"ok"`
	Existing int      `json:"existing,omitempty"`
	Failed   int      `json:"failed"`
	Seconds  float64  `json:"seconds"`
	PerSec   float64  `json:"per_second"`
	Errors   []string `json:"errors,omitempty"`
	Latency  *Latency `json:"latency,omitempty"`
}

var addrPattern = regexp.MustCompile(`\[?[0-9a-f.:]+\]?:\d+->\[?[0-9a-f.:]+\]?:\d+|\d+\.\d+\.\d+\.\d+:\d+`)

// errorSet keeps a few distinct error messages for the report.
type errorSet struct {
	mu   sync.Mutex
	seen map[string]int
}

func (e *errorSet) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen == nil {
		e.seen = make(map[string]int)
	}
	// Addresses differ per connection; without them equal errors group.
	msg := addrPattern.ReplaceAllString(err.Error(), "ADDR")
	if len(msg) > 200 {
		msg = msg[:200]
	}
	e.seen[msg]++
}

func (e *errorSet) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for m, n := range e.seen {
		out = append(out, fmt.Sprintf("%dx %s", n, m))
	}
	slices.Sort(out)
	if len(out) > 8 {
		out = out[:8]
	}
	return out
}

// forEach runs fn for 0..n-1 on `workers` goroutines.
func forEach(n, workers int, fn func(i int)) {
	if workers < 1 {
		workers = 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// createUsers makes sure every account exists.
func createUsers(ctx context.Context, cfg *Config) PhaseStats {
	var st PhaseStats
	if cfg.Create == "none" {
		return st
	}
	var ok, existing, failed atomic.Int64
	var errs errorSet
	start := time.Now()
	forEach(cfg.Users, cfg.Concurrency, func(i int) {
		var err error
		switch cfg.Create {
		case "cmd":
			err = runCreateCmd(ctx, cfg, i)
		default:
			err = registerOne(ctx, cfg, i)
		}
		switch {
		case err == nil:
			ok.Add(1)
		case errors.Is(err, errConflict):
			existing.Add(1)
		default:
			failed.Add(1)
			errs.add(err)
		}
	})
	st.Seconds = time.Since(start).Seconds()
	st.OK, st.Existing, st.Failed = int(ok.Load()), int(existing.Load()), int(failed.Load())
	st.PerSec = float64(st.OK+st.Existing) / st.Seconds
	st.Errors = errs.list()
	return st
}

// registerOne makes account i by in-band registration. A node that sheds
// the stream (see-other-host, resource-constraint: it is at its admission
// limits) is asked again after a jittered backoff, at the address it
// names or the same one, until -timeout: as a client that signs up does.
func registerOne(ctx context.Context, cfg *Config, i int) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	addr := cfg.Servers[cfg.serverOf(i)]
	backoff := 200 * time.Millisecond
	for {
		err := registerAt(ctx, cfg, i, addr)
		var se *streamErr
		if !errors.As(err, &se) || (se.Cond != "see-other-host" && se.Cond != "resource-constraint") {
			return err
		}
		if se.Host != "" {
			addr = se.Host
		}
		select {
		case <-time.After(jittered(backoff)):
		case <-ctx.Done():
			return err
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func registerAt(ctx context.Context, cfg *Config, i int, addr string) error {
	o := cfg.dial(i)
	o.Transport, o.Addr = transportTCP, addr
	c, err := dialTLS(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.register(cfg.user(i), cfg.Password)
}

func runCreateCmd(ctx context.Context, cfg *Config, i int) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := strings.NewReplacer("{user}", cfg.user(i), "{password}", cfg.Password, "{domain}", cfg.Domain)
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", r.Replace(cfg.CreateCmd)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create command: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// loginAll logs users 0..n-1 in at the configured concurrency. The result
// has nil for every failed login.
func loginAll(ctx context.Context, cfg *Config, n int) ([]*conn, PhaseStats) {
	conns := make([]*conn, n)
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var errs errorSet
	start := time.Now()
	forEach(n, cfg.Concurrency, func(i int) {
		t0 := time.Now()
		c, err := loginOne(ctx, cfg, i)
		if err != nil {
			failed.Add(1)
			errs.add(err)
			lat[i] = -1
			return
		}
		lat[i] = time.Since(t0)
		conns[i] = c
	})
	st := PhaseStats{Seconds: time.Since(start).Seconds(), Failed: int(failed.Load()), Errors: errs.list()}
	st.OK = n - st.Failed
	st.PerSec = float64(st.OK) / st.Seconds
	var sample []time.Duration
	for _, d := range lat {
		if d >= 0 {
			sample = append(sample, d)
		}
	}
	l := summarize(sample)
	st.Latency = &l
	return conns, st
}

func loginOne(ctx context.Context, cfg *Config, i int) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	o := cfg.dial(i)
	c, err := dial(ctx, o)
	// With -reconnect, follow a redirect (a node draining at the start).
	for hops := 0; cfg.Reconnect && hops < 3; hops++ {
		var se *streamErr
		if !errors.As(err, &se) || se.Host == "" || o.Transport == transportBOSH {
			break
		}
		o.Addr = se.Host
		c, err = dial(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	if err := c.authenticate(o, cfg.user(i), cfg.Password); err != nil {
		c.abort()
		return nil, err
	}
	c.addr = o.Addr
	if cfg.Reconnect {
		// Stream management before the initial presence, so that it is
		// the first stanza both sides count.
		if err := c.enableSM(nil); err != nil {
			c.abort()
			return nil, err
		}
	}
	// Initial presence makes the session available (RFC 6121 §4.2).
	if err := c.writeString("<presence/>"); err != nil {
		c.abort()
		return nil, err
	}
	c.car.setDeadline(time.Time{})
	c.ready(cfg)
	return c, nil
}

// closeAll ends every session.
func closeAll(conns []*conn, workers int) {
	forEach(len(conns), workers, func(i int) {
		if conns[i] != nil {
			conns[i].Close()
		}
	})
}

// logFailures prints phase errors to stderr.
func logFailures(phase string, st PhaseStats) {
	if st.Failed > 0 {
		slog.Warn("failures", "phase", phase, "failed", st.Failed, "errors", st.Errors)
	}
}

// churn closes and logs in again cfg.Churn percent of conns each minute,
// one at a time and evenly spread, until stop: the background
// reconnections of clients whose network changes (issue 23 asks for 1% a
// minute). A new session is read by a readLoop until done, as the others
// are. It returns how many it reconnected and how many of those failed
// (the slot then stays empty). conns is written only here until stop.
func churn(ctx context.Context, cfg *Config, conns []*conn, stop, done <-chan struct{}) (n, failed int) {
	perMinute := float64(len(conns)) * cfg.Churn / 100
	if perMinute <= 0 {
		return 0, 0
	}
	t := time.NewTicker(time.Duration(float64(time.Minute) / perMinute))
	defer t.Stop()
	var errs errorSet // of the replaced sessions' reads, ended on purpose
	for {
		select {
		case <-stop:
			return n, failed
		case <-ctx.Done():
			return n, failed
		case <-t.C:
		}
		i := rand.IntN(len(conns))
		if conns[i] != nil {
			conns[i].Close()
		}
		n++
		c, err := loginOne(ctx, cfg, i)
		if err != nil {
			failed++
			conns[i] = nil
			slog.Debug("churn: login failed", "user", i, "err", err)
			continue
		}
		conns[i] = c
		go readLoop(c, done, &errs, func(*wire.Element) {})
	}
}
