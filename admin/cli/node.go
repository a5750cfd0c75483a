package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aviary-im/aviary/server/balance"
)

const nodeUsage = `usage: aviary node drain NAME [--admin URL] [--token TOKEN] [--wait] [--timeout D]

  drain   make node NAME stop accepting sessions, move its clients to the
          other nodes (see-other-host; unacknowledged messages are
          redelivered from offline storage) and stop when empty or at
          balance.drain_deadline. The process exits with status 0.

The command calls the admin API of any node (POST /api/nodes/NAME/drain);
the node that answers forwards the request over the cluster to NAME. With
--wait it then polls GET /api/nodes until NAME has left the cluster.

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
	start := time.Now()
	if err := c.call(ctx, "POST", "/api/nodes/"+pathEscape(name)+"/drain", nil, nil); err != nil {
		fmt.Fprintln(stderr, "aviary node drain:", err)
		return 1
	}
	fmt.Fprintf(stdout, "draining %s\n", name)
	if !*wait {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
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
				present = present || n.Name == name
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
