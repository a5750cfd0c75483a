package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/builtin"
)

func init() {
	Register(Command{Name: "config", Summary: "config check FILE: validate a configuration file", Run: func(args []string) int {
		return runConfig(args, os.Environ(), os.Stdout, os.Stderr)
	}})
}

func runConfig(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: aviary config check FILE")
		return 2
	}
	cfg, err := conf.LoadWith(args[1], environ, nil)
	if err == nil {
		// Plugin settings are checked against each built-in's schema.
		if errs := plugins.ValidateSettings(cfg, builtin.New(cfg)); len(errs) > 0 {
			for _, e := range errs {
				e.File = args[1]
			}
			err = errs
		}
	}
	if err != nil {
		var errs conf.Errors
		var one *conf.Error
		switch {
		case errors.As(err, &errs):
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
			}
		case errors.As(err, &one):
			fmt.Fprintln(stderr, one.Error())
		default:
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[1])
	return 0
}
