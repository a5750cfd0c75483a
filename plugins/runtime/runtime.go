// Package runtime loads third-party plugins at run time: WebAssembly
// modules run by wazero, sandboxed, replaceable and unloadable without a
// restart. A loaded module is a plugins.Interceptor like any built-in.
//
// Why WebAssembly: one artifact runs on every node whatever its OS and CPU;
// a plugin can only touch what the host ABI hands it (no files, no
// network); a trap or a runaway loop is caught by the host (the call is
// cancelled at its deadline and the instance replaced) and never takes the
// node down; and loading or unloading is just compiling or closing a module.
// The price is a copy of the stanza in and out per call — see
// BenchmarkIntercept for the figure.
//
// The ABI (module "aviary" imports, and exports the guest provides) is
// documented in plugins/GUIDE.md and implemented for Go guests by plugins/sdk.
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Errors.
var (
	// ErrBadModule means the artifact is not a usable plugin module.
	ErrBadModule = errors.New("runtime: not a valid plugin module")
	// ErrPluginFailed means the plugin trapped or timed out too often and
	// was disabled; stanzas pass through untouched.
	ErrPluginFailed = errors.New("runtime: plugin disabled after repeated failures")
)

// Options tune the runtime.
type Options struct {
	// CallTimeout bounds one call into a plugin. Default 1s: far above a
	// healthy call (tens of microseconds), so only a runaway guest reaches
	// it, not one starved of CPU on a loaded node.
	CallTimeout time.Duration
	// MaxFailures in FailureWindow disable a plugin. Defaults 5 in 1 minute.
	MaxFailures   int
	FailureWindow time.Duration
	// MemoryLimitPages caps guest memory (64 KiB pages). Default 1024 (64 MiB).
	MemoryLimitPages uint32
	// What the host does for a guest while it handles one stanza is bounded
	// apart from the guest's memory, since the host copies what it is
	// handed: MaxHostCalls host calls (default 64) copying MaxHostBytes
	// bytes out of guest memory in all (default 1 MiB), each sent or
	// replacement stanza at most MaxStanzaBytes (default 256 KiB). A call
	// past a bound is refused (see limits.go). Config:
	// plugins.wasm.max_host_calls, plugins.wasm.max_host_bytes and
	// c2s.max_stanza_bytes.
	MaxHostCalls   int
	MaxHostBytes   int
	MaxStanzaBytes int
	// MaxKVBytes bounds one plugin's key-value store, keys plus values
	// (plugins.wasm.max_kv_bytes). Default 1 MiB.
	MaxKVBytes int
	// CacheDir keeps compiled plugins on disk so that a restarted node
	// loads them without compiling again (see compiled.go). The node uses
	// plugins.dir/compiled. Default "": compiled code is kept in memory
	// only.
	CacheDir string
	Logger   *slog.Logger
}

func (o *Options) defaults() {
	if o.CallTimeout <= 0 {
		o.CallTimeout = time.Second
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 5
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = time.Minute
	}
	if o.MemoryLimitPages == 0 {
		o.MemoryLimitPages = 1024
	}
	if o.MaxHostCalls <= 0 {
		o.MaxHostCalls = 64
	}
	if o.MaxStanzaBytes <= 0 {
		o.MaxStanzaBytes = 256 << 10
	}
	if o.MaxHostBytes <= 0 {
		o.MaxHostBytes = 4 * o.MaxStanzaBytes
	}
	if o.MaxKVBytes <= 0 {
		o.MaxKVBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// compilationCache is shared by every Runtime in the process without a
// CacheDir: the machine code of an artifact that some Runtime holds is
// compiled once (see compiled.go).
var compilationCache = wazero.NewCompilationCache()

// Runtime compiles and instantiates plugin modules. One per node.
type Runtime struct {
	opts Options
	rt   wazero.Runtime
	mods modules
}

// New starts a wazero runtime with WASI (Go guests need it for their
// runtime: clocks, random) and the "aviary" host module.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	opts.defaults()
	cache, err := cacheFor(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	cfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true). // a runaway loop ends at the call's deadline
		WithMemoryLimitPages(opts.MemoryLimitPages).
		WithCompilationCache(cache)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	r := &Runtime{opts: opts, rt: rt, mods: modules{byCS: map[string]*compiledModule{}, idle: map[string]string{}}}
	if err := r.instantiateHost(ctx); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return r, nil
}

// Close unloads everything.
func (r *Runtime) Close(ctx context.Context) error {
	err := r.rt.Close(ctx)
	// The engine belongs to the shared compilation cache and outlives
	// this runtime: give back what it holds for us.
	r.mods.mu.Lock()
	for _, m := range r.mods.byCS {
		m.cm.Close(ctx)
	}
	r.mods.byCS, r.mods.idle = map[string]*compiledModule{}, map[string]string{}
	r.mods.mu.Unlock()
	return err
}

// Checksum is the catalogue's checksum of an artifact: hex SHA-256.
func Checksum(artifact []byte) string {
	sum := sha256.Sum256(artifact)
	return hex.EncodeToString(sum[:])
}

// callCtxKey carries the per-call state to host functions.
type callCtxKey struct{}

// callFrom returns the state of the stanza being handled, or nil when the
// guest calls the host outside aviary_on_stanza (its initialisation):
// then host calls do nothing.
func callFrom(ctx context.Context) *callState {
	cs, _ := ctx.Value(callCtxKey{}).(*callState)
	return cs
}

func (r *Runtime) instantiateHost(ctx context.Context) error {
	b := r.rt.NewHostModuleBuilder("aviary")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, level, ptr, n uint32) {
		cs := callFrom(ctx)
		if cs == nil {
			return
		}
		keep := min(n, maxLogMessage) // a longer message is cut, not refused
		if !cs.admit("log", uint64(keep), 0) {
			return
		}
		msg, ok := m.Memory().Read(ptr, keep)
		if !ok {
			cs.outOfRange("log")
			return
		}
		text := string(msg)
		if keep < n {
			text += fmt.Sprintf(" [cut: %d bytes]", n)
		}
		lvl := slog.LevelInfo
		switch level {
		case 0:
			lvl = slog.LevelDebug
		case 2:
			lvl = slog.LevelWarn
		case 3:
			lvl = slog.LevelError
		}
		cs.p.log.Log(ctx, lvl, text)
	}).Export("log")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, ptr, n uint32) {
		cs := callFrom(ctx)
		if cs == nil || !cs.admit("send", uint64(n), r.opts.MaxStanzaBytes) {
			return
		}
		data, ok := m.Memory().Read(ptr, n)
		if !ok {
			cs.outOfRange("send")
			return
		}
		cs.p.queueSend(append([]byte(nil), data...))
	}).Export("send")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, ptr, n uint32) {
		cs := callFrom(ctx)
		if cs == nil || !cs.admit("set_stanza", uint64(n), r.opts.MaxStanzaBytes) {
			return
		}
		data, ok := m.Memory().Read(ptr, n)
		if !ok {
			cs.outOfRange("set_stanza")
			return
		}
		cs.replaced = append([]byte(nil), data...)
	}).Export("set_stanza")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, kptr, klen, vptr, vcap uint32) int32 {
		cs := callFrom(ctx)
		if cs == nil {
			return -1
		}
		if !cs.admit("kv_get", uint64(klen), 0) {
			return -2
		}
		key, ok := m.Memory().Read(kptr, klen)
		if !ok {
			cs.outOfRange("kv_get")
			return -2
		}
		v, found := cs.p.kv.get(string(key))
		if !found {
			return -1
		}
		if uint32(len(v)) <= vcap {
			m.Memory().WriteString(vptr, v)
		}
		return int32(len(v))
	}).Export("kv_get")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, kptr, klen, vptr, vlen uint32) {
		cs := callFrom(ctx)
		if cs == nil || !cs.admit("kv_set", uint64(klen)+uint64(vlen), 0) {
			return
		}
		key, ok1 := m.Memory().Read(kptr, klen)
		val, ok2 := m.Memory().Read(vptr, vlen)
		if !ok1 || !ok2 {
			cs.outOfRange("kv_set")
			return
		}
		if err := cs.p.kv.set(string(key), val, r.opts.MaxKVBytes); err != nil {
			cs.refuse("kv_set", limitKV, err.Error())
		}
	}).Export("kv_set")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, ptr, capacity uint32) uint32 {
		cs := callFrom(ctx)
		if cs == nil || cs.lastErr == "" {
			return 0
		}
		if uint32(len(cs.lastErr)) <= capacity {
			m.Memory().WriteString(ptr, cs.lastErr)
		}
		return uint32(len(cs.lastErr))
	}).Export("last_error")
	_, err := b.Instantiate(ctx)
	return err
}

// compile checks the module exports the ABI.
func (r *Runtime) compile(ctx context.Context, artifact []byte) (wazero.CompiledModule, error) {
	cm, err := r.rt.CompileModule(ctx, artifact)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadModule, err)
	}
	if err := checkExports(cm); err != nil {
		cm.Close(ctx)
		return nil, err
	}
	return cm, nil
}

// Validate checks that an artifact is a WebAssembly module with the ABI's
// exports, without compiling it to machine code: an upload is refused early
// and cheaply (the interpreter only decodes and validates), and nodes
// compile it when they load it.
func Validate(ctx context.Context, artifact []byte) error {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, artifact)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadModule, err)
	}
	defer cm.Close(ctx)
	return checkExports(cm)
}

// checkExports checks a compiled module exports what the ABI requires.
func checkExports(cm wazero.CompiledModule) error {
	exp := cm.ExportedFunctions()
	for _, need := range []string{"aviary_alloc", "aviary_on_stanza"} {
		if _, ok := exp[need]; !ok {
			return fmt.Errorf("%w: missing export %s", ErrBadModule, need)
		}
	}
	return nil
}
