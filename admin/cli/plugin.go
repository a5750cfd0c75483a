package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/storage"
)

func init() {
	Register(Command{Name: "plugin", Summary: "manage third-party plugins and roll upgrades (admin API)", Run: func(args []string) int {
		return runPlugin(context.Background(), args, os.Environ(), os.Stdout, os.Stderr)
	}})
	Register(Command{Name: "session", Summary: "list and kick sessions (admin API)", Run: func(args []string) int {
		return runSession(context.Background(), args, os.Environ(), os.Stdout, os.Stderr)
	}})
}

const pluginUsage = `usage: aviary plugin <command> [--admin URL] [--token T] ...
       aviary plugin <list|upload|enable|disable> --config FILE | --database URL ...

With --admin (or AVIARY_ADMIN_URL) the command goes through a running
node's admin API. With --config, --database or --data-dir it works on the
catalogue in the store directly: the "all nodes stopped" upgrade path
(enable the new version, then start the nodes).

  list                        the catalogue
  upload NAME VERSION FILE    store a .wasm artifact in the catalogue
  enable NAME VERSION         make VERSION the one nodes load at start
  disable NAME VERSION
  upgrade NAME VERSION        rolling upgrade, one node at a time (--wait to follow it)
  status                      progress of the rolling upgrade
`

func runPlugin(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	fs := flag.NewFlagSet("aviary plugin "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	var nf nodeFlags
	nf.register(fs)
	wait := fs.Bool("wait", false, "upgrade: follow the rolling upgrade until it ends")
	a, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return 2
	}
	want := map[string]int{"list": 0, "upload": 3, "enable": 2, "disable": 2, "upgrade": 2, "status": 0}
	n, ok := want[args[0]]
	if !ok || len(a) != n {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	if nf.config != "" || nf.database != "" || nf.dataDir != "" {
		return pluginOffline(ctx, fs, &nf, environ, args[0], a, stdout, stderr)
	}
	c, err := af.client(environ)
	if err != nil {
		fmt.Fprintln(stderr, "aviary plugin:", err)
		return 2
	}
	switch args[0] {
	case "list":
		// The API's fields match storage.PluginRecord's (without the artifact).
		var ps []storage.PluginRecord
		if err = c.call(ctx, "GET", "/api/plugins", nil, &ps); err == nil {
			printCatalogue(stdout, ps)
		}
	case "upload":
		var data []byte
		if data, err = os.ReadFile(a[2]); err == nil {
			err = c.call(ctx, "POST", "/api/plugins/"+a[0]+"/"+a[1], data, nil)
		}
	case "enable", "disable":
		err = c.call(ctx, "POST", "/api/plugins/"+a[0]+"/"+a[1]+"/"+args[0], nil, nil)
	case "upgrade":
		err = c.call(ctx, "POST", "/api/plugins/"+a[0]+"/upgrade", map[string]string{"version": a[1]}, nil)
		if err == nil && *wait {
			return followUpgrade(ctx, c, stdout, stderr)
		}
	case "status":
		var st upgradeStatus
		if err = c.call(ctx, "GET", "/api/upgrade", nil, &st); err == nil {
			st.print(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "aviary plugin %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

type upgradeStatus struct {
	Plugin, From, To, State, Error string
	Steps                          []struct{ Node, Version, State string }
}

func (st upgradeStatus) print(w io.Writer) {
	fmt.Fprintf(w, "%s %s -> %s: %s", st.Plugin, st.From, st.To, st.State)
	if st.Error != "" {
		fmt.Fprintf(w, " (%s)", st.Error)
	}
	fmt.Fprintln(w)
	for _, s := range st.Steps {
		fmt.Fprintf(w, "  %-20s %-10s %s\n", s.Node, s.Version, s.State)
	}
}

func followUpgrade(ctx context.Context, c *apiClient, stdout, stderr io.Writer) int {
	last := ""
	for {
		var st upgradeStatus
		if err := c.call(ctx, "GET", "/api/upgrade", nil, &st); err != nil {
			fmt.Fprintln(stderr, "aviary plugin upgrade:", err)
			return 1
		}
		line := fmt.Sprint(st)
		if line != last {
			st.print(stdout)
			last = line
		}
		switch st.State {
		case "done":
			return 0
		case "failed", "rolled-back":
			return 1
		}
		select {
		case <-ctx.Done():
			return 1
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func runSession(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	usage := "usage: aviary session <list | kick FULLJID> [--admin URL] [--token T]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("aviary session "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return 2
	}
	c, err := af.client(environ)
	if err != nil {
		fmt.Fprintln(stderr, "aviary session:", err)
		return 2
	}
	switch {
	case args[0] == "list" && len(pos) == 0:
		var ss []struct {
			JID, Node string
			Priority  int
			Available bool
		}
		if err = c.call(ctx, "GET", "/api/sessions", nil, &ss); err == nil {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JID\tNODE\tPRIORITY\tAVAILABLE")
			for _, s := range ss {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%v\n", s.JID, s.Node, s.Priority, s.Available)
			}
			tw.Flush()
		}
	case args[0] == "kick" && len(pos) == 1:
		err = c.call(ctx, "DELETE", "/api/sessions/"+pathEscape(pos[0]), nil, nil)
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "aviary session %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// pluginOffline works on the catalogue in the store, for when no node runs.
func pluginOffline(ctx context.Context, fs *flag.FlagSet, nf *nodeFlags, environ []string, sub string, a []string, stdout, stderr io.Writer) int {
	if sub == "upgrade" || sub == "status" {
		fmt.Fprintf(stderr, "aviary plugin %s needs a running node: use --admin\n", sub)
		return 2
	}
	_, store, code := openStore(ctx, "aviary plugin", fs, nf, environ, stderr)
	if store == nil {
		return code
	}
	defer store.Close()
	switch sub {
	case "list":
		recs, err := store.ListPlugins(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "aviary plugin list: %v\n", err)
			return 1
		}
		printCatalogue(stdout, recs)
	case "upload":
		data, err := os.ReadFile(a[2])
		if err == nil {
			err = checkArtifact(ctx, a[0], a[1], data)
		}
		if err == nil {
			err = store.PutPlugin(ctx, storage.PluginRecord{Name: a[0], Version: a[1], Checksum: runtime.Checksum(data), Artifact: data, Uploaded: time.Now().UTC()})
		}
		if err != nil {
			fmt.Fprintf(stderr, "aviary plugin upload: %v\n", err)
			return 1
		}
	case "enable", "disable":
		if err := pluginhost.SetEnabled(ctx, store, a[0], a[1], sub == "enable"); err != nil {
			fmt.Fprintf(stderr, "aviary plugin %s: %v\n", sub, err)
			return 1
		}
	}
	return 0
}

// checkArtifact refuses a bad upload early.
func checkArtifact(ctx context.Context, name, version string, data []byte) error {
	return runtime.Validate(ctx, data)
}

func printCatalogue(w io.Writer, recs []storage.PluginRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tENABLED\tCHECKSUM\tUPLOADED")
	for _, p := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%.12s\t%s\n", p.Name, p.Version, p.Enabled, p.Checksum, p.Uploaded.Format(time.RFC3339))
	}
	tw.Flush()
}
