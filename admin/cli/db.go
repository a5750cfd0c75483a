package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/sqlite"
)

const dbUsage = `usage: aviary db <migrate|status> [flags]

  status    list the schema migrations and which are applied; exit status
            0 when the schema is up to date, 3 when migrations are pending
  migrate   apply pending migrations (nodes also apply them at start, under
            a PostgreSQL advisory lock, so this is for operators who want
            to migrate by hand before rolling out a new version)

They act on database.url (--database, AVIARY_DATABASE). With no URL they
report on the embedded store in data_dir, which migrates itself on open.

flags:
`

// exitPending is db status's exit code when migrations are pending.
const exitPending = 3

func init() {
	Register(Command{Name: "db", Summary: "show or apply database schema migrations", Run: DBCommand})
}

// DBCommand runs `aviary db ARGS` and returns the exit code.
func DBCommand(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return runDB(ctx, args, os.Environ(), os.Stdout, os.Stderr)
}

func runDB(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "migrate" && args[0] != "status") {
		if len(args) > 0 && args[0] != "-h" && args[0] != "--help" && args[0] != "help" {
			fmt.Fprintf(stderr, "aviary db: unknown subcommand %q\n", args[0])
		}
		fmt.Fprint(stderr, dbUsage)
		return 2
	}
	sub := args[0]
	fs, nf := storeFlags("aviary db "+sub, dbUsage, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "aviary db %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
	}
	cfg, err := loadConfig(fs, nf, environ, nil)
	if err != nil {
		fmt.Fprintf(stderr, "aviary db: configuration:\n%v\n", err)
		return 1
	}
	log := NewLogger(cfg, stderr)
	if cfg.Database.URL == "" {
		return dbEmbedded(ctx, sub, filepath.Join(cfg.DataDir, "aviary.db"), stdout, stderr)
	}
	// NoMigrate: status must change nothing; migrate applies explicitly.
	st, err := postgres.Open(ctx, cfg.Database.URL, postgres.Options{
		PoolSize: 1, Timeout: cfg.Database.Timeout, Logger: log, NoMigrate: true,
	})
	if err != nil {
		fmt.Fprintf(stderr, "aviary db %s: %v\n", sub, err)
		return 1
	}
	defer st.Close()
	fmt.Fprintf(stdout, "database: %s\n", redact(cfg.Database.URL))
	if sub == "migrate" {
		applied, err := st.Migrate(ctx)
		for _, v := range applied {
			fmt.Fprintf(stdout, "applied migration %d\n", v)
		}
		if err != nil {
			fmt.Fprintf(stderr, "aviary db migrate: %v\n", err)
			return 1
		}
		if len(applied) == 0 {
			fmt.Fprintln(stdout, "nothing to apply")
		}
	}
	status, err := st.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "aviary db %s: %v\n", sub, err)
		return 1
	}
	pending := printMigrations(stdout, status)
	if pending > 0 && sub == "status" {
		return exitPending
	}
	if pending > 0 {
		return 1
	}
	return 0
}

// printMigrations writes the status table and summary and returns how many
// migrations are pending.
func printMigrations(w io.Writer, status []postgres.MigrationStatus) int {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED AT")
	newer := 0
	for _, m := range status {
		state, at := "pending", "-"
		if m.Applied {
			state, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
		}
		if !m.Known {
			state = "applied (unknown to this binary)"
			newer++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Version, m.Name, state, at)
	}
	tw.Flush()
	pending := postgres.Pending(status)
	switch {
	case pending > 0:
		fmt.Fprintf(w, "schema: %d migration(s) pending; run `aviary db migrate` or start a node\n", pending)
	case newer > 0:
		fmt.Fprintf(w, "schema: up to date, and migrated further by a newer aviary (%d unknown migration(s))\n", newer)
	default:
		fmt.Fprintln(w, "schema: up to date")
	}
	return pending
}

func dbEmbedded(ctx context.Context, sub, path string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "database: embedded store %s\n", path)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && sub == "status" {
		fmt.Fprintln(stdout, "schema: no database yet; it is created and migrated when a node or `aviary db migrate` opens it")
		return exitPending
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		fmt.Fprintf(stderr, "aviary db %s: %v\n", sub, err)
		return 1
	}
	// The embedded store applies its migrations when it opens.
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		fmt.Fprintf(stderr, "aviary db %s: %v\n", sub, err)
		return 1
	}
	defer st.Close()
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "aviary db %s: %v\n", sub, err)
		return 1
	}
	fmt.Fprintf(stdout, "schema: version %d, up to date\n", v)
	return 0
}

// redact hides the password in a database URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
