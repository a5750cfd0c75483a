// Package exampletest builds the example WebAssembly plugins for tests,
// once per source version for the whole machine: several packages' tests
// need the same modules, and linking a Go wasip1 module takes seconds.
// Modules are cached under the user cache directory, keyed by a hash of the
// Go version and every source file that goes into them.
//
// CompiledDir is where tests keep the machine code the plugin runtime
// compiles from them (runtime.Options.CacheDir): compiling one takes
// seconds, and 40 s under the race detector, for every test that loads it.
package exampletest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// Build returns the path of the module built from pkgDir, a directory
// relative to the module root such as "plugins/examples/wordfilter/v1".
func Build(t testing.TB, pkgDir string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	key, err := sourceKey(root, pkgDir)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "aviary-wasm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, strings.ReplaceAll(pkgDir, "/", "-")+"-"+key[:16]+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	tmp, err := os.CreateTemp(dir, "build-*.wasm")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", tmp.Name(), "./"+pkgDir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp.Name())
		t.Fatalf("building %s: %v\n%s", pkgDir, err, b)
	}
	// Rename is atomic: packages building the same module at once are fine.
	if err := os.Rename(tmp.Name(), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// CompiledDir returns the directory tests share for compiled plugins
// (runtime.Options.CacheDir, a node's plugins.dir/compiled): wazero keys
// each entry by the module's hash, its own version and the CPU, and
// writes it with a rename, so every test process may use it at once.
func CompiledDir(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "aviary-wasm", "compiled")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("exampletest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// sourceKey hashes the Go version and the sources of the guest: its own
// directory, the SDK, the wire package and go.mod/go.sum.
func sourceKey(root, pkgDir string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version())
	var files []string
	for _, d := range []string{pkgDir, "plugins/sdk", "wire"} {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	files = append(files, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, f[len(root):], len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
