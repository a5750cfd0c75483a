package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aviary-im/aviary/server/balance"
)

const nodeUsage = `usage: aviary node drain NAME [--admin URL] [--token TOKEN] [--wait] [--timeout D] [--settle D]

  drain   make node NAME stop accepting sessions, move its clients to the
          other nodes (see-other-host; unacknowledged messages are
          redelivered from offline storage) and stop when empty or at
          balance.drain_deadline. The process exits with status 0.

The command calls the admin API of any node (POST /api/nodes/NAME/drain);
the node that answers forwards the request over the cluster to NAME. With
--wait it shows the sessions still on NAME while it drains, waits until
NAME has left the cluster, then reports how many of its sessions came back
on which node (clients reconnect by themselves; it waits up to --settle
for them).

flags:
`

func init() {
	Register(Command{Name: "node", Summary: "drain a node of a running cluster (admin API)", Run: func(args []string) int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runNode(ctx, args, os.Environ(), os.Stdout, os.Stderr)
	}})
}

func runNode(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aviary node drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, nodeUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "drain" {
		fs.Usage()
		return 2
	}
	var af apiFlags
	af.register(fs)
	wait := fs.Bool("wait", false, "wait until the node has left the cluster")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up waiting after this long (with --wait)")
	settle := fs.Duration("settle", 15*time.Second, "after the node left, wait this long at most for its clients to reconnect elsewhere (with --wait)")
	// Flags may come before or after NAME.
	rest := args[1:]
	var name string
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		if name != "" {
			fmt.Fprintf(stderr, "aviary node drain: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
		name, rest = fs.Arg(0), fs.Args()[1:]
	}
	if name == "" {
		fmt.Fprintln(stderr, "aviary node drain: want a node NAME")
		return 2
	}
	c, err := af.client(environ)
	if err != nil {
		fmt.Fprintln(stderr, "aviary node drain:", err)
		return 2
	}
	// The sessions on NAME before the drain, by bare JID: where they come
	// back is the report (a client may bind a new resource).
	before, _ := sessionsByNode(ctx, c)
	start := time.Now()
	if err := c.call(ctx, "POST", "/api/nodes/"+pathEscape(name)+"/drain", nil, nil); err != nil {
		fmt.Fprintln(stderr, "aviary node drain:", err)
		return 1
	}
	fmt.Fprintf(stdout, "draining %s (%d sessions)\n", name, len(before[name]))
	if !*wait {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if code := waitGone(ctx, c, name, start, stdout, stderr); code != 0 {
		return code
	}
	reportMoved(ctx, c, name, before[name], *settle, stdout)
	return 0
}

// drainPoll is how often --wait asks; drainProgress how often it says
// where the drain is when nothing changed.
const (
	drainPoll     = 500 * time.Millisecond
	drainProgress = 5 * time.Second
)

// waitGone polls the node list until name has left the cluster, printing
// its session count whenever it changes (and every drainProgress).
func waitGone(ctx context.Context, c *apiClient, name string, start time.Time, stdout, stderr io.Writer) int {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	lastSessions, lastSaid := -1, time.Now()
	for {
		var nodes []struct {
			Name     string `json:"name"`
			Sessions int    `json:"sessions"`
			Draining bool   `json:"draining"`
		}
		err := c.call(ctx, "GET", "/api/nodes", nil, &nodes)
		if err == nil {
			present := false
			for _, n := range nodes {
				if n.Name != name {
					continue
				}
				present = true
				if n.Sessions != lastSessions || time.Since(lastSaid) >= drainProgress {
					fmt.Fprintf(stdout, "  %5.1fs  %s: %d sessions left\n", time.Since(start).Seconds(), name, n.Sessions)
					lastSessions, lastSaid = n.Sessions, time.Now()
				}
			}
			if !present {
				fmt.Fprintf(stdout, "%s left the cluster after %.1fs\n", name, time.Since(start).Seconds())
				return 0
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "aviary node drain: %s still in the cluster after %v (last error: %v)\n", name, time.Since(start).Round(time.Second), err)
			return 1
		case <-tick.C:
		}
	}
}

// sessionsByNode returns the bare JIDs of the online sessions on each
// node (one entry per session).
func sessionsByNode(ctx context.Context, c *apiClient) (map[string][]string, error) {
	var ss []struct{ JID, Node string }
	if err := c.call(ctx, "GET", "/api/sessions", nil, &ss); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, s := range ss {
		bare, _, _ := strings.Cut(s.JID, "/")
		out[s.Node] = append(out[s.Node], bare)
	}
	return out, nil
}

// reportMoved says where the sessions that were on the drained node are
// now: a session counts as moved when its account has a session on
// another node that no other moved session took. It waits up to settle
// for clients still reconnecting.
func reportMoved(ctx context.Context, c *apiClient, name string, was []string, settle time.Duration, stdout io.Writer) {
	if len(was) == 0 {
		fmt.Fprintf(stdout, "%s had no sessions to move\n", name)
		return
	}
	deadline := time.Now().Add(settle)
	var where map[string]int
	moved := 0
	for {
		now, err := sessionsByNode(ctx, c)
		if err == nil {
			where, moved = matchMoved(was, now, name)
		}
		if moved == len(was) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(drainPoll):
		}
	}
	nodes := make([]string, 0, len(where))
	for n := range where {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s %d", n, where[n]))
	}
	fmt.Fprintf(stdout, "moved %d of %d sessions", moved, len(was))
	if len(parts) > 0 {
		fmt.Fprintf(stdout, ": %s", strings.Join(parts, ", "))
	}
	fmt.Fprintln(stdout)
	if missing := len(was) - moved; missing > 0 {
		fmt.Fprintf(stdout, "%d not back within %v (their clients have not reconnected yet; unacknowledged messages wait in offline storage)\n", missing, settle)
	}
}

// matchMoved counts, per node other than from, the sessions of the
// accounts in was found there, each session matching at most one.
func matchMoved(was []string, now map[string][]string, from string) (map[string]int, int) {
	left := map[string]int{}
	for _, bare := range was {
		left[bare]++
	}
	where, moved := map[string]int{}, 0
	nodes := make([]string, 0, len(now))
	for n := range now {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		if n == from {
			continue
		}
		for _, bare := range now[n] {
			if left[bare] > 0 {
				left[bare]--
				where[n]++
				moved++
			}
		}
	}
	return where, moved
}

// stopWhenDrained is what `aviary serve` does when a drain ends: it sends
// itself SIGTERM, so the node stops the way it always does (listeners
// closed, cluster left, store closed) and the process exits with status 0.
func stopWhenDrained(log interface{ Info(string, ...any) }) func(balance.Report) {
	return func(r balance.Report) {
		log.Info("drained: stopping the node", "reason", r.Reason, "took", r.Took().String(), "moved", r.Moved, "refused", r.Refused)
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
}
