package cli

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

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
func VersionString() string {
	v := "aviary " + xep0092.Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v + " " + runtime.Version()
}
