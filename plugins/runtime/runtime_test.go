package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/wire"
)

// guest returns a built guest module: examples by "wordfilter-v1" and the
// like, test guests by "panicky" and "looper".
func guest(t testing.TB, name string) []byte {
	t.Helper()
	dir := "plugins/runtime/testdata/" + name
	if i := strings.LastIndex(name, "-"); i > 0 {
		dir = "plugins/examples/" + name[:i] + "/" + name[i+1:]
	}
	b, err := os.ReadFile(exampletest.Build(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newRuntime keeps compiled guests in the machine's shared test cache:
// compiling one takes seconds (40 under -race), and every test loads them.
func newRuntime(t testing.TB, opts Options) *Runtime {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = exampletest.CompiledDir(t)
	}
	r, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func start(t testing.TB, r *Runtime, host plugins.Host, name, version string, wasm []byte) *Plugin {
	t.Helper()
	p, err := r.Load(context.Background(), name, version, wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

func msg(from, to, body string) *wire.Element {
	return wire.New("message", "from", from, "to", to, "type", "chat").Append(wire.New("body").SetText(body))
}

func TestWordFilterVersions(t *testing.T) {
	host := plugintest.NewHost(t)
	r := newRuntime(t, Options{})
	v1 := start(t, r, host, "wordfilter", "1.0.0", guest(t, "wordfilter-v1"))
	if got := v1.InterceptPoints(); len(got) != 1 || got[0] != plugins.PointInbound {
		t.Fatalf("points = %v", got)
	}
	st := &plugins.Stanza{El: msg("a@localhost/x", "b@localhost", "Darn it, darn."), Session: "a@localhost/x"}
	v, err := v1.Intercept(context.Background(), plugins.PointInbound, st)
	if err != nil || v != plugins.Continue {
		t.Fatalf("verdict %v err %v", v, err)
	}
	if got := st.El.ChildText("body", ""); got != "****  it, ****." && got != "**** it, ****." {
		t.Errorf("filtered body = %q", got)
	}
	spam := &plugins.Stanza{El: msg("a@localhost/x", "b@localhost", "BUY CHEAP watches")}
	if v, _ := v1.Intercept(context.Background(), plugins.PointInbound, spam); v != plugins.Continue {
		t.Errorf("v1 should pass spam, got %v", v)
	}
	// Replace v1 by v2 at run time: load, start, then stop the old one.
	v2 := start(t, r, host, "wordfilter", "2.0.0", guest(t, "wordfilter-v2"))
	if err := v1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := v2.Intercept(context.Background(), plugins.PointInbound, spam); v != plugins.Drop {
		t.Errorf("v2 should drop spam, got %v", v)
	}
	st = &plugins.Stanza{El: msg("a@localhost/x", "b@localhost", "darn")}
	if v, _ := v2.Intercept(context.Background(), plugins.PointInbound, st); v != plugins.Continue || st.El.ChildText("body", "") != "****" {
		t.Errorf("v2 filter: %v %q", v, st.El.ChildText("body", ""))
	}
}

func TestEchoBotSendsAndKeepsState(t *testing.T) {
	host := plugintest.NewHost(t)
	r := newRuntime(t, Options{})
	bot := start(t, r, host, "echobot", "1.0.0", guest(t, "echobot-v1"))
	for i := 0; i < 2; i++ {
		st := &plugins.Stanza{El: msg("a@localhost/x", "localhost", "!ping")}
		if v, err := bot.Intercept(context.Background(), plugins.PointInbound, st); v != plugins.Handled || err != nil {
			t.Fatalf("verdict %v err %v", v, err)
		}
	}
	// A message to a user is none of the bot's business.
	if v, _ := bot.Intercept(context.Background(), plugins.PointInbound, &plugins.Stanza{El: msg("a@localhost/x", "b@localhost", "!ping")}); v != plugins.Continue {
		t.Errorf("bot took a user's message: %v", v)
	}
	routed := host.Routed()
	if len(routed) != 2 || !strings.Contains(routed[0], "pong (v1)") || !strings.Contains(routed[0], `to="a@localhost/x"`) {
		t.Fatalf("routed = %v", routed)
	}
	// State survives a reload of a new version through the shared store.
	v2 := start(t, r, host, "echobot", "2.0.0", guest(t, "echobot-v2"))
	v2.Intercept(context.Background(), plugins.PointInbound, &plugins.Stanza{El: msg("a@localhost/x", "localhost", "!count")})
	routed = host.Routed()
	if last := routed[len(routed)-1]; !strings.Contains(last, "<body>3</body>") {
		t.Errorf("count after reload: %s", last)
	}
}

func TestMisbehavingPluginsCannotHarmTheNode(t *testing.T) {
	host := plugintest.NewHost(t)
	r := newRuntime(t, Options{CallTimeout: 100 * time.Millisecond, MaxFailures: 3})
	for _, name := range []string{"panicky", "looper"} {
		t.Run(name, func(t *testing.T) {
			p := start(t, r, host, name, "1", guest(t, name))
			for i := 0; i < 5; i++ {
				st := &plugins.Stanza{El: msg("a@localhost/x", "b@localhost", "hello")}
				v, err := p.Intercept(context.Background(), plugins.PointInbound, st)
				if err != nil || v != plugins.Continue {
					t.Fatalf("call %d: verdict %v err %v (a failing plugin must pass stanzas through)", i, v, err)
				}
				if st.El.ChildText("body", "") != "hello" {
					t.Fatalf("stanza changed by a failed call")
				}
			}
			calls, fails := p.Stats()
			if fails != 3 || calls != 3 {
				t.Errorf("calls=%d failures=%d, want 3 and 3 (disabled after the third)", calls, fails)
			}
			if !p.Disabled() {
				t.Error("plugin not disabled")
			}
		})
	}
	// The runtime still serves healthy plugins afterwards.
	ok := start(t, r, host, "wordfilter", "1", guest(t, "wordfilter-v1"))
	st := &plugins.Stanza{El: msg("a@localhost/x", "b@localhost", "darn")}
	if _, err := ok.Intercept(context.Background(), plugins.PointInbound, st); err != nil || st.El.ChildText("body", "") != "****" {
		t.Errorf("healthy plugin after bad ones: %v %q", err, st.El.ChildText("body", ""))
	}
}

func TestBadModules(t *testing.T) {
	r := newRuntime(t, Options{})
	for name, data := range map[string][]byte{
		"garbage":    []byte("definitely not wasm"),
		"empty wasm": []byte("\x00asm\x01\x00\x00\x00"),
		"truncated":  guest(t, "wordfilter-v1")[:1000],
	} {
		if _, err := r.Load(context.Background(), "x", "1", data); !errors.Is(err, ErrBadModule) {
			t.Errorf("%s: err = %v, want ErrBadModule", name, err)
		}
	}
}

// BenchmarkIntercept measures the per-stanza cost of a WebAssembly plugin
// (copy in, parse in the guest, run, copy back when changed).
func BenchmarkIntercept(b *testing.B) {
	host := plugintest.NewHost(b)
	r := newRuntime(b, Options{})
	p := start(b, r, host, "wordfilter", "1", guest(b, "wordfilter-v1"))
	el := msg("a@localhost/x", "b@localhost", "an ordinary message of ordinary length")
	b.ReportAllocs()
	for b.Loop() {
		st := &plugins.Stanza{El: el}
		if _, err := p.Intercept(context.Background(), plugins.PointInbound, st); err != nil {
			b.Fatal(err)
		}
	}
	_ = runtime.NumGoroutine()
}

func TestValidate(t *testing.T) {
	if err := Validate(context.Background(), guest(t, "wordfilter-v1")); err != nil {
		t.Errorf("a real plugin: %v", err)
	}
	for name, data := range map[string][]byte{
		"garbage":    []byte("definitely not wasm"),
		"no exports": []byte("\x00asm\x01\x00\x00\x00"),
	} {
		if err := Validate(context.Background(), data); !errors.Is(err, ErrBadModule) {
			t.Errorf("%s: %v, want ErrBadModule", name, err)
		}
	}
}

// TestHealthCountsFailuresByKind: what a rolling upgrade judges a node by.
// A trap and a timeout each count as a failure of their kind, and the
// plugin says once, with the reason, when the failures disable it.
func TestHealthCountsFailuresByKind(t *testing.T) {
	host := plugintest.NewHost(t)
	r := newRuntime(t, Options{CallTimeout: 100 * time.Millisecond, MaxFailures: 3})
	for _, tc := range []struct{ name, kind string }{{"panicky", "trap"}, {"looper", "timeout"}} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, r, host, tc.name, "1", guest(t, tc.name))
			told := make(chan string, 2)
			p.OnDisable(func(reason string) { told <- reason })
			for range 4 {
				p.Intercept(context.Background(), plugins.PointInbound, &plugins.Stanza{El: msg("a@localhost/x", "b@localhost", "hello")})
			}
			h := p.Health()
			want := Health{Calls: 3, Failures: 3, Disabled: true}
			if tc.kind == "trap" {
				want.Traps = 3
			} else {
				want.Timeouts = 3
			}
			want.Reason = h.Reason
			if h != want || !strings.Contains(h.Reason, "disabled after 3 failures") {
				t.Errorf("health %+v, want %+v", h, want)
			}
			select {
			case reason := <-told:
				if reason != h.Reason {
					t.Errorf("told %q, health says %q", reason, h.Reason)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("OnDisable not called")
			}
			select {
			case reason := <-told:
				t.Errorf("told twice: %q", reason)
			default:
			}
		})
	}
}

// TestRollbackTargetStaysCompiled: a runtime keeps the version a plugin
// last stopped using, so going back to it needs no compilation (wazero
// dropped the machine code as soon as no module used it, and a rollback
// compiled version 1 again: 40 s under -race, seconds without).
func TestRollbackTargetStaysCompiled(t *testing.T) {
	host := plugintest.NewHost(t)
	r := newRuntime(t, Options{})
	v1 := start(t, r, host, "wordfilter", "1.0.0", guest(t, "wordfilter-v1"))
	v2 := start(t, r, host, "wordfilter", "2.0.0", guest(t, "wordfilter-v2"))
	v1.Stop(context.Background())
	if n := r.Compiled(); n != 2 {
		t.Fatalf("after retiring 1.0.0: %d compiled, want 2 (2.0.0 and the rollback target)", n)
	}
	back := start(t, r, host, "wordfilter", "1.0.0", guest(t, "wordfilter-v1"))
	if n := r.Compiled(); n != 2 {
		t.Errorf("rolling back compiled again: %d compiled modules", n)
	}
	back.Stop(context.Background())
	v2.Stop(context.Background())
	// Only the last one stopped is kept.
	if n := r.Compiled(); n != 1 {
		t.Errorf("with nothing running: %d compiled, want 1", n)
	}
}

// tinyModule is the smallest module with the ABI's exports (both return
// 0): it compiles in milliseconds.
var tinyModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	// types: (i32) -> i32, (i32 i32 i32) -> i32
	0x01, 0x0d, 0x02, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x01, 0x7f,
	// functions
	0x03, 0x03, 0x02, 0x00, 0x01,
	// exports
	0x07, 0x23, 0x02,
	0x0c, 'a', 'v', 'i', 'a', 'r', 'y', '_', 'a', 'l', 'l', 'o', 'c', 0x00, 0x00,
	0x10, 'a', 'v', 'i', 'a', 'r', 'y', '_', 'o', 'n', '_', 's', 't', 'a', 'n', 'z', 'a', 0x00, 0x01,
	// code: i32.const 0
	0x0a, 0x0b, 0x02, 0x04, 0x00, 0x41, 0x00, 0x0b, 0x04, 0x00, 0x41, 0x00, 0x0b,
}

// TestDamagedCompilationCache: a node whose on-disk compiled code is
// damaged still loads its plugins (wazero fails the compilation on an
// unreadable entry instead of compiling afresh).
func TestDamagedCompilationCache(t *testing.T) {
	dir := t.TempDir()
	r1 := newRuntime(t, Options{CacheDir: dir})
	p, err := r1.Load(context.Background(), "tiny", "1", tinyModule)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(context.Background())
	r1.Close(context.Background()) // nothing holds it in memory any more
	entries, _ := filepath.Glob(filepath.Join(dir, "wazero-*", "*"))
	if len(entries) == 0 {
		t.Fatal("nothing was written to the cache")
	}
	for _, e := range entries {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff // in the machine code: its checksum no longer matches
		if err := os.WriteFile(e, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r2 := newRuntime(t, Options{CacheDir: dir})
	if _, err := r2.Load(context.Background(), "tiny", "1", tinyModule); err != nil {
		t.Fatalf("loading over a damaged cache: %v", err)
	}
}
