package plugintest

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/aviary-im/aviary/plugins"
)

// CheckCallAfterSends checks what plugins.Cluster promises of a Call:
// its handler on to starts after the handlers of the Sends from made to
// it before have returned, so what those Sends changed is there for the
// Call. Every implementation's tests run it (Net's, the server's on
// cluster/local and on real Hazelcast nodes). It registers the kinds
// "note" and "notes" on to.
func CheckCallAfterSends(t testing.TB, from, to plugins.Cluster) {
	t.Helper()
	var notes atomic.Int64
	to.Handle("note", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		runtime.Gosched() // a handler that takes a moment
		notes.Add(1)
		return nil, nil
	})
	to.Handle("notes", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		return []byte(strconv.FormatInt(notes.Load(), 10)), nil
	})
	ctx := context.Background()
	const batch = 20
	for round := 1; round <= 50; round++ {
		for range batch {
			if err := from.Send(ctx, to.NodeName(), "note", nil); err != nil {
				t.Fatal(err)
			}
		}
		got, err := from.Call(ctx, to.NodeName(), "notes", nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := strconv.Itoa(batch * round); string(got) != want {
			t.Fatalf("round %d: the Call saw %s notes, want the %s sent before it", round, got, want)
		}
	}
}
