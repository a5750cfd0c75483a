// Package cli is the aviary command line: serve, user, db, cluster, plugin,
// session, node, config check, version.
package cli

import (
	"fmt"
	"os"
)

// Main runs a subcommand and returns the process exit code.
func Main(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: aviary <serve|user|db|cluster|plugin|session|node|config|version> ...")
		return 2
	}
	fmt.Fprintf(os.Stderr, "aviary: unknown command %q\n", args[0])
	return 2
}
