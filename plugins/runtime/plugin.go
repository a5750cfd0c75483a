package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

var errStopped = errors.New("runtime: plugin stopped")

// Plugin is one loaded WebAssembly plugin: a plugins.Interceptor.
type Plugin struct {
	name, version, checksum string

	rt  *Runtime
	cm  wazero.CompiledModule
	log *slog.Logger
	kv  *kvStore

	host plugins.Host

	mu       sync.Mutex // one call into the instance at a time
	mod      api.Module
	alloc    api.Function
	onStanza api.Function
	mask     uint32
	failures []time.Time
	disabled bool
	stopped  bool
	// next is the version that replaced this one: a stanza that picked this
	// plugin from the manager's snapshot just before the swap, and calls it
	// after Stop, is handed to the successor instead of slipping through.
	next    *Plugin
	pending [][]byte // stanzas the guest sent during the current call
	// onDisable is told why, once, when failures disable the plugin.
	onDisable func(reason string)
	whyOff    string // why it was disabled

	calls, errs     atomic.Int64
	traps, timeouts atomic.Int64            // errs by kind (the rest: a broken instance)
	refused         [numLimits]atomic.Int64 // host calls refused, by bound
}

var (
	_ plugins.Plugin      = (*Plugin)(nil)
	_ plugins.Interceptor = (*Plugin)(nil)
)

// Load compiles a plugin artifact. The plugin runs once Start is called
// (the plugin manager does that when it adds it).
func (r *Runtime) Load(ctx context.Context, name, version string, artifact []byte) (*Plugin, error) {
	sum := Checksum(artifact)
	cm, err := r.acquire(ctx, name, sum, artifact)
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		name: name, version: version, checksum: sum, rt: r, cm: cm,
		log: r.opts.Logger.With("plugin", name, "version", version),
		kv:  &kvStore{m: map[string]string{}},
	}
	return p, nil
}

// ID names the plugin in the manager: third-party IDs are prefixed "wasm.".
func (p *Plugin) ID() string { return "wasm." + p.name }

// Name, Version and Checksum identify the loaded artifact.
func (p *Plugin) Name() string     { return p.name }
func (p *Plugin) Version() string  { return p.version }
func (p *Plugin) Checksum() string { return p.checksum }

// Stats returns calls made and calls that failed (trap or timeout).
func (p *Plugin) Stats() (calls, failures int64) { return p.calls.Load(), p.errs.Load() }

// Disabled reports whether the plugin was switched off after failures.
func (p *Plugin) Disabled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.disabled
}

// Health is what a plugin's calls since it was loaded tell about it: a
// rolling upgrade judges a node by it (server/pluginhost).
type Health struct {
	Calls    int64 // calls into the guest, one per stanza and point
	Failures int64 // calls that failed: Traps + Timeouts + broken instances
	Traps    int64 // the guest trapped (a Go panic, unreachable, out of bounds)
	Timeouts int64 // the guest ran past Options.CallTimeout
	Disabled bool  // switched off after Options.MaxFailures in FailureWindow
	// Reason says why it was disabled.
	Reason string
}

// Health returns the plugin's counters since Load.
func (p *Plugin) Health() Health {
	p.mu.Lock()
	disabled, why := p.disabled, p.whyOff
	p.mu.Unlock()
	return Health{Calls: p.calls.Load(), Failures: p.errs.Load(), Traps: p.traps.Load(), Timeouts: p.timeouts.Load(),
		Disabled: disabled, Reason: why}
}

// OnDisable registers fn, called once (on its own goroutine) with the
// reason when repeated failures disable the plugin: the node reports the
// state so the console shows it. Register before the plugin runs.
func (p *Plugin) OnDisable(fn func(reason string)) {
	p.mu.Lock()
	p.onDisable = fn
	p.mu.Unlock()
}

// Start instantiates the module and reads the points it wants.
func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	if host != nil && host.Store() != nil {
		p.kv.load(ctx, host, p.name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.instantiateLocked(ctx)
}

var instanceSeq atomic.Int64

func (p *Plugin) instantiateLocked(ctx context.Context) error {
	cfg := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("%s-%d", p.name, instanceSeq.Add(1))).
		WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().WithRandSource(randReader{})
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	mod, err := p.rt.rt.InstantiateModule(ictx, p.cm, cfg)
	if err != nil {
		return fmt.Errorf("runtime: instantiating %s %s: %w", p.name, p.version, err)
	}
	p.mod = mod
	p.alloc = mod.ExportedFunction("aviary_alloc")
	p.onStanza = mod.ExportedFunction("aviary_on_stanza")
	p.mask = 1 | 2 // default: inbound and deliver
	if f := mod.ExportedFunction("aviary_points"); f != nil {
		if res, err := f.Call(ictx); err == nil && len(res) == 1 {
			p.mask = uint32(res[0])
		}
	}
	return nil
}

// Retire stops the plugin after a new version replaced it; calls that
// still arrive go to next.
func (p *Plugin) Retire(ctx context.Context, next *Plugin) error {
	p.mu.Lock()
	p.next = next
	p.mu.Unlock()
	return p.Stop(ctx)
}

// Stop closes the instance and the compiled module. Calls that still
// arrive pass through untouched (or go to the successor, see Retire).
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	if p.mod != nil {
		_ = p.mod.Close(ctx)
		p.mod = nil
	}
	p.rt.release(ctx, p.checksum)
	return nil
}

// InterceptPoints returns the points the guest declared.
func (p *Plugin) InterceptPoints() []plugins.Point {
	var out []plugins.Point
	for pt := plugins.PointInbound; pt <= plugins.PointRemoteInbound; pt++ {
		if p.mask&(1<<(uint(pt)-1)) != 0 {
			out = append(out, pt)
		}
	}
	return out
}

// Intercept hands the stanza to the guest. A failing guest never fails the
// stanza: it passes through unchanged (fail open) and the failure counts
// towards disabling the plugin.
func (p *Plugin) Intercept(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
	p.mu.Lock()
	stopped, next := p.stopped, p.next
	p.mu.Unlock()
	if stopped {
		if next != nil {
			return next.Intercept(ctx, pt, st)
		}
		return plugins.Continue, nil
	}
	verdict, replaced, sends, refused, err := p.call(ctx, pt, st)
	if errors.Is(err, errStopped) {
		return p.Intercept(ctx, pt, st) // stopped meanwhile: take the path above
	}
	for _, raw := range sends {
		el, perr := wire.Parse(raw, wire.Limits{MaxStanzaBytes: p.rt.opts.MaxStanzaBytes})
		if perr != nil {
			p.log.Warn("plugin sent a malformed stanza", "err", perr)
			continue
		}
		if p.host != nil {
			p.host.Route(ctx, el)
		}
	}
	if err != nil {
		if !errors.Is(err, ErrPluginFailed) {
			p.log.Error("plugin call failed", "err", err)
		}
		return plugins.Continue, nil
	}
	if replaced != nil {
		el, _, perr := wire.DecodeBinary(replaced)
		if perr != nil || el.Name != st.El.Name {
			p.log.Warn("plugin returned an invalid stanza; keeping the original", "err", perr)
		} else {
			*st.El = *el
		}
	}
	if refused && (verdict == 1 || verdict == 2) {
		// The guest swallowed the stanza after the host refused one of
		// its calls (its answer may be what was refused): the sender
		// hears of it rather than nothing. See limits.go.
		if pt == plugins.PointInbound || pt == plugins.PointRemoteInbound {
			return plugins.Drop, errLimitStanza
		}
		return plugins.Continue, nil
	}
	switch verdict {
	case 1:
		return plugins.Drop, nil
	case 2:
		return plugins.Handled, nil
	}
	return plugins.Continue, nil
}

// call runs aviary_on_stanza. refused reports whether the host refused a
// call of the guest's on the way (a per-stanza bound).
func (p *Plugin) call(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (verdict uint32, replaced []byte, sends [][]byte, refused bool, err error) {
	buf := wire.GetBuffer()
	defer wire.PutBuffer(buf)
	buf.WriteString(st.Session)
	buf.WriteByte(0)
	data := wire.AppendBinary(buf.Bytes(), st.El)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return 0, nil, nil, false, errStopped
	}
	if p.disabled {
		return 0, nil, nil, false, ErrPluginFailed
	}
	if p.mod == nil || p.mod.IsClosed() {
		if err := p.instantiateLocked(ctx); err != nil {
			return 0, nil, nil, false, p.failLocked(err, failInstance)
		}
	}
	p.calls.Add(1)
	cs := &callState{p: p, pt: pt}
	cctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), callCtxKey{}, cs), p.rt.opts.CallTimeout)
	defer cancel()
	res, err := p.alloc.Call(cctx, uint64(len(data)))
	if err != nil {
		return 0, nil, nil, false, p.failLocked(err, failCall)
	}
	ptr := uint32(res[0])
	if !p.mod.Memory().Write(ptr, data) {
		return 0, nil, nil, false, p.failLocked(errors.New("guest buffer out of range"), failInstance)
	}
	res, err = p.onStanza.Call(cctx, uint64(1)<<(uint(pt)-1), uint64(ptr), uint64(len(data)))
	sends, p.pending = p.pending, nil
	if err != nil {
		return 0, nil, sends, cs.refused > 0, p.failLocked(err, failCall)
	}
	return uint32(res[0]), cs.replaced, sends, cs.refused > 0, nil
}

// failKind says what failed: a call into the guest (a trap, or a timeout
// when its deadline passed) or the instance around it.
type failKind int

const (
	failCall     failKind = iota // alloc or on_stanza returned an error
	failInstance                 // instantiation, or a buffer outside its memory
)

// failLocked records a failure, replaces the instance (a trapped Go guest
// is not safe to call again) and disables the plugin past the threshold.
func (p *Plugin) failLocked(err error, kind failKind) error {
	p.errs.Add(1)
	switch kind {
	case failCall:
		if errors.Is(err, context.DeadlineExceeded) {
			p.timeouts.Add(1)
		} else {
			p.traps.Add(1)
		}
	}
	if p.mod != nil {
		_ = p.mod.Close(context.Background())
		p.mod = nil
	}
	now := time.Now()
	kept := p.failures[:0]
	for _, t := range p.failures {
		if now.Sub(t) < p.rt.opts.FailureWindow {
			kept = append(kept, t)
		}
	}
	p.failures = append(kept, now)
	if len(p.failures) >= p.rt.opts.MaxFailures {
		p.disabled = true
		last, _, _ := strings.Cut(err.Error(), "\n") // not the guest's stack trace: the log has it
		p.whyOff = fmt.Sprintf("disabled after %d failures within %s (traps %d, timeouts %d in all); last: %s",
			len(p.failures), p.rt.opts.FailureWindow, p.traps.Load(), p.timeouts.Load(), last)
		p.log.Error("plugin disabled after repeated failures", "failures", len(p.failures), "last", err)
		if fn := p.onDisable; fn != nil {
			go fn(p.whyOff) // the node writes it to the store: not on the stanza's path
		}
		return ErrPluginFailed
	}
	return fmt.Errorf("runtime: plugin %s: %w", p.name, err)
}

// queueSend is called by the send host function during a call (p.mu held
// by the caller's goroutine): stanzas are routed after the call returns, so
// the router never runs inside the guest.
func (p *Plugin) queueSend(raw []byte) { p.pending = append(p.pending, raw) }

// kvStore is a plugin's key-value store: in memory, written through to
// the shared properties so every node sees the same values. size is the
// bytes of keys and values held, bounded by Options.MaxKVBytes.
type kvStore struct {
	mu     sync.Mutex
	m      map[string]string
	size   int
	host   plugins.Host
	prefix string
}

func (kv *kvStore) load(ctx context.Context, host plugins.Host, name string) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.host, kv.prefix = host, "plugin."+name+".kv."
	all, err := host.Store().ListProperties(ctx)
	if err != nil {
		return
	}
	for k, v := range all {
		if strings.HasPrefix(k, kv.prefix) {
			k = strings.TrimPrefix(k, kv.prefix)
			kv.size += len(k) + len(v) - kv.sizeOfLocked(k)
			kv.m[k] = v
		}
	}
}

// sizeOfLocked is what key k holds now (0 when unset). Needs kv.mu.
func (kv *kvStore) sizeOfLocked(k string) int {
	if v, ok := kv.m[k]; ok {
		return len(k) + len(v)
	}
	return 0
}

func (kv *kvStore) get(k string) (string, bool) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	v, ok := kv.m[k]
	return v, ok
}

// set stores a value (copied from val), unless the store would grow past
// quota bytes. A store already over quota (the bound was lowered) may
// still shrink.
func (kv *kvStore) set(k string, val []byte, quota int) error {
	kv.mu.Lock()
	grown := kv.size - kv.sizeOfLocked(k) + len(k) + len(val)
	if grown > quota && grown > kv.size {
		kv.mu.Unlock()
		return fmt.Errorf("kv_set refused: the store would hold %d bytes, over %d (plugins.wasm.max_kv_bytes)", grown, quota)
	}
	v := string(val)
	kv.m[k] = v
	kv.size = grown
	host, prefix := kv.host, kv.prefix
	kv.mu.Unlock()
	if host != nil && host.Store() != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := host.Store().SetProperty(ctx, prefix+k, v); err != nil {
			host.Logger().Warn("plugin kv write failed", "key", k, "err", err)
		}
	}
	return nil
}
