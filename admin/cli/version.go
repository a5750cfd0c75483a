package cli

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// Version is the release version, set at build time with
// -ldflags "-X github.com/aviary-im/aviary/admin/cli.Version=1.2.3".
var Version = "dev"

func init() {
	Register(Command{Name: "version", Summary: "print the version", Run: func(args []string) int {
		fmt.Fprintln(os.Stdout, VersionString())
		return 0
	}})
}

// VersionString is the version with the VCS revision when known.
func VersionString() string {
	v := "aviary " + Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v + " " + runtime.Version()
}
