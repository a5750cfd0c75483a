// Command aviary is a clustered XMPP server. See README.md.
package main

import (
	"os"

	"github.com/aviary-im/aviary/admin/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
