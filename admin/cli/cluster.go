package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres"
)

const clusterUsage = `usage: aviary cluster <enable|disable|status> [flags]

  enable    turn clustering on for the whole cluster
  disable   turn clustering off: every node serves its own users alone
  status    show the switch and the live members

The switch is the property cluster.enabled in PostgreSQL; running nodes
follow it within about a second (LISTEN/NOTIFY, a Hazelcast topic hint when
--hazelcast is given, and a periodic re-read).

flags:
`

func init() {
	Register(Command{Name: "cluster", Summary: "enable, disable or show clustering (cluster-wide switch and members)", Run: ClusterCommand})
}

// ClusterCommand runs `aviary cluster ...` (args exclude "cluster") and
// returns the exit code.
func ClusterCommand(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runCluster(ctx, args, os.Environ(), os.Stdout, os.Stderr)
}

type clusterFlags struct {
	config, database, hazelcast, hzName, prefix string
	jsonOut                                     bool
}

func runCluster(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	sub := args[0]
	var f clusterFlags
	fs := flag.NewFlagSet("aviary cluster "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "config file (the node's YAML)")
	fs.StringVar(&f.database, "database", "", "PostgreSQL URL (default: database.url, AVIARY_DATABASE)")
	fs.StringVar(&f.hazelcast, "hazelcast", "", "Hazelcast member addresses, comma-separated (default: cluster.hazelcast)")
	fs.StringVar(&f.hzName, "hazelcast-cluster-name", "", "Hazelcast cluster name (default: cluster.hazelcast_cluster_name)")
	fs.StringVar(&f.prefix, "hazelcast-prefix", "", "prefix of Aviary's Hazelcast objects (default \"aviary.\")")
	fs.BoolVar(&f.jsonOut, "json", false, "status: print JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, clusterUsage)
		fs.PrintDefaults()
	}
	switch sub {
	case "enable", "disable", "status":
	case "-h", "-help", "--help", "help":
		fs.Usage()
		return 0
	default:
		fmt.Fprintf(stderr, "aviary cluster: unknown subcommand %q\n", sub)
		fs.Usage()
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "aviary cluster %s: unexpected arguments %q\n", sub, fs.Args())
		return 2
	}
	cfg, err := cliConfig(f, environ)
	if err != nil {
		fmt.Fprintf(stderr, "aviary cluster: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	switch sub {
	case "enable", "disable":
		err = clusterSet(ctx, cfg, f, sub == "enable", stdout, stderr, log)
	case "status":
		err = clusterStatus(ctx, cfg, f, stdout, log)
	}
	if err != nil {
		fmt.Fprintf(stderr, "aviary cluster %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// cliConfig reads the config file and environment like the server does,
// then applies the flags. Without a file, a partial configuration (just a
// database, or just Hazelcast) is fine for these commands.
func cliConfig(f clusterFlags, environ []string) (*conf.Config, error) {
	flags := func(c *conf.Config) {
		if f.database != "" {
			c.Database.URL = f.database
		}
		if f.hazelcast != "" {
			c.Cluster.Hazelcast = splitList(f.hazelcast)
		}
		if f.hzName != "" {
			c.Cluster.HazelcastClusterName = f.hzName
		}
	}
	cfg, err := conf.LoadWith(f.config, environ, flags)
	if err == nil {
		return cfg, nil
	}
	if f.config != "" {
		return nil, err
	}
	cfg = conf.Default()
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "AVIARY_DATABASE", conf.EnvName("database.url"):
			cfg.Database.URL = v
		case conf.EnvName("cluster.hazelcast"):
			cfg.Cluster.Hazelcast = splitList(v)
		case conf.EnvName("cluster.hazelcast_cluster_name"):
			cfg.Cluster.HazelcastClusterName = v
		}
	}
	flags(cfg)
	cfg.ApplyDefaults()
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func openProps(ctx context.Context, cfg *conf.Config, log *slog.Logger) (*postgres.Store, error) {
	if cfg.Database.URL == "" {
		return nil, errors.New("no database: give --database or set AVIARY_DATABASE (the switch lives in the shared PostgreSQL)")
	}
	// NoMigrate: a CLI of another version must not change the schema.
	return postgres.Open(ctx, cfg.Database.URL, postgres.Options{PoolSize: 1, Timeout: cfg.Database.Timeout, Logger: log, NoMigrate: true})
}

func clusterSet(ctx context.Context, cfg *conf.Config, f clusterFlags, on bool, stdout, stderr io.Writer, log *slog.Logger) error {
	st, err := openProps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := cluster.WriteSwitch(ctx, st, on); err != nil {
		return err
	}
	word := map[bool]string{true: "enabled", false: "disabled"}[on]
	fmt.Fprintf(stdout, "clustering %s (%s=%v)\n", word, cluster.SwitchProperty, on)
	if len(cfg.Cluster.Hazelcast) > 0 {
		// Only a hint: nodes re-read PostgreSQL either way.
		if err := server.AnnounceClusterSwitch(ctx, cfg.Cluster, f.prefix, on, log); err != nil {
			fmt.Fprintf(stderr, "warning: could not notify nodes over Hazelcast (they will still follow within seconds): %v\n", err)
		}
	}
	return nil
}

type statusOut struct {
	Switch       string                 `json:"switch"` // "enabled", "disabled" or "unknown"
	SwitchError  string                 `json:"switch_error,omitempty"`
	Members      []cluster.MemberStatus `json:"members"`
	MembersError string                 `json:"members_error,omitempty"`
	Hazelcast    []string               `json:"hazelcast,omitempty"`
}

func clusterStatus(ctx context.Context, cfg *conf.Config, f clusterFlags, stdout io.Writer, log *slog.Logger) error {
	out := statusOut{Switch: "unknown", Members: []cluster.MemberStatus{}, Hazelcast: cfg.Cluster.Hazelcast}
	failed := 0
	if st, err := openProps(ctx, cfg, log); err != nil {
		out.SwitchError = err.Error()
		failed++
	} else {
		on, err := cluster.ReadSwitch(ctx, storage.Properties(st))
		st.Close()
		if err != nil {
			out.SwitchError = err.Error()
			failed++
		} else if on {
			out.Switch = "enabled"
		} else {
			out.Switch = "disabled"
		}
	}
	if len(cfg.Cluster.Hazelcast) == 0 {
		out.MembersError = "no Hazelcast addresses (give --hazelcast to list members)"
	} else if ms, err := server.ClusterMembers(ctx, cfg.Cluster, f.prefix, log); err != nil {
		out.MembersError = err.Error()
		failed++
	} else {
		out.Members = ms
	}
	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printStatus(stdout, out)
	}
	if failed == 2 {
		return errors.New("neither the database nor Hazelcast could be read")
	}
	return nil
}

func printStatus(w io.Writer, s statusOut) {
	fmt.Fprintf(w, "clustering: %s\n", s.Switch)
	if s.SwitchError != "" {
		fmt.Fprintf(w, "  (switch unreadable: %s)\n", s.SwitchError)
	}
	if s.MembersError != "" {
		fmt.Fprintf(w, "members: unknown (%s)\n", s.MembersError)
		return
	}
	fmt.Fprintf(w, "members (%d, Hazelcast %s):\n", len(s.Members), strings.Join(s.Hazelcast, ","))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tLINK\tVERSION\tSESSIONS\tLOAD\tUP\tSEEN")
	now := time.Now()
	for _, m := range s.Members {
		state := "clustered"
		if !m.Clustered {
			state = "alone"
		}
		if m.Draining {
			state += ",draining"
		}
		if m.Senior {
			state += ",senior"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.2f\t%s\t%s ago\n", m.Name, state, m.LinkAddr, m.Version,
			m.Sessions, m.Load, now.Sub(m.Started).Round(time.Second), now.Sub(m.Seen).Round(100*time.Millisecond))
	}
	tw.Flush()
}
