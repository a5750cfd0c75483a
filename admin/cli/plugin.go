package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

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
       aviary plugin <list|upload|enable|disable|delete> --config FILE | --database URL ...

With --admin (or AVIARY_ADMIN_URL) the command goes through a running
node's admin API. With --config, --database or --data-dir it works on the
catalogue in the store directly: the "all nodes stopped" upgrade path
(enable the new version, then start the nodes); running nodes follow the
change within seconds.

  list                        the catalogue, and what each live node runs of it
  upload NAME VERSION FILE    add a .wasm artifact to the catalogue (a version
                              that exists is refused: upload a new version)
  enable NAME VERSION         make VERSION the one every node runs; waits for
                              the nodes and fails when one does not run it
  disable NAME VERSION        every node unloads it
  delete NAME[@VERSION]       remove a version, or every version, from the
                              catalogue; refused while enabled or running on a
                              node (offline: --force ignores nodes' reports)
  upgrade NAME VERSION        rolling upgrade, one node at a time, each watched
                              on real traffic (--wait to follow it)
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
	force := fs.Bool("force", false, "delete without a running node: ignore what nodes last reported (a crashed node's report stays)")
	a, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return 2
	}
	want := map[string]int{"list": 0, "upload": 3, "enable": 2, "disable": 2, "delete": 1, "upgrade": 2, "status": 0}
	n, ok := want[args[0]]
	if !ok || len(a) != n {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	if args[0] == "delete" {
		name, version, _ := strings.Cut(a[0], "@")
		if name == "" || strings.Contains(a[0], "@") && version == "" {
			fmt.Fprintf(stderr, "aviary plugin delete: %q is not NAME or NAME@VERSION\n", a[0])
			return 2
		}
		a = []string{name, version}
	}
	if nf.config != "" || nf.database != "" || nf.dataDir != "" {
		return pluginOffline(ctx, fs, &nf, environ, args[0], a, *force, stdout, stderr)
	}
	c, err := af.client(environ)
	if err != nil {
		fmt.Fprintln(stderr, "aviary plugin:", err)
		return 2
	}
	switch args[0] {
	case "list":
		var ps []apiPlugin
		if err = c.call(ctx, "GET", "/api/plugins", nil, &ps); err == nil {
			printPlugins(stdout, ps)
		}
	case "upload":
		var data []byte
		if data, err = os.ReadFile(a[2]); err == nil {
			err = c.call(ctx, "POST", "/api/plugins/"+pathEscape(a[0])+"/"+pathEscape(a[1]), data, nil)
		}
	case "enable", "disable":
		var p apiPlugin
		if err = c.call(ctx, "POST", "/api/plugins/"+pathEscape(a[0])+"/"+pathEscape(a[1])+"/"+args[0], nil, &p); err == nil {
			err = printNodes(stdout, p, args[0] == "enable")
		}
	case "delete":
		path := "/api/plugins/" + pathEscape(a[0])
		if a[1] != "" {
			path += "/" + pathEscape(a[1])
		}
		if err = c.call(ctx, "DELETE", path, nil, nil); err == nil {
			fmt.Fprintf(stdout, "deleted %s\n", strings.TrimSpace(a[0]+" "+a[1]))
		}
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
	Steps                          []struct {
		Node, Version, State, Error string
		Calls, Failures             int64
	}
}

func (st upgradeStatus) print(w io.Writer) {
	fmt.Fprintf(w, "%s %s -> %s: %s", st.Plugin, st.From, st.To, st.State)
	if st.Error != "" {
		fmt.Fprintf(w, " (%s)", st.Error)
	}
	fmt.Fprintln(w)
	for _, s := range st.Steps {
		line := fmt.Sprintf("  %-20s %-10s %-11s", s.Node, s.Version, s.State)
		if s.Calls > 0 || s.Failures > 0 {
			line += fmt.Sprintf(" %d calls, %d failed", s.Calls, s.Failures)
		}
		if s.Error != "" {
			line += "  " + s.Error
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
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
	usage := "usage: aviary session <list | show FULLJID [--json] | kick FULLJID> [--admin URL] [--token T]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("aviary session "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "show: print the admin API's JSON")
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
		var ss []apiSession
		if err = c.call(ctx, "GET", "/api/sessions", nil, &ss); err == nil {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JID\tNODE\tTRANSPORT\tADDRESS\tPRIORITY\tAVAILABLE\tCLIENT")
			for _, s := range ss {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%v\t%s\n", s.JID, s.Node, s.Transport, s.Addr, s.Priority, s.Available, s.client())
			}
			tw.Flush()
		}
	case args[0] == "show" && len(pos) == 1:
		err = showSession(ctx, c, pos[0], *asJSON, stdout)
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

// apiPlugin is a catalogue entry as the admin API gives it.
type apiPlugin struct {
	Name, Version, Checksum string
	Enabled                 bool
	Uploaded                time.Time
	Nodes                   []struct{ Node, Version, State, Error string }
}

func printPlugins(w io.Writer, ps []apiPlugin) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tENABLED\tCHECKSUM\tUPLOADED\tNODES")
	for _, p := range ps {
		var nodes []string
		for _, n := range p.Nodes {
			nodes = append(nodes, n.Node+":"+n.State)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%.12s\t%s\t%s\n", p.Name, p.Version, p.Enabled, p.Checksum, p.Uploaded.Format(time.RFC3339), strings.Join(nodes, " "))
	}
	tw.Flush()
	for _, p := range ps {
		for _, n := range p.Nodes {
			if n.Error != "" {
				fmt.Fprintf(w, "%s %s on %s: %s: %s\n", p.Name, p.Version, n.Node, n.State, n.Error)
			}
		}
	}
}

// printNodes prints what each live node runs of a plugin after enable or
// disable, and fails when one does not follow.
func printNodes(w io.Writer, p apiPlugin, enabled bool) error {
	var bad []string
	for _, n := range p.Nodes {
		line := fmt.Sprintf("  %-20s %-10s %s", n.Node, n.Version, n.State)
		if n.Error != "" {
			line += ": " + n.Error
		}
		fmt.Fprintln(w, line)
		if (enabled && n.State != pluginhost.StateLoaded) || (!enabled && (n.State == pluginhost.StateLoaded || n.State == pluginhost.StateDisabled)) {
			bad = append(bad, n.Node)
		}
	}
	if len(bad) > 0 {
		if enabled {
			return fmt.Errorf("%s %s is enabled in the catalogue, but not running on %s (see above; the node's log says why)",
				p.Name, p.Version, strings.Join(bad, ", "))
		}
		return fmt.Errorf("%s %s is disabled in the catalogue, but still running on %s (see above)", p.Name, p.Version, strings.Join(bad, ", "))
	}
	return nil
}

// pluginOffline works on the catalogue in the store, for when no node runs.
func pluginOffline(ctx context.Context, fs *flag.FlagSet, nf *nodeFlags, environ []string, sub string, a []string, force bool, stdout, stderr io.Writer) int {
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
			err = pluginhost.Upload(ctx, store, a[0], a[1], data)
		}
		if err != nil {
			fmt.Fprintf(stderr, "aviary plugin upload: %v\n", err)
			return 1
		}
	case "delete":
		var live func(string) bool
		if force {
			live = func(string) bool { return false }
		}
		if err := pluginhost.Delete(ctx, store, a[0], a[1], live); err != nil {
			fmt.Fprintf(stderr, "aviary plugin delete: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "deleted %s\n", strings.TrimSpace(a[0]+" "+a[1]))
	case "enable", "disable":
		if err := pluginhost.SetEnabled(ctx, store, a[0], a[1], sub == "enable"); err != nil {
			fmt.Fprintf(stderr, "aviary plugin %s: %v\n", sub, err)
			return 1
		}
	}
	return 0
}

func printCatalogue(w io.Writer, recs []storage.PluginRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tENABLED\tCHECKSUM\tUPLOADED")
	for _, p := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%.12s\t%s\n", p.Name, p.Version, p.Enabled, p.Checksum, p.Uploaded.Format(time.RFC3339))
	}
	tw.Flush()
}
