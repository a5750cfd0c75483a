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
	"sync"
	"syscall"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/gctune"
	"github.com/aviary-im/aviary/server/nodelog"
	"github.com/aviary-im/aviary/storage"
)

func init() {
	Register(Command{Name: "serve", Summary: "run the server", Run: func(args []string) int {
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		return runServe(context.Background(), args, os.Environ(), os.Stderr, sigs)
	}})
}

// SignalDrainer is a service that can drain the node when `aviary serve`
// gets SIGTERM (server/balance). DrainOnSignal returns true when a drain
// runs (the process then waits for it to end, which stops the node), and
// false when the node should stop at once (alone in the cluster, or the
// drain already ended).
type SignalDrainer interface {
	DrainOnSignal(ctx context.Context) bool
}

// awaitStop waits until the node should stop: ctx ends, SIGINT, or
// SIGTERM. The first SIGTERM drains the node instead when one of its
// services can (clustered, with another node to take the clients); the
// drain ends with a SIGTERM of its own (admin/cli stopWhenDrained), and a
// second SIGTERM or a SIGINT stops the node at once.
func awaitStop(ctx context.Context, sigs <-chan os.Signal, n *server.Node, log *slog.Logger) {
	draining := false
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig != syscall.SIGTERM || draining {
				log.Info("aviary serve: signal", "signal", sig.String())
				return
			}
			for _, s := range n.Services() {
				if d, ok := s.(SignalDrainer); ok && d.DrainOnSignal(ctx) {
					draining = true
					break
				}
			}
			if !draining {
				log.Info("aviary serve: SIGTERM")
				return
			}
			log.Info("aviary serve: SIGTERM: draining the node; it stops when its clients have moved or at balance.drain_deadline (SIGTERM again or SIGINT stops it now)")
		}
	}
}

// ServeOption contributes server options to `aviary serve` (services such
// as the admin console, HTTP connectors or s2s). Register it from init in
// the file that adds the feature.
type ServeOption func(cfg *conf.Config, log *slog.Logger) ([]server.Option, error)

var (
	serveOptMu   sync.Mutex
	serveOptions []ServeOption
)

// RegisterServeOption adds fn to what `aviary serve` builds the node with.
func RegisterServeOption(fn ServeOption) {
	serveOptMu.Lock()
	serveOptions = append(serveOptions, fn)
	serveOptMu.Unlock()
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
// node's handler (server/nodelog), whose level the console changes while
// the node runs and whose newest records the console's log viewer shows.
func NewLogger(cfg *conf.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	level := new(slog.LevelVar)
	level.Set(lvl)
	return slog.New(nodelog.New(w, cfg.LogFormat, level, nodelog.NewRing(0, 0)))
}

// serveConfig parses `aviary serve` flags and loads the configuration:
// flags win over the environment, which wins over the file.
func serveConfig(args, environ []string, stderr io.Writer) (*conf.Config, int) {
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
	cfg, err := loadConfig(fs, &nf, environ, func(c *conf.Config) {
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
	if err != nil {
		fmt.Fprintf(stderr, "aviary serve: configuration:\n%v\n", err)
		return nil, 1
	}
	return cfg, 0
}

// nodeOptions is what `aviary serve` builds a node with: log and every
// registered ServeOption.
func nodeOptions(cfg *conf.Config, log *slog.Logger) ([]server.Option, error) {
	opts := []server.Option{server.WithLogger(log)}
	serveOptMu.Lock()
	extra := append([]ServeOption(nil), serveOptions...)
	serveOptMu.Unlock()
	for _, fn := range extra {
		o, err := fn(cfg, log)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o...)
	}
	return opts, nil
}

// runServe runs a node until ctx ends or, with sigs, a signal says so
// (see awaitStop).
func runServe(ctx context.Context, args, environ []string, stderr io.Writer, sigs <-chan os.Signal) int {
	cfg, code := serveConfig(args, environ, stderr)
	if cfg == nil {
		return code
	}
	log := NewLogger(cfg, stderr)
	slog.SetDefault(log)
	gctune.Start(int64(cfg.Runtime.GCMinHeadroomMB)<<20, log)

	opts, err := nodeOptions(cfg, log)
	if err != nil {
		log.Error("aviary serve: setting up", "err", err)
		return 1
	}
	n, err := server.New(cfg, opts...)
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
	awaitStop(ctx, sigs, n, log)
	log.Info("aviary serve: shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Stop(stopCtx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("aviary serve: stopping", "err", err)
		return 1
	}
	return 0
}
