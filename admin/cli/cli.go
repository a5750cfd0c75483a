// Package cli is the aviary command line (the binary is cmd/aviary). Each
// subcommand lives in its own file and registers itself in init with
// Register, so a new subcommand is a new file: serve, user, config and
// version are here; db, cluster, plugin and others are added beside them.
// The package holds commands only: `aviary serve` reads the configuration
// and runs the node server/assembly builds.
package cli

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
)

// Command is one `aviary NAME ...` subcommand.
type Command struct {
	// Name is the word after aviary.
	Name string
	// Summary is one line for the usage text.
	Summary string
	// Run gets the arguments after the name and returns the exit code.
	Run func(args []string) int
}

var (
	cmdMu    sync.RWMutex
	commands = map[string]Command{}
)

// Register adds a subcommand; call it from init. A duplicate or empty name
// panics.
func Register(c Command) {
	if c.Name == "" || c.Run == nil {
		panic("cli: Register needs a name and a Run function")
	}
	cmdMu.Lock()
	defer cmdMu.Unlock()
	if _, dup := commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// Main runs a subcommand and returns the process exit code.
func Main(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmdMu.RLock()
	c, ok := commands[args[0]]
	cmdMu.RUnlock()
	if !ok {
		fmt.Fprintf(os.Stderr, "aviary: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	return c.Run(args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: aviary <command> [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	cmdMu.RLock()
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	cmdMu.RUnlock()
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w, "\nRun 'aviary <command> -h' for a command's flags.")
}
