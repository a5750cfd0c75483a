package aviary

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
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

// Narrower rules than the folder table, each with why:
//
//   - Hazelcast stays inside cluster/hazelcast: nothing else imports its
//     client (github.com/hazelcast/...), test files included, so the
//     rest of the server sees only the cluster interface.
//   - The cluster implementation is chosen in one place: besides
//     cluster/hazelcast itself, only the node's core (package server:
//     server.New, which server/assembly calls) and the test support that
//     builds nodes like it (server/servertest)
//     import cluster/hazelcast; the admin packages reach the switch and
//     the members through cluster and server.
//   - storage imports nothing of the server: only conf and wire of ours
//     (the folder table), so a module store never depends on the node.
var (
	hazelcastClient    = "github.com/hazelcast/"
	hazelcastImporters = []string{"cluster/hazelcast", "server", "server/servertest"}
)

// TestImportArrows keeps the direction of DESIGN.md's arrows: lower rows
// never import server/ or admin/. Test files may import test helpers of
// any lower or equal folder, so only non-test files are checked.
func TestImportArrows(t *testing.T) {
	eachImport(t, false, func(path, dir, p string) {
		top := strings.SplitN(dir, "/", 2)[0]
		allowed, ruled := allowedImports[top]
		if !ruled {
			return
		}
		if p == modulePath+"/cluster/hazelcast" && !slices.Contains(hazelcastImporters, dir) && !underAny(dir, hazelcastImporters[:1]) {
			t.Errorf("%s imports %s: only %v choose the cluster implementation", path, p, hazelcastImporters)
		}
		if !strings.HasPrefix(p, modulePath+"/") {
			return
		}
		target := strings.SplitN(strings.TrimPrefix(p, modulePath+"/"), "/", 2)[0]
		if (target == "admin" && dir == nodeAssembly) || (target == "internal" && testSupport(path)) {
			return
		}
		if target != top && !slices.Contains(allowed, target) {
			t.Errorf("%s imports %s: %s/ may import only %v", path, p, top, allowed)
		}
	})
}

// TestHazelcastStaysInside: no file outside cluster/hazelcast, tests
// included, imports the Hazelcast client.
func TestHazelcastStaysInside(t *testing.T) {
	eachImport(t, true, func(path, dir, p string) {
		if strings.HasPrefix(p, hazelcastClient) && !underAny(dir, []string{"cluster/hazelcast"}) {
			t.Errorf("%s imports %s: the Hazelcast client stays inside cluster/hazelcast", path, p)
		}
	})
}

// TestStorageImportsNothingOfTheServer states the storage row of the
// folder table on its own, so that widening it is a visible decision.
func TestStorageImportsNothingOfTheServer(t *testing.T) {
	if got := allowedImports["storage"]; strings.Join(got, ",") != "conf,wire" {
		t.Fatalf("storage may import %v; it must import nothing of the server (only conf and wire)", got)
	}
}

// eachImport calls fn for every import of every Go file of the module
// (test files too with tests), with the file's path and its directory in
// slash form.
func eachImport(t *testing.T, tests bool, fn func(path, dir, imp string)) {
	t.Helper()
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || (!tests && strings.HasSuffix(path, "_test.go")) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			fn(path, dir, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// underAny reports whether dir is one of roots or inside one.
func underAny(dir string, roots []string) bool {
	for _, r := range roots {
		if dir == r || strings.HasPrefix(dir, r+"/") {
			return true
		}
	}
	return false
}
