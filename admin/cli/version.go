package cli

import (
	"fmt"
	"os"

	xep0092 "github.com/aviary-im/aviary/plugins/version"
)

// The release version lives in plugins/version (XEP-0092 answers with it,
// nodes publish it in the cluster): set it at build time with
// -ldflags "-X github.com/aviary-im/aviary/plugins/version.Version=1.2.3".

func init() {
	Register(Command{Name: "version", Summary: "print the version", Run: func(args []string) int {
		fmt.Fprintln(os.Stdout, VersionString())
		return 0
	}})
}

// VersionString is the version with the VCS revision when known.
func VersionString() string { return xep0092.Build().String() }
