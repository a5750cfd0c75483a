package router

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// notifyFed is a NotifyingFederation whose stanzas settle when the test
// says so (written to the remote stream, in the real one).
type notifyFed struct {
	capFed
	smu     sync.Mutex
	pending []func()
}

func (f *notifyFed) SendNotify(ctx context.Context, el *wire.Element, settled func()) {
	f.Send(ctx, el)
	f.smu.Lock()
	f.pending = append(f.pending, settled)
	f.smu.Unlock()
}

func (f *notifyFed) settleAll() {
	f.smu.Lock()
	p := f.pending
	f.pending = nil
	f.smu.Unlock()
	for _, fn := range p {
		fn()
	}
}

// TestRemoteMessageHoldsTheSendersAck: a stream-management client's
// acknowledgement of a message to another domain waits until s2s has
// written it to the remote domain's stream (or bounced it): until then
// only this process has it, and a crash must leave it with the client.
// Messages offline storage would not keep (a chat state alone) are not
// held.
func TestRemoteMessageHoldsTheSendersAck(t *testing.T) {
	e := newEnv(t)
	fed := &notifyFed{}
	e.r.SetFederation(fed)
	e.user("alice")
	alice := e.bindSM("alice", "a")

	e.sendFrom(alice, `<message to='romeo@remote.net' type='chat' id='m1'><body>across</body></message>`)
	if got := len(fed.take()); got != 1 {
		t.Fatalf("%d stanzas handed to s2s, want 1", got)
	}
	if held, taken := alice.holdCounts(); held != 1 || taken != 1 {
		t.Fatalf("before s2s wrote it: %d acknowledgement holds outstanding (%d taken), want 1 (1)", held, taken)
	}
	fed.settleAll()
	if held, _ := alice.holdCounts(); held != 0 {
		t.Fatalf("after s2s wrote it: %d acknowledgement holds outstanding, want 0", held)
	}

	e.sendFrom(alice, `<message to='romeo@remote.net' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	if held, taken := alice.holdCounts(); held != 0 || taken != 1 {
		t.Fatalf("a chat state alone: %d holds outstanding (%d taken), want none new", held, taken)
	}
}

// TestReleaseWithin: a remote message's hold is released when s2s reports
// it, or after the bound if s2s has not (a remote domain slow to answer
// must not hold up the session's acknowledgements for long), once.
func TestReleaseWithin(t *testing.T) {
	done := make(chan struct{})
	f := releaseWithin(newHold(func() { close(done) }), 10*time.Millisecond)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the hold was not released after its bound")
	}
	f() // s2s reporting late: no second release (a second close would panic)

	done2 := make(chan struct{})
	f2 := releaseWithin(newHold(func() { close(done2) }), time.Hour)
	f2()
	select {
	case <-done2:
	default:
		t.Fatal("the hold was not released when s2s reported")
	}
}
