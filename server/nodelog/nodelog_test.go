package nodelog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// trace is a multi-line error as a WebAssembly guest's trap reports it.
var trace = errors.New("wasm error: unreachable\nwasm stack trace:\n\tfilter.handle(i32) i32\n\tfilter.main()")

// TestTextKeepsTracesReadable: a multi-line value leaves its first line in
// the record's line and the rest below it, indented, instead of one line
// of \n escapes; the next record starts a line of its own.
func TestTextKeepsTracesReadable(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(New(&out, "text", new(slog.LevelVar), nil)).With("node", "n1")
	log.Warn("plugin call failed", "plugin", "filter", "err", trace)
	log.Info("next")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[0], `node=n1 plugin=filter err="wasm error: unreachable (3 more lines below)"`) || strings.Contains(lines[0], `\n`) {
		t.Errorf("first line: %s", lines[0])
	}
	want := []string{"\terr:", "\t\twasm stack trace:", "\t\t\tfilter.handle(i32) i32", "\t\t\tfilter.main()"}
	for i, w := range want {
		if lines[1+i] != w {
			t.Errorf("line %d = %q, want %q", 1+i, lines[1+i], w)
		}
	}
	if !strings.HasPrefix(lines[5], "time=") || !strings.Contains(lines[5], "msg=next") {
		t.Errorf("the next record: %q", lines[5])
	}
}

// TestJSONStaysOneLine: log shippers parse one JSON object per line.
func TestJSONStaysOneLine(t *testing.T) {
	var out bytes.Buffer
	slog.New(New(&out, "json", new(slog.LevelVar), nil)).Error("boom", "err", trace)
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("%d lines: %s", n, out.String())
	}
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec["err"] != trace.Error() {
		t.Errorf("record %v, %v", rec, err)
	}
}

// TestRingAndLevel: the ring keeps what was logged (trailer included),
// bounded, filtered by level on the way out; the level changes live.
func TestRingAndLevel(t *testing.T) {
	var out bytes.Buffer
	lv := new(slog.LevelVar)
	ring := NewRing(3, 0)
	h := New(&out, "text", lv, ring)
	log := slog.New(h)
	if RingOf(h) != ring || LevelOf(h) != lv || RingOf(slog.NewTextHandler(&out, nil)) != nil {
		t.Fatal("RingOf/LevelOf")
	}
	log.Debug("hidden")
	log.Info("one")
	log.Warn("two", "err", trace)
	lv.Set(slog.LevelDebug)
	log.Debug("three")
	log.Error("four")
	all := ring.Entries(Query{MinLevel: slog.LevelDebug})
	if len(all) != 3 || !strings.Contains(all[0].Text, "msg=two") || !strings.Contains(all[2].Text, "msg=four") {
		t.Fatalf("entries %+v", all)
	}
	if !strings.Contains(all[0].Text, "\t\tfilter.main()") {
		t.Errorf("the trace is not kept with its record: %q", all[0].Text)
	}
	if warn := ring.Entries(Query{MinLevel: slog.LevelWarn}); len(warn) != 2 || warn[0].Level != slog.LevelWarn || warn[1].Level != slog.LevelError {
		t.Errorf("warn and above: %+v", warn)
	}
	if last := ring.Entries(Query{Limit: 1}); len(last) != 1 || !strings.Contains(last[0].Text, "four") {
		t.Errorf("limit 1: %+v", last)
	}
	if after := ring.Entries(Query{After: all[1].Seq, MinLevel: slog.LevelDebug}); len(after) != 1 || after[0].Seq != all[2].Seq {
		t.Errorf("after %d: %+v", all[1].Seq, after)
	}
}

// TestRingBytes: a ring holds about maxBytes of text, each entry at most
// EntryBytes.
func TestRingBytes(t *testing.T) {
	ring := NewRing(100, 4*EntryBytes)
	log := slog.New(New(&bytes.Buffer{}, "text", new(slog.LevelVar), ring))
	for i := range 20 {
		log.Info(fmt.Sprint("big ", i), "blob", strings.Repeat("x", 3*EntryBytes))
	}
	es := ring.Entries(Query{})
	if len(es) != 4 || !strings.Contains(es[3].Text, "big 19") {
		t.Fatalf("%d entries, last %.40q", len(es), es[len(es)-1].Text)
	}
	for _, e := range es {
		if len(e.Text) > EntryBytes {
			t.Errorf("entry of %d bytes", len(e.Text))
		}
	}
}

// TestConcurrentRecordsStayWhole: a record's lines are never split by
// another's (run with -race).
func TestConcurrentRecordsStayWhole(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(New(&out, "text", new(slog.LevelVar), NewRing(0, 0)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				log.Warn("trap", "err", trace)
				log.Info("plain")
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for i, l := range lines {
		if strings.Contains(l, "msg=trap") {
			if i+4 >= len(lines) || lines[i+4] != "\t\t\tfilter.main()" {
				t.Fatalf("trace of line %d split: %q", i, lines[i:min(i+5, len(lines))])
			}
		}
	}
}
