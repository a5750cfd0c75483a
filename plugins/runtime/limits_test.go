package runtime

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/wire"
)

// TestHostCallBounds: the "hog" guest tries, one way per stanza, to make
// the host copy more than it may while handling one stanza. Each attempt
// is refused before anything is copied, the guest sees the error, the
// node logs it once and counts it, calls within the bounds stand, and a
// stanza the guest swallows afterwards is answered with
// <resource-constraint/> instead of vanishing. The canary stanza through
// the same plugin still works at the end: refusals are not failures.
func TestHostCallBounds(t *testing.T) {
	host := plugintest.NewHost(t)
	logs := &testutil.Buffer{}
	r := newRuntime(t, Options{
		MaxHostCalls: 8, MaxHostBytes: 64 << 10, MaxStanzaBytes: 32 << 10, MaxKVBytes: 16 << 10,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	p := start(t, r, host, "hog", "1", guest(t, "hog"))

	// intercept hands the guest a message to the domain with body and
	// returns the verdict, the error and what the guest got routed.
	intercept := func(t *testing.T, pt plugins.Point, body string) (plugins.Verdict, error, []string, *wire.Element) {
		t.Helper()
		before := len(host.Routed())
		st := &plugins.Stanza{El: msg("alice@localhost/x", "localhost", body), Session: "alice@localhost/x"}
		v, err := p.Intercept(context.Background(), pt, st)
		return v, err, host.Routed()[before:], st.El
	}
	answeredWithLimit := func(t *testing.T, v plugins.Verdict, err error) {
		t.Helper()
		var se *wire.StanzaError
		if !errors.As(err, &se) || se.Condition != "resource-constraint" || v == plugins.Continue {
			t.Fatalf("verdict %v err %v, want the stanza answered with resource-constraint", v, err)
		}
	}
	loggedOnce := func(t *testing.T, limit string) {
		t.Helper()
		out := logs.Take()
		if n := strings.Count(out, "plugin host call refused"); n != 1 {
			t.Errorf("%d refusal log lines for one stanza, want 1:\n%s", n, out)
		}
		if !strings.Contains(out, "limit="+limit) {
			t.Errorf("the log line does not name limit %s:\n%s", limit, out)
		}
	}
	refusedOf := func(limit string) int64 { return p.Refused()[limit] }

	t.Run("one send over the stanza bound", func(t *testing.T) {
		n := refusedOf("stanza")
		v, err, routed, _ := intercept(t, plugins.PointInbound, "send-big")
		answeredWithLimit(t, v, err)
		if len(routed) != 1 || !strings.Contains(routed[0], "refused: send refused") || !strings.Contains(routed[0], "c2s.max_stanza_bytes") {
			t.Fatalf("routed %d stanzas, want only the guest's report of the error: %.300q", len(routed), routed)
		}
		if refusedOf("stanza") != n+1 {
			t.Errorf("stanza refusals %d, want %d", refusedOf("stanza"), n+1)
		}
		loggedOnce(t, "stanza")
	})
	t.Run("sends until the bytes run out", func(t *testing.T) {
		v, err, routed, _ := intercept(t, plugins.PointInbound, "send-many")
		answeredWithLimit(t, v, err)
		if len(routed) != 4 || !strings.Contains(routed[3], "plugins.wasm.max_host_bytes") {
			t.Fatalf("routed %d stanzas, want the 3 that fit and the report: %.300q", len(routed), routed)
		}
		for _, s := range routed[:3] {
			if !strings.Contains(s, strings.Repeat("y", 20<<10)) {
				t.Fatalf("an accepted send was changed or lost: %.200q", s)
			}
		}
		loggedOnce(t, "bytes")
	})
	t.Run("calls until the calls run out", func(t *testing.T) {
		n := refusedOf("calls")
		v, err, routed, _ := intercept(t, plugins.PointInbound, "log-many")
		answeredWithLimit(t, v, err) // Handled: the guest saw its log refused
		if len(routed) != 0 {
			t.Fatalf("the report past the calls bound was routed: %q", routed)
		}
		if got := refusedOf("calls"); got != n+2 { // the 9th log and the report
			t.Errorf("calls refusals %d, want %d", got, n+2)
		}
		out := logs.Take()
		if strings.Count(out, "tick") != 8 || strings.Count(out, "plugin host call refused") != 1 {
			t.Errorf("want 8 ticks and one refusal line:\n%s", out)
		}
	})
	t.Run("one huge log line is cut", func(t *testing.T) {
		v, err, routed, _ := intercept(t, plugins.PointInbound, "log-big")
		if v != plugins.Handled || err != nil || len(routed) != 1 || !strings.Contains(routed[0], "log-big accepted") {
			t.Fatalf("verdict %v err %v routed %q", v, err, routed)
		}
		out := logs.Take()
		if len(out) > maxLogMessage+512 || !strings.Contains(out, "[cut: 8388608 bytes]") {
			t.Fatalf("the node logged %d bytes for an 8 MiB message: %.200q", len(out), out)
		}
	})
	t.Run("one value over the bytes bound", func(t *testing.T) {
		v, err, routed, _ := intercept(t, plugins.PointInbound, "kv-big")
		answeredWithLimit(t, v, err)
		if len(routed) != 1 || !strings.Contains(routed[0], "kv_set refused") || !strings.Contains(routed[0], "plugins.wasm.max_host_bytes") {
			t.Fatalf("routed %q", routed)
		}
		if _, ok := p.kv.get("big"); ok {
			t.Fatal("the refused value was stored")
		}
		loggedOnce(t, "bytes")
	})
	t.Run("values until the store is full", func(t *testing.T) {
		v, err, routed, _ := intercept(t, plugins.PointInbound, "kv-fill")
		answeredWithLimit(t, v, err)
		if len(routed) != 1 || !strings.Contains(routed[0], "plugins.wasm.max_kv_bytes") {
			t.Fatalf("routed %q", routed)
		}
		_, ok1 := p.kv.get("k1")
		_, ok2 := p.kv.get("k2")
		if !ok1 || ok2 {
			t.Fatalf("store holds k1 %v, k2 %v; want the two that fit and not the third", ok1, ok2)
		}
		if refusedOf("kv") != 1 {
			t.Errorf("kv refusals %d, want 1", refusedOf("kv"))
		}
		loggedOnce(t, "kv")
	})
	t.Run("a replacement over the stanza bound", func(t *testing.T) {
		v, err, _, el := intercept(t, plugins.PointInbound, "set-big")
		if v != plugins.Continue || err != nil || el.ChildText("body", "") != "set-big" {
			t.Fatalf("verdict %v err %v body %.40q: want the original stanza passed on", v, err, el.ChildText("body", ""))
		}
		loggedOnce(t, "stanza")
	})
	t.Run("at the delivery point the stanza is passed on", func(t *testing.T) {
		v, err, _, el := intercept(t, plugins.PointDeliver, "log-many")
		if v != plugins.Continue || err != nil || el.ChildText("body", "") != "log-many" {
			t.Fatalf("verdict %v err %v: a stanza accepted for delivery must not be dropped", v, err)
		}
		logs.Take()
	})
	t.Run("canary", func(t *testing.T) {
		v, err, routed, _ := intercept(t, plugins.PointInbound, "ok")
		if v != plugins.Handled || err != nil || len(routed) != 1 || !strings.Contains(routed[0], "<body>ok</body>") {
			t.Fatalf("verdict %v err %v routed %q", v, err, routed)
		}
		if _, fails := p.Stats(); fails != 0 || p.Disabled() {
			t.Fatalf("refusals counted as failures: %d failures, disabled %v", fails, p.Disabled())
		}
	})
}

// TestKVQuotaAcrossStanzas: the store's bound holds over many stanzas,
// each within its own budget, and a store loaded over its bound (the bound
// was lowered) may shrink but not grow.
func TestKVQuotaAcrossStanzas(t *testing.T) {
	kv := &kvStore{m: map[string]string{}}
	for i := range 4 {
		if err := kv.set(string(rune('a'+i)), make([]byte, 99), 300); err != nil {
			if i < 3 {
				t.Fatalf("set %d: %v", i, err)
			}
			if !strings.Contains(err.Error(), "plugins.wasm.max_kv_bytes") {
				t.Fatalf("error %v does not name the key", err)
			}
			continue
		}
		if i == 3 {
			t.Fatal("the fourth 100-byte entry fitted in 300 bytes")
		}
	}
	if err := kv.set("a", make([]byte, 10), 300); err != nil {
		t.Fatalf("shrinking an entry: %v", err)
	}
	if err := kv.set("a", make([]byte, 10), 100); err != nil {
		t.Fatalf("rewriting an entry the same size when over a lowered bound: %v", err)
	}
	if err := kv.set("a", make([]byte, 11), 100); err == nil {
		t.Fatal("grew past a lowered bound")
	}
}
