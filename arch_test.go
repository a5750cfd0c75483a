package aviary

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "github.com/aviary-im/aviary"

// allowedImports is DESIGN.md's folder table: which of our top-level folders
// each folder may import. wire is the shared leaf (the XML element and
// stream reader every part passes around); it imports nothing of ours.
var allowedImports = map[string][]string{
	"wire":    {},
	"conf":    {},
	"storage": {"conf", "wire"},
	"cluster": {"conf", "storage", "wire"},
	"s2s":     {"conf", "wire"},
	"plugins": {"conf", "storage", "wire"},
	"server":  {"conf", "storage", "cluster", "s2s", "plugins", "wire"},
	"admin":   {"conf", "storage", "cluster", "s2s", "plugins", "server", "wire"},
	// cmd/aviary is the binary (the CLI in admin/cli); cmd/aviary-bench
	// the load tool, which speaks to a node over the network only.
	"cmd": {"admin", "wire"},
	// internal/testutil holds helpers for tests of every folder (CheckFor):
	// it imports nothing of ours, and only tests and test support packages
	// (servertest, pgtest...: see testSupport) import it.
	"internal": {},
}

// nodeAssembly is the one package of server/ that imports admin/: it
// builds the whole node, admin console included (DESIGN.md). Every other
// package of server/ stays below admin/ (the folder table).
const nodeAssembly = "server/assembly"

// testSupport reports whether the non-test file at path belongs to a test
// support package (server/servertest, storage/postgres/pgtest...), whose
// name ends in "test" by convention: these may import internal/testutil.
func testSupport(path string) bool {
	return strings.HasSuffix(filepath.Base(filepath.Dir(path)), "test")
}

// TestImportArrows keeps the direction of DESIGN.md's arrows: lower rows
// never import server/ or admin/. Test files may import test helpers of
// any lower or equal folder, so only non-test files are checked.
func TestImportArrows(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		top := strings.SplitN(filepath.ToSlash(path), "/", 2)[0]
		allowed, ruled := allowedImports[top]
		if !ruled {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, modulePath+"/") {
				continue
			}
			target := strings.SplitN(strings.TrimPrefix(p, modulePath+"/"), "/", 2)[0]
			if target == top || (target == "admin" && filepath.ToSlash(filepath.Dir(path)) == nodeAssembly) ||
				(target == "internal" && testSupport(path)) {
				continue
			}
			ok := false
			for _, a := range allowed {
				if a == target {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s: %s/ may import only %v", path, p, top, allowed)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
