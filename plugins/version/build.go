package version

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// BuildInfo describes the running binary: the release Version (set with
// -ldflags, "dev" otherwise) and what the Go toolchain stamped into it
// (runtime/debug.ReadBuildInfo): the VCS revision and commit time, and
// whether the working tree had uncommitted changes. `go build` and `go
// install` in a git checkout stamp them; `go run` and test binaries do not.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

var readBuild = sync.OnceValue(func() BuildInfo {
	b := BuildInfo{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	return b
})

// Build returns the running binary's build information.
func Build() BuildInfo {
	b := readBuild()
	b.Version = Version // may be set after the first call (tests)
	return b
}

// String is the version, the short revision when known (with "+dirty"
// when the tree was modified) and the Go version:
// "aviary 1.2.0 (0123456789ab) go1.26.8".
func (b BuildInfo) String() string {
	v := "aviary " + b.Version
	if len(b.Revision) >= 12 {
		rev := b.Revision[:12]
		if b.Modified {
			rev += "+dirty"
		}
		v += " (" + rev + ")"
	}
	return v + " " + b.GoVersion
}
