package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
)

// Compiling a Go guest to machine code is the slow part of loading a
// plugin: about 3 s for the 2.3 MB examples on the 2-core test machine,
// and 40 s under the race detector (wazero's compiler is Go code, so -race
// instruments it). wazero keeps a compiled module only while some
// CompiledModule refers to it: when a node retired version 1 for version 2
// and then rolled back, version 1 was compiled again, in the middle of a
// rollback. So:
//
//   - a Runtime holds one CompiledModule per artifact (by checksum) while
//     any plugin loaded from it runs, and keeps the last one each plugin
//     stopped using (its rollback target) until another replaces it;
//   - with Options.CacheDir, compiled code also goes to disk (wazero's
//     file cache, written with rename, keyed by the module's hash, the
//     wazero version and the CPU): a restarted node, or another test
//     process, loads it in milliseconds instead of compiling.

// modules is a Runtime's compiled artifacts.
type modules struct {
	mu   sync.Mutex
	byCS map[string]*compiledModule // by checksum
	idle map[string]string          // plugin name → checksum kept for it with no user
}

type compiledModule struct {
	cm   wazero.CompiledModule
	name string // the plugin it was last loaded for
	refs int    // loaded plugins using it
}

// acquire returns the compiled module for artifact, compiling it unless
// this runtime holds it already.
func (r *Runtime) acquire(ctx context.Context, name, checksum string, artifact []byte) (wazero.CompiledModule, error) {
	r.mods.mu.Lock()
	if m := r.mods.byCS[checksum]; m != nil {
		m.refs++
		if r.mods.idle[m.name] == checksum {
			delete(r.mods.idle, m.name)
		}
		m.name = name
		r.mods.mu.Unlock()
		return m.cm, nil
	}
	r.mods.mu.Unlock()
	// Compile outside the lock: seconds, and other plugins may load
	// meanwhile. Two loads of one new artifact at once compile it twice
	// (wazero shares the machine code); the second keeps the first's.
	cm, err := r.compile(ctx, artifact)
	if err != nil && r.opts.CacheDir != "" && Validate(ctx, artifact) == nil {
		// The artifact is fine, so the file cache is not: wazero returns
		// the error of an unreadable cached entry instead of compiling.
		r.opts.Logger.Warn("plugin compilation cache unreadable; clearing it and compiling again", "dir", r.opts.CacheDir, "err", err)
		clearCacheDir(r.opts.CacheDir)
		cm, err = r.compile(ctx, artifact)
	}
	if err != nil {
		return nil, err
	}
	r.mods.mu.Lock()
	defer r.mods.mu.Unlock()
	if m := r.mods.byCS[checksum]; m != nil {
		m.refs++
		cm.Close(ctx)
		return m.cm, nil
	}
	r.mods.byCS[checksum] = &compiledModule{cm: cm, name: name, refs: 1}
	return cm, nil
}

// release gives back a plugin's hold on its compiled module. The last
// module a plugin name stopped using stays compiled (a rollback loads it
// at once); the one it kept before is closed.
func (r *Runtime) release(ctx context.Context, checksum string) {
	r.mods.mu.Lock()
	defer r.mods.mu.Unlock()
	m := r.mods.byCS[checksum]
	if m == nil {
		return
	}
	if m.refs--; m.refs > 0 {
		return
	}
	if old, ok := r.mods.idle[m.name]; ok && old != checksum {
		if om := r.mods.byCS[old]; om != nil && om.refs == 0 {
			om.cm.Close(ctx)
			delete(r.mods.byCS, old)
		}
	}
	r.mods.idle[m.name] = checksum
}

// Compiled reports how many artifacts this runtime holds compiled, for
// tests and metrics.
func (r *Runtime) Compiled() int {
	r.mods.mu.Lock()
	defer r.mods.mu.Unlock()
	return len(r.mods.byCS)
}

// fileCaches are the on-disk compilation caches by directory: wazero
// shares compiled code through one cache value, so every Runtime of the
// process with that directory gets the same one.
var (
	fileCachesMu sync.Mutex
	fileCaches   = map[string]wazero.CompilationCache{}
)

// cacheFor returns the compilation cache for dir ("" is the process's
// in-memory one).
func cacheFor(dir string) (wazero.CompilationCache, error) {
	if dir == "" {
		return compilationCache, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fileCachesMu.Lock()
	defer fileCachesMu.Unlock()
	if c := fileCaches[abs]; c != nil {
		return c, nil
	}
	c, err := wazero.NewCompilationCacheWithDir(abs)
	if err != nil {
		return nil, fmt.Errorf("runtime: compilation cache %s: %w", abs, err)
	}
	fileCaches[abs] = c
	return c, nil
}

// clearCacheDir removes the compiled entries wazero keeps under dir (in
// its per-version subdirectories), leaving anything else alone.
func clearCacheDir(dir string) {
	subs, _ := filepath.Glob(filepath.Join(dir, "wazero-*"))
	for _, sub := range subs {
		entries, _ := os.ReadDir(sub)
		for _, e := range entries {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				_ = os.Remove(filepath.Join(sub, e.Name()))
			}
		}
	}
}
