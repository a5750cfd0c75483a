// Command aviary-bench is a load generator for XMPP servers. It speaks real
// XMPP over TCP with STARTTLS (self-signed certificates accepted), creates
// accounts by in-band registration or a command, logs them in at a set
// concurrency and runs one traffic pattern:
//
//	login      log every user in, report logins per second
//	ring       user i sends -messages messages to user i+1, -inflight at a time
//	broadcast  users subscribe to user 0, whose presence changes -messages times
//	muc        users join one room, each sends -messages groupchat messages
//	idle       hold the sessions and report server memory per session
//
// Messages carry a sequence number and a send timestamp, so the report has
// latency percentiles (p50, p99, p99.9), lost messages (sent minus received
// after -drain) and duplicates. With -rss-pid it reads the server's VmRSS
// before and after login. -json prints one JSON object for scripts.
//
// Example (Prosody on 5222, domain localhost):
//
//	go run ./cmd/aviary-bench -servers 127.0.0.1:5222 -domain localhost \
//	    -users 200 -workload ring -messages 100 -inflight 20
//
// The 10,000-session idle workload needs as many sockets in this process as
// in the server: the tool raises RLIMIT_NOFILE to its hard limit at start
// (20,000 on the reference machine); the server needs the same.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// Result is the whole report; -json prints it.
type Result struct {
	Workload    string   `json:"workload"`
	Servers     []string `json:"servers"`
	Users       int      `json:"users"`
	Concurrency int      `json:"concurrency"`
	Mech        string   `json:"mech"`
	TLSPQ       bool     `json:"tls_pq"`
	// SASL2Logins counts the logins that used SASL2 with Bind 2.
	SASL2Logins int64 `json:"sasl2_logins"`
	// TLSResumed counts TLS handshakes that resumed a session (-tls-resume).
	TLSResumed int64           `json:"tls_resumed,omitempty"`
	NoFile     uint64          `json:"nofile_limit"`
	Create     PhaseStats      `json:"create"`
	Login      PhaseStats      `json:"login"`
	Ring       *TrafficStats   `json:"ring,omitempty"`
	Broadcast  *BroadcastStats `json:"broadcast,omitempty"`
	MUC        *MUCStats       `json:"muc,omitempty"`
	Memory     *MemoryStats    `json:"memory,omitempty"`
	Started    time.Time       `json:"started"`
}

func main() {
	// The tool shares the machine with the server it measures: every CPU
	// cycle its collector takes is one the server does not get. Its own
	// memory is not measured (-rss-pid reads the server's), so let its
	// heap grow four times the live data between collections instead of
	// twice (GOGC=400; a GOGC in the environment still wins). This cut the
	// tool's GC from ~8% to ~2% of its CPU in the login workload.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aviary-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		servers  = fs.String("servers", "127.0.0.1:5222", "comma-separated host:port list; users are spread round-robin")
		cfg      Config
		pids     = fs.String("rss-pid", "", "comma-separated server pids whose VmRSS is summed before and after login")
		jsonOut  = fs.Bool("json", false, "print the result as one JSON object")
		verbose  = fs.Bool("v", false, "debug logging")
		cpuProf  = fs.String("cpuprofile", "", "write the tool's own CPU profile here (its cost per login competes with the server on one machine)")
		cacheF   = fs.String("scram-cache", "", "file caching SCRAM salted passwords between runs, so the tool's PBKDF2 does not compete with the server for CPU")
		totalTO  = fs.Duration("max-time", 30*time.Minute, "give up the whole run after this long")
		dispatch = fs.String("dispatch", "", "with -reconnect: comma-separated base URLs of the cluster's HTTP listeners (http://host:5280); after a disconnect the session asks GET /dispatch there for a node instead of the next -servers address")
		httpList = fs.String("http", "", "comma-separated HTTP listeners (http://host:5280) of the -servers, in the same order, for WebSocket and BOSH sessions (default: -dispatch when it names as many)")
		mix      = fs.String("transports", "tcp", "how users share the transports, by weight: tcp=8,websocket=1,bosh=1 (user i gets the transport of i mod the sum); websocket and bosh connect to -http")
		flows    = fs.String("flows", "", "ring: instead of the ring, pairs on chosen servers: user 2k on -servers[FROM] sends to user 2k+1 on -servers[TO], for FROM>TO pairs taken in turn (e.g. 0>1,0>2 puts only senders on the first server)")
		logLevel = new(slog.LevelVar)
	)
	fs.StringVar(&cfg.Domain, "domain", "localhost", "XMPP domain served by every server")
	fs.IntVar(&cfg.Users, "users", 100, "number of users")
	fs.StringVar(&cfg.Prefix, "prefix", "bench", "user names are prefix+index")
	fs.StringVar(&cfg.Password, "password", "bench-secret", "password of every user")
	fs.StringVar(&cfg.Create, "create", "ibr", "how accounts are made: ibr (XEP-0077, an existing account is fine), cmd (-create-cmd), none")
	fs.StringVar(&cfg.CreateCmd, "create-cmd", "", "with -create cmd: shell command per user; {user} {password} {domain} are replaced")
	fs.IntVar(&cfg.Concurrency, "concurrency", 50, "logins (and registrations) in parallel")
	fs.StringVar(&cfg.Mech, "mech", "auto", "SASL mechanism: auto (SCRAM-SHA-1, else PLAIN), SCRAM-SHA-1, PLAIN")
	fs.BoolVar(&cfg.SASL2, "sasl2", true, "log in with XEP-0388 SASL2 and XEP-0386 Bind 2 when the server offers both with SCRAM-SHA-1 (two round trips fewer, as current clients do); false: RFC 6120 SASL and resource binding everywhere")
	fs.BoolVar(&cfg.TLSResume, "tls-resume", false, "keep each user's TLS session and resume it when the user connects again (reconnections, -churn), as phones do; the report counts resumed handshakes")
	fs.BoolVar(&cfg.PostQuantum, "tls-pq", false, "offer Go's default TLS groups including X25519MLKEM768 (default: X25519 and P-256 only, what OpenSSL 3.0 servers support)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "timeout for one connection, registration or login")
	fs.StringVar(&cfg.Workload, "workload", "login", "login, ring, broadcast, muc or idle")
	fs.StringVar(&cfg.Room, "room", "bench", "muc: the room every user joins")
	fs.StringVar(&cfg.MUCService, "muc-service", "", "muc: the group chat service (default conference.<domain>)")
	fs.IntVar(&cfg.Messages, "messages", 100, "ring, muc: messages per sender; broadcast: presence changes")
	fs.IntVar(&cfg.InFlight, "inflight", 20, "ring: messages in flight per sender; muc: messages per sender whose reflection has not come back; broadcast: changes in flight")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "wait this long for missing messages before counting them lost")
	fs.DurationVar(&cfg.SubscribeTimeout, "subscribe-timeout", 2*time.Minute, "broadcast: wait this long for all followers to subscribe to the hub; muc: for all users to join the room")
	fs.DurationVar(&cfg.Settle, "settle", 15*time.Second, "idle: before and after login, wait up to this long for the server's RSS to stop changing")
	fs.DurationVar(&cfg.Hold, "hold", 0, "idle: keep the sessions open this long after measuring")
	fs.Float64Var(&cfg.Churn, "churn", 0, "idle with -hold: close and log in again this percent of the sessions each minute, spread evenly, as clients whose network changes do")
	fs.BoolVar(&cfg.Reconnect, "reconnect", false, "ring: behave like a real client through node restarts: stream management with acks, follow see-other-host, reconnect (via -dispatch) after other disconnects, resend what the server did not acknowledge; the report gains delivered, redelivered, redirects, reconnects")
	fs.StringVar(&cfg.StartFile, "start-file", "", "ring: once logged in, log \"ring waiting\" and start the ring only when this file exists (several processes start together)")
	fs.DurationVar(&cfg.BOSHPause, "bosh-pause", 0, "BOSH sessions, once logged in, wait this long after each answered poll before the next (a slow network, a client saving battery): what the server has for them waits in its queue meanwhile (0: poll again at once)")
	fs.DurationVar(&cfg.AckDelay, "ack-delay", 0, "with -reconnect: answer the server's acknowledgement requests (<r/>) this much later, as battery-saving clients do: the server holds more unacknowledged (0: at once)")
	fs.DurationVar(&cfg.Interval, "interval", 0, "ring, muc: each sender pauses this long between writes (0: as fast as -inflight allows); muc spreads the occupants' first messages over one interval")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *verbose {
		logLevel.Set(slog.LevelDebug)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel})))
	for _, s := range strings.Split(*servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Servers = append(cfg.Servers, s)
		}
	}
	for _, d := range strings.Split(*dispatch, ",") {
		if d = strings.TrimSpace(d); d != "" {
			cfg.Dispatch = append(cfg.Dispatch, d)
		}
	}
	for _, h := range strings.Split(*httpList, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.HTTP = append(cfg.HTTP, httpBase(h))
		}
	}
	if len(cfg.HTTP) == 0 && len(cfg.Dispatch) == len(cfg.Servers) {
		for _, d := range cfg.Dispatch {
			cfg.HTTP = append(cfg.HTTP, httpBase(d))
		}
	}
	var err error
	if cfg.Transports, err = parseTransports(*mix); err != nil {
		fmt.Fprintln(stderr, "aviary-bench:", err)
		return 2
	}
	if cfg.Flows, err = parseFlows(*flows, len(cfg.Servers)); err != nil {
		fmt.Fprintln(stderr, "aviary-bench:", err)
		return 2
	}
	if cfg.RSSPids, err = parsePids(*pids); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "aviary-bench:", err)
		return 2
	}

	cache = nil
	if *cacheF != "" {
		if cache, err = loadSCRAMCache(*cacheF); err != nil {
			fmt.Fprintln(stderr, "aviary-bench: scram cache:", err)
			return 2
		}
	}

	res := Result{Workload: cfg.Workload, Servers: cfg.Servers, Users: cfg.Users,
		Concurrency: cfg.Concurrency, Mech: cfg.Mech, TLSPQ: cfg.PostQuantum, Started: time.Now().UTC()}
	res.NoFile, err = raiseNoFile()
	if err != nil {
		slog.Warn("cannot raise RLIMIT_NOFILE", "err", err)
	}
	if need := uint64(cfg.Users) + 64; res.NoFile < need {
		slog.Warn("open-file limit below the number of sessions", "limit", res.NoFile, "need", need)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *totalTO)
	defer cancelT()
	// SIGUSR1 ends the ring's sending early; the run still drains and
	// reports (a load that lasts as long as an operation under test).
	stop := make(chan struct{})
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		if _, ok := <-usr1; ok {
			close(stop)
		}
	}()
	cfg.Stop = stop

	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintln(stderr, "aviary-bench:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "aviary-bench:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	execute(ctx, &cfg, &res)
	res.SASL2Logins = sasl2Logins.Load()
	res.TLSResumed = tlsResumed.Load()
	if err := cache.save(); err != nil {
		slog.Warn("cannot save scram cache", "err", err)
	}

	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		printText(stdout, &res)
	}
	if res.Login.OK == 0 {
		return 1
	}
	return 0
}

func (c *Config) validate() error {
	switch {
	case len(c.Servers) == 0:
		return fmt.Errorf("no -servers")
	case c.Users < 1:
		return fmt.Errorf("-users must be at least 1")
	case c.Concurrency < 1:
		return fmt.Errorf("-concurrency must be at least 1")
	case c.Create == "cmd" && c.CreateCmd == "":
		return fmt.Errorf("-create cmd needs -create-cmd")
	case c.Create != "ibr" && c.Create != "cmd" && c.Create != "none":
		return fmt.Errorf("-create must be ibr, cmd or none")
	case c.Reconnect && c.Workload != "ring":
		return fmt.Errorf("-reconnect works with -workload ring only")
	case len(c.Dispatch) > 0 && !c.Reconnect:
		return fmt.Errorf("-dispatch needs -reconnect")
	case len(c.Flows) > 0 && c.Workload != "ring":
		return fmt.Errorf("-flows works with -workload ring only")
	case len(c.Flows) > 0 && c.Users%2 != 0:
		return fmt.Errorf("-flows needs an even number of -users (pairs)")
	}
	for _, t := range c.Transports {
		if t.name != transportTCP && t.weight > 0 && len(c.HTTP) != len(c.Servers) {
			return fmt.Errorf("-transports with %s needs -http naming the HTTP listener of each of the %d -servers", t.name, len(c.Servers))
		}
		if t.name != transportTCP && t.weight > 0 && c.Workload != "ring" && c.Workload != "login" {
			return fmt.Errorf("-transports with %s works with the ring and login workloads", t.name)
		}
	}
	switch c.Workload {
	case "login", "idle":
	case "ring", "broadcast", "muc":
		if c.Users < 2 {
			return fmt.Errorf("-workload %s needs at least 2 users", c.Workload)
		}
		if c.Messages < 1 || c.InFlight < 1 {
			return fmt.Errorf("-messages and -inflight must be at least 1")
		}
	default:
		return fmt.Errorf("unknown -workload %q", c.Workload)
	}
	return nil
}

// parseTransports reads -transports: name=weight pairs.
func parseTransports(s string) ([]transportShare, error) {
	var out []transportShare
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, w, found := strings.Cut(f, "=")
		weight := 1
		if found {
			n, err := strconv.Atoi(w)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("bad -transports weight in %q", f)
			}
			weight = n
		}
		switch name {
		case transportTCP, transportWebSocket, transportBOSH:
		default:
			return nil, fmt.Errorf("unknown transport %q in -transports (tcp, websocket, bosh)", name)
		}
		out = append(out, transportShare{name: name, weight: weight})
	}
	return out, nil
}

// parseFlows reads -flows: FROM>TO pairs of -servers indexes.
func parseFlows(s string, servers int) ([][2]int, error) {
	var out [][2]int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		a, b, ok := strings.Cut(f, ">")
		from, err1 := strconv.Atoi(strings.TrimSpace(a))
		to, err2 := strconv.Atoi(strings.TrimSpace(b))
		if !ok || err1 != nil || err2 != nil || from < 0 || to < 0 || from >= servers || to >= servers {
			return nil, fmt.Errorf("bad -flows entry %q: want FROM>TO, indexes of the %d -servers", f, servers)
		}
		out = append(out, [2]int{from, to})
	}
	return out, nil
}

func parsePids(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad -rss-pid %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// execute runs the phases: create accounts, log in, run the workload, close.
func execute(ctx context.Context, cfg *Config, res *Result) {
	res.Create = createUsers(ctx, cfg)
	logFailures("create", res.Create)

	var before int64
	if len(cfg.RSSPids) > 0 {
		if cfg.Workload == "idle" {
			before = stableRSS(ctx, cfg.RSSPids, cfg.Settle)
		} else {
			before = sumRSS(cfg.RSSPids)
		}
	}
	conns, login := loginAll(ctx, cfg, cfg.Users)
	res.Login = login
	logFailures("login", login)
	defer closeAll(conns, cfg.Concurrency)

	if len(cfg.RSSPids) > 0 {
		after := sumRSS(cfg.RSSPids)
		if cfg.Workload == "idle" {
			after = stableRSS(ctx, cfg.RSSPids, cfg.Settle)
		}
		res.Memory = memoryStats(before, after, login.OK)
	}

	switch cfg.Workload {
	case "ring":
		st := runRing(ctx, cfg, conns)
		res.Ring = &st
	case "broadcast":
		st := runBroadcast(ctx, cfg, conns)
		res.Broadcast = &st
	case "muc":
		st := runMUC(ctx, cfg, conns)
		res.MUC = &st
	case "idle":
		if cfg.Hold > 0 {
			// Answer the server's pings while holding.
			done := make(chan struct{})
			defer close(done)
			var errs errorSet
			for _, c := range conns {
				if c != nil {
					go readLoop(c, done, &errs, func(*wire.Element) {})
				}
			}
			slog.Info("holding sessions", "sessions", login.OK, "for", cfg.Hold, "churn_percent_a_minute", cfg.Churn)
			stop := make(chan struct{})
			churned := make(chan [2]int, 1)
			go func() {
				n, failed := churn(ctx, cfg, conns, stop, done)
				churned <- [2]int{n, failed}
			}()
			select {
			case <-time.After(cfg.Hold):
			case <-ctx.Done():
			}
			close(stop)
			if c := <-churned; c[0] > 0 {
				slog.Info("churn", "reconnected", c[0]-c[1], "failed", c[1])
			}
		}
	}
}

func printText(w io.Writer, r *Result) {
	fmt.Fprintf(w, "workload %s, %d users on %s, concurrency %d, RLIMIT_NOFILE %d\n",
		r.Workload, r.Users, strings.Join(r.Servers, ","), r.Concurrency, r.NoFile)
	fmt.Fprintf(w, "create:  %d new, %d existing, %d failed in %.2fs\n",
		r.Create.OK, r.Create.Existing, r.Create.Failed, r.Create.Seconds)
	fmt.Fprintf(w, "login:   %d ok, %d failed in %.2fs = %.1f logins/s", r.Login.OK, r.Login.Failed, r.Login.Seconds, r.Login.PerSec)
	if l := r.Login.Latency; l != nil {
		fmt.Fprintf(w, " (p50 %.1fms, p99 %.1fms)", l.P50, l.P99)
	}
	if r.SASL2Logins > 0 {
		fmt.Fprintf(w, ", %d with SASL2 + Bind 2", r.SASL2Logins)
	}
	if r.TLSResumed > 0 {
		fmt.Fprintf(w, ", %d TLS handshakes resumed", r.TLSResumed)
	}
	fmt.Fprintln(w)
	for _, e := range append(r.Create.Errors, r.Login.Errors...) {
		fmt.Fprintln(w, "  error:", e)
	}
	printTraffic := func(name string, t *TrafficStats) {
		fmt.Fprintf(w, "%s: sent %d, received %d, lost %d, bounced %d, duplicates %d, unexpected %d, stale %d, stalled %d\n",
			name, t.Sent, t.Received, t.Lost, t.Bounced, t.Duplicates, t.Unexpected, t.Stale, t.Stalled)
		fmt.Fprintf(w, "  %.1f msgs/s over %.2fs; latency p50 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms\n",
			t.PerSec, t.Seconds, t.Latency.P50, t.Latency.P99, t.Latency.P999, t.Latency.Max)
		if rc := t.Reconnect; rc != nil {
			fmt.Fprintf(w, "  reconnect: sent %d, delivered %d, redelivered %d (%d by the server alone), bounced %d, lost %d (acknowledged, never delivered; %d more never acknowledged), redirects %d, reconnects %d (resumed %d), disconnects %d, resent %d (%d not resent: acknowledged by %d <failed h/>; %d <failed h/> below an earlier <a h/>), dispatcher answers %d, unacked at end %d\n",
				rc.Sent, rc.Delivered, rc.Redelivered, rc.RedeliveredByServer, rc.Bounced, rc.Lost, rc.NeverAcked, rc.Redirects, rc.Reconnects, rc.Resumed, rc.Disconnects, rc.Resent, rc.ResendsSaved, rc.FailedWithH, rc.FailedHBelowAck, rc.DispatchAsked, rc.UnackedAtEnd)
			if rc.Reconnects > 0 {
				fmt.Fprintf(w, "  reconnect time: p50 %.0fms, 99%% back in %.0fms, 100%% in %.0fms; transports %v\n", rc.ReconnectP50, rc.ReconnectP99, rc.ReconnectMax, rc.Transports)
			}
		}
		if len(t.LostSample) > 0 {
			fmt.Fprintln(w, "  lost (sender:seq, in a room sender:seq>receiver):", strings.Join(t.LostSample, " "))
		}
		for _, e := range t.ReadErrs {
			fmt.Fprintln(w, "  read error:", e)
		}
	}
	if r.Ring != nil {
		printTraffic("ring", r.Ring)
	}
	if r.Broadcast != nil {
		fmt.Fprintf(w, "broadcast: %d/%d followers subscribed in %.2fs\n", r.Broadcast.Subscribed, r.Broadcast.Followers, r.Broadcast.SubSeconds)
		printTraffic("broadcast", &r.Broadcast.TrafficStats)
	}
	if m := r.MUC; m != nil {
		fmt.Fprintf(w, "muc: %d/%d occupants joined %s in %.2fs; %d messages sent\n", m.Joined, m.Occupants, m.Room, m.JoinSeconds, m.Messages)
		for _, e := range append(m.JoinErrors, m.BounceErrors...) {
			fmt.Fprintln(w, "  error:", e)
		}
		printTraffic("muc deliveries", &m.TrafficStats)
		if len(m.UnexpectedSample) > 0 {
			fmt.Fprintln(w, "  unexpected (sender:seq>receiver):", strings.Join(m.UnexpectedSample, " "))
		}
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "memory:  server RSS %d KiB before, %d KiB after %d sessions = %.1f KiB/session\n",
			m.BeforeKiB, m.AfterKiB, m.Sessions, m.PerSessionKiB)
	}
}
