package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aviary-im/aviary/server/certs"
	"github.com/aviary-im/aviary/storage"
)

const certUsage = `usage: aviary cert <import|list|delete> [flags] [DIR|ID]

  import DIR   check and store the certificates in DIR for every node:
               fullchain.pem and privkey.pem as certbot writes them (or
               cert.pem, chain.pem and privkey.pem or key.pem), in DIR or
               in each of its subdirectories (certbot's live/ directory)
  list         the stored certificates: names, source, issuer, expiry
  delete ID    remove a stored certificate (ID as list shows it)

They work on the store the configuration names (database.url, or the
embedded store in data_dir). Running nodes serve an imported certificate
at the next handshake, without a restart: on PostgreSQL within seconds,
on the embedded store within a minute. A stored certificate wins over
tls.cert_file and the self-signed one for the names it covers; with
tls.acme on, ACME renews it when it is due like its own.

flags:
`

func init() {
	Register(Command{Name: "cert", Summary: "import, list or delete the certificates every node serves", Run: func(args []string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return runCert(ctx, args, os.Environ(), os.Stdout, os.Stderr)
	}})
}

func runCert(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, certUsage)
		return 2
	}
	sub := args[0]
	fs, nf := storeFlags("aviary cert "+sub, certUsage, stderr)
	jsonOut := fs.Bool("json", false, "list: print JSON")
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return 2
	}
	switch {
	case sub != "import" && sub != "list" && sub != "delete":
		fmt.Fprintf(stderr, "aviary cert: unknown subcommand %q\n", sub)
		fmt.Fprint(stderr, certUsage)
		return 2
	case sub == "list" && len(positional) != 0:
		fmt.Fprintf(stderr, "aviary cert list: unexpected argument %q\n", positional[0])
		return 2
	case sub != "list" && len(positional) != 1:
		fmt.Fprintf(stderr, "aviary cert %s: want exactly one %s\n", sub, map[string]string{"import": "DIR", "delete": "ID"}[sub])
		return 2
	}
	cfg, store, code := openStore(ctx, "aviary cert", fs, nf, environ, stderr)
	if store == nil {
		return code
	}
	defer store.Close()
	st := certs.NewDBStore(store)
	now := time.Now()

	switch sub {
	case "import":
		bundles, err := certs.ReadDir(positional[0])
		if err != nil {
			fmt.Fprintf(stderr, "aviary cert import: %v\n", err)
			return 1
		}
		// Check every certificate before storing any.
		failed := false
		for _, b := range bundles {
			c, err := certs.ParsePEM(b.Chain, b.Key, now)
			if err == nil {
				err = certs.ForDomain(c, cfg.Domain)
			}
			if err != nil {
				fmt.Fprintf(stderr, "aviary cert import: %s: %v\n", b.Dir, err)
				failed = true
			}
		}
		if failed {
			fmt.Fprintln(stderr, "aviary cert import: nothing imported")
			return 1
		}
		for _, b := range bundles {
			c, err := certs.Put(ctx, st, b.Chain, b.Key, certs.SourceImported, "", now)
			if err != nil {
				fmt.Fprintf(stderr, "aviary cert import: %s: %v\n", b.Dir, err)
				return 1
			}
			fmt.Fprintf(stdout, "imported %s: %s, issued by %s, expires %s (%s)\n", c.ID, strings.Join(c.Names, ", "),
				c.Issuer, c.NotAfter.UTC().Format(time.RFC3339), left(c.NotAfter, now))
			if why := certs.Untrusted(c, now); why != "" {
				fmt.Fprintf(stderr, "aviary cert import: warning: %s: clients that trust the usual certificate authorities will refuse it: %s\n", c.ID, why)
			}
			if c.NotAfter.Sub(now) < cfg.TLS.ACME.RenewBefore {
				fmt.Fprintf(stderr, "aviary cert import: warning: %s expires in %s\n", c.ID, left(c.NotAfter, now))
			}
		}
	case "list":
		list, bad, err := certs.List(ctx, st)
		if err != nil {
			fmt.Fprintf(stderr, "aviary cert list: %v\n", err)
			return 1
		}
		for _, e := range bad {
			fmt.Fprintf(stderr, "aviary cert list: %v\n", e)
		}
		if *jsonOut {
			infos := []certs.Info{}
			for _, c := range list {
				infos = append(infos, c.Info)
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(infos)
			return 0
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "no stored certificates: nodes serve tls.cert_file or their self-signed certificate")
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAMES\tSOURCE\tISSUER\tEXPIRES\t")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (%s)\t\n", c.ID, strings.Join(c.Names, ","), c.Source, c.Issuer,
				c.NotAfter.UTC().Format(time.RFC3339), left(c.NotAfter, now))
		}
		_ = tw.Flush()
	case "delete":
		id := strings.ToLower(positional[0])
		if err := certs.Delete(ctx, st, id); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				fmt.Fprintf(stderr, "aviary cert delete: no stored certificate %q (see aviary cert list)\n", id)
			} else {
				fmt.Fprintf(stderr, "aviary cert delete: %v\n", err)
			}
			return 1
		}
		fmt.Fprintf(stdout, "deleted %s\n", id)
	}
	return 0
}

// left says how long until t, in days when that is more than two.
func left(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d < 0:
		return "expired"
	case d > 48*time.Hour:
		return fmt.Sprintf("in %d days", int(d/(24*time.Hour)))
	}
	return "in " + d.Round(time.Minute).String()
}
