package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/assembly"
	"github.com/aviary-im/aviary/server/gctune"
	"github.com/aviary-im/aviary/server/nodelog"
	"github.com/aviary-im/aviary/storage"
)

func init() {
	Register(Command{Name: "serve", Summary: "run the server", Run: func(args []string) int {
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
		return runServe(context.Background(), args, os.Environ(), os.Stderr, sigs)
	}})
}

// awaitStop waits until the node should stop: ctx ends, SIGINT, or
// SIGTERM. The first SIGTERM drains the node instead when it can
// (clustered, with another node to take the clients: balance.Service
// DrainOnSignal); the drain ends with a SIGTERM of its own
// (stopWhenDrained), and a second SIGTERM or a SIGINT stops the node at
// once. SIGHUP runs reload and the node goes on.
func awaitStop(ctx context.Context, sigs <-chan os.Signal, n *assembly.Node, reload func(), log *slog.Logger) {
	draining := false
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload()
				continue
			}
			if sig != syscall.SIGTERM || draining {
				log.Info("aviary serve: signal", "signal", sig.String())
				return
			}
			if !n.Balance.DrainOnSignal(ctx) {
				log.Info("aviary serve: SIGTERM")
				return
			}
			draining = true
			log.Info("aviary serve: SIGTERM: draining the node; it stops when its clients have moved or at balance.drain_deadline (SIGTERM again or SIGINT stops it now)")
		}
	}
}

// storeFlags returns the flag set of a command that works on the store
// (`aviary user add`...), with the flags every such command shares; usage
// is printed before the flags' defaults.
func storeFlags(name, usage string, stderr io.Writer) (*flag.FlagSet, *nodeFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var nf nodeFlags
	nf.register(fs)
	return fs, &nf
}

// nodeFlags are the flags every command touching the store shares.
type nodeFlags struct {
	config, domain, dataDir, database, logLevel string
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML configuration `file`")
	fs.StringVar(&f.domain, "domain", "", "XMPP domain to serve (domain)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data `directory` for the embedded store and certificates (data_dir)")
	fs.StringVar(&f.database, "database", "", "PostgreSQL `URL`; empty uses the embedded store (database.url)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (log_level)")
}

// apply sets the flags that were given on the command line; they win over
// the file and the environment.
func (f *nodeFlags) apply(fs *flag.FlagSet, c *conf.Config) {
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "domain":
			c.Domain = f.domain
		case "data-dir":
			c.DataDir = f.dataDir
			c.Plugins.Dir = "" // follow the data dir unless set in the file
		case "database":
			c.Database.URL = f.database
		case "log-level":
			c.LogLevel = f.logLevel
		}
	})
}

func loadConfig(fs *flag.FlagSet, nf *nodeFlags, environ []string, extra func(*conf.Config)) (*conf.Config, error) {
	return conf.LoadWith(nf.config, environ, func(c *conf.Config) {
		nf.apply(fs, c)
		if extra != nil {
			extra(c)
		}
	})
}

// openStore loads the configuration of a store command (aviary user,
// aviary cert) and opens the store it names. On failure it has told
// stderr why, prefixed with cmd, and returns the exit code.
func openStore(ctx context.Context, cmd string, fs *flag.FlagSet, nf *nodeFlags, environ []string, stderr io.Writer) (*conf.Config, storage.Store, int) {
	cfg, err := loadConfig(fs, nf, environ, nil)
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration:\n%v\n", cmd, err)
		return nil, nil, 1
	}
	store, err := server.OpenStore(ctx, cfg, NewLogger(cfg, stderr))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return nil, nil, 1
	}
	return cfg, store, 0
}

// NewLogger returns the logger the configuration asks for, on w: the
// node's handler (server/nodelog), whose level the console and a reload
// change while the node runs and whose newest records the console's log
// viewer shows.
func NewLogger(cfg *conf.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	level := new(slog.LevelVar)
	level.Set(lvl)
	return slog.New(nodelog.New(w, cfg.LogFormat, level, nodelog.NewRing(0, 0)))
}

// reloader applies, on SIGHUP, the configuration `aviary serve` was
// started with, read again (file, environment and flags), when it differs
// from the running one only in conf.Live keys: it is checked whole first
// and applied through the node's ChangeLive, as the console's changes
// are; on any error the node runs on as it was.
type reloader struct {
	load func() (*conf.Config, error)
	node *assembly.Node
	log  *slog.Logger
}

func (r *reloader) reload() {
	err := r.apply()
	if err != nil {
		r.log.Error("aviary serve: configuration not reloaded; the node runs on as before", "err", err)
	}
}

func (r *reloader) apply() error {
	next, err := r.load()
	if err != nil {
		return err
	}
	changed, err := conf.CheckReload(r.node.LiveConfig(), next)
	if err != nil {
		return err
	}
	changes := map[string]string{}
	for _, k := range changed {
		if changes[k], err = next.Get(k); err != nil {
			return err
		}
	}
	if changed, err = r.node.ChangeLive(changes, nil); err != nil {
		return err
	}
	r.log.Info("aviary serve: configuration reloaded", "changed", strings.Join(changed, ","))
	return nil
}

// serveConfig parses `aviary serve` flags and loads the configuration:
// flags win over the environment, which wins over the file.
func serveConfig(args, environ []string, stderr io.Writer) (*conf.Config, int) {
	load, code := serveLoader(args, environ, stderr)
	if load == nil {
		return nil, code
	}
	return loadOrReport(load, stderr)
}

func loadOrReport(load func() (*conf.Config, error), stderr io.Writer) (*conf.Config, int) {
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "aviary serve: configuration:\n%v\n", err)
		return nil, 1
	}
	return cfg, 0
}

// serveLoader parses `aviary serve` flags and returns what loads the
// configuration they name (again on each reload); nil and the exit code
// when the flags are wrong.
func serveLoader(args, environ []string, stderr io.Writer) (func() (*conf.Config, error), int) {
	fs := flag.NewFlagSet("aviary serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.register(fs)
	c2sListen := fs.String("c2s-listen", "", "STARTTLS client listener `addr`, or off (c2s.listen)")
	c2sTLS := fs.String("c2s-tls-listen", "", "direct-TLS client listener `addr`, or off (c2s.tls_listen)")
	allowReg := fs.Bool("allow-registration", false, "allow in-band registration of new accounts (c2s.allow_registration)")
	applyServeFlags := registerServeFlags(fs)
	var sets [][2]string
	fs.Func("set", "set any configuration `key=value` (dotted key as in the YAML file, value as for its AVIARY_* variable, e.g. c2s.auth_timeout=10s); repeatable; the named flags win", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("want key=value, got %q", s)
		}
		if err := conf.Default().Set(k, v); err != nil {
			return err
		}
		sets = append(sets, [2]string{k, v})
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "aviary serve: unexpected argument %q\n", fs.Arg(0))
		return nil, 2
	}
	return func() (*conf.Config, error) {
		return loadConfig(fs, &nf, environ, func(c *conf.Config) {
			for _, kv := range sets {
				_ = c.Set(kv[0], kv[1]) // checked while parsing
			}
			fs.Visit(func(fl *flag.Flag) {
				switch fl.Name {
				case "c2s-listen":
					c.C2S.Listen = *c2sListen
				case "c2s-tls-listen":
					c.C2S.TLSListen = *c2sTLS
				case "allow-registration":
					c.C2S.AllowRegistration = *allowReg
				}
			})
			applyServeFlags(c)
		})
	}, 0
}

// runServe runs a node until ctx ends or, with sigs, a signal says so
// (see awaitStop).
func runServe(ctx context.Context, args, environ []string, stderr io.Writer, sigs <-chan os.Signal) int {
	load, code := serveLoader(args, environ, stderr)
	if load == nil {
		return code
	}
	cfg, code := loadOrReport(load, stderr)
	if cfg == nil {
		return code
	}
	log := NewLogger(cfg, stderr)
	slog.SetDefault(log)
	gctune.Start(int64(cfg.Runtime.GCMinHeadroomMB)<<20, log)

	n, err := assembly.New(cfg, log, stopWhenDrained(log))
	if err != nil {
		log.Error("aviary serve: building the node", "err", err)
		return 1
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = n.Start(startCtx)
	cancel()
	if err != nil {
		log.Error("aviary serve: starting", "err", err)
		return 1
	}
	logReady(log, n, cfg.Domain, cfg.Admin.Admins)
	rl := &reloader{load: load, node: n, log: log}
	awaitStop(ctx, sigs, n, rl.reload, log)
	log.Info("aviary serve: shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Stop(stopCtx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("aviary serve: stopping", "err", err)
		return 1
	}
	return 0
}
