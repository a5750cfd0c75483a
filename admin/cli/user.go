package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/storage"
)

const userUsage = `usage: aviary user <add|delete|passwd|list|lock|unlock|show> [flags] [NAME]

  add NAME      create an account (password from --password or stdin)
  delete NAME   delete an account and everything stored for it
  passwd NAME   set a new password (from --password or stdin)
  list          list accounts (--contains filters)
  lock NAME     lock an account: its sessions close on every node and its
                logins are refused (account-disabled) until unlocked
  unlock NAME   let a locked account log in again
  show NAME     the account: state, sessions, roster, offline messages
                (--json for the admin API's answer)

add, delete, passwd and list work on the store the configuration names (the
embedded store in data_dir, or database.url). Sessions of a deleted user on
a running node are closed when the node notices; use the admin API to kick
at once. lock, unlock and show need a running node: they call its admin
API (--admin, --token, or AVIARY_ADMIN_URL and AVIARY_ADMIN_TOKEN).

flags:
`

func init() {
	Register(Command{Name: "user", Summary: "add, delete, passwd or list accounts", Run: func(args []string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return runUser(ctx, args, os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	}})
}

func runUser(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	sub := args[0]
	fs, nf := storeFlags("aviary user "+sub, userUsage, stderr)
	password := fs.String("password", "", "the password (default: read one line from stdin)")
	contains := fs.String("contains", "", "list: only names containing this")
	var af apiFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "show: print the admin API's JSON")
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return 2
	}
	viaAPI := sub == "lock" || sub == "unlock" || sub == "show"
	needName := sub == "add" || sub == "delete" || sub == "passwd" || viaAPI
	switch {
	case sub != "add" && sub != "delete" && sub != "passwd" && sub != "list" && !viaAPI:
		fmt.Fprintf(stderr, "aviary user: unknown subcommand %q\n", sub)
		fmt.Fprint(stderr, userUsage)
		return 2
	case needName && len(positional) != 1:
		fmt.Fprintf(stderr, "aviary user %s: want exactly one NAME\n", sub)
		return 2
	case !needName && len(positional) != 0:
		fmt.Fprintf(stderr, "aviary user %s: unexpected argument %q\n", sub, positional[0])
		return 2
	}
	if viaAPI {
		c, err := af.client(environ)
		if err == nil {
			err = userViaAPI(ctx, c, sub, positional[0], *asJSON, stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "aviary user %s: %v\n", sub, err)
			return 1
		}
		return 0
	}
	cfg, store, code := openStore(ctx, "aviary user", fs, nf, environ, stderr)
	if store == nil {
		return code
	}
	defer store.Close()
	um := &auth.Users{Store: store, Domain: cfg.Domain, Iterations: cfg.C2S.SCRAMIterations, FASTTokens: store.KeyValue(auth.FASTStore)}
	// failed reports an error of the subcommand on the user named.
	failed := func(err error) int {
		if errors.Is(err, storage.ErrNotFound) {
			fmt.Fprintf(stderr, "aviary user %s: no user %q\n", sub, positional[0])
		} else {
			fmt.Fprintf(stderr, "aviary user %s: %v\n", sub, err)
		}
		return 1
	}

	readPassword := func() (string, bool) {
		if *password != "" {
			return *password, true
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" || (err != nil && !errors.Is(err, io.EOF)) {
			fmt.Fprintln(stderr, "aviary user: no password given (use --password or write it to stdin)")
			return "", false
		}
		return line, true
	}

	switch sub {
	case "add":
		pw, ok := readPassword()
		if !ok {
			return 1
		}
		if err := um.CreateUser(ctx, positional[0], pw); err != nil {
			fmt.Fprintf(stderr, "aviary user add: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "created %s@%s\n", mustName(positional[0], cfg.Domain), cfg.Domain)
	case "passwd":
		pw, ok := readPassword()
		if !ok {
			return 1
		}
		if err := um.SetPassword(ctx, positional[0], pw); err != nil {
			return failed(err)
		}
		fmt.Fprintf(stdout, "password changed for %s@%s\n", mustName(positional[0], cfg.Domain), cfg.Domain)
	case "delete":
		if err := um.DeleteUser(ctx, positional[0]); err != nil {
			return failed(err)
		}
		fmt.Fprintf(stdout, "deleted %s@%s\n", mustName(positional[0], cfg.Domain), cfg.Domain)
	case "list":
		const page = 500
		for off := 0; ; off += page {
			names, err := store.ListUsers(ctx, *contains, page, off)
			if err != nil {
				fmt.Fprintf(stderr, "aviary user list: %v\n", err)
				return 1
			}
			for _, n := range names {
				fmt.Fprintln(stdout, n)
			}
			if len(names) < page {
				break
			}
		}
	}
	return 0
}

func mustName(name, domain string) string {
	if n, err := auth.NormalizeUsername(name, domain); err == nil {
		return n
	}
	return name
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("user add alice --password x" as well as "user add
// --password x alice") and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
