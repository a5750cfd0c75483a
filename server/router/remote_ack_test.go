package router

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
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

// TestRemoteMessageDepositedPastTheBound: a message to another domain
// whose stream takes longer than the bound to set up is deposited with a
// buddy node, whose receipt releases the sender's acknowledgement; if the
// node dies before s2s wrote it, the buddy sends it through its own s2s.
// Before, the acknowledgement went out at the bound with the message on
// this node alone, and a crash then lost it.
func TestRemoteMessageDepositedPastTheBound(t *testing.T) {
	es, net := threeNodes(t)
	fed1, fed2 := &notifyFed{}, &notifyFed{}
	es[0].r.SetFederation(fed1)
	es[1].r.SetFederation(fed2)
	es[0].r.remoteWait = 20 * time.Millisecond
	alice := es[0].bindSM("alice", "a")

	es[0].sendFrom(alice, `<message to='romeo@remote.net' type='chat' id='m1'><body>across</body></message>`)
	if got := len(fed1.take()); got != 1 {
		t.Fatalf("%d stanzas handed to s2s, want 1", got)
	}
	// Past the bound: a copy on node1, its deposit on node2 (node1's
	// buddy), and alice's acknowledgement released by the deposit.
	waitKept(t, es[0], 1, 0)
	waitKept(t, es[1], 0, 1)
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if held, _ := alice.holdCounts(); held != 0 {
			return fmt.Errorf("%d acknowledgement holds outstanding after the deposit, want 0", held)
		}
		return nil
	})
	net.kill("node1") // before s2s wrote it
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		got := fed2.take()
		if len(got) != 1 {
			return fmt.Errorf("node2 handed %d stanzas to s2s, want the deposited message", len(got))
		}
		if got[0].ChildText("body", "") != "across" || got[0].Child("delay", wire.NSDelay) == nil {
			return fmt.Errorf("node2 sent %s, want the message with a delay stamp", got[0])
		}
		return nil
	})
}

// TestRemoteMessageSettledDropsTheDeposit: once s2s wrote a message that
// was deposited past the bound, the copy and the deposit go; written
// within the bound, none is made.
func TestRemoteMessageSettledDropsTheDeposit(t *testing.T) {
	es, _ := threeNodes(t)
	fed := &notifyFed{}
	es[0].r.SetFederation(fed)
	es[0].r.remoteWait = 20 * time.Millisecond
	alice := es[0].bindSM("alice", "a")

	es[0].sendFrom(alice, `<message to='romeo@remote.net' type='chat' id='m1'><body>slow</body></message>`)
	waitKept(t, es[1], 0, 1)
	fed.settleAll()
	waitKept(t, es[0], 0, 0)
	waitKept(t, es[1], 0, 0)

	es[0].r.remoteWait = time.Hour
	es[0].sendFrom(alice, `<message to='romeo@remote.net' type='chat' id='m2'><body>quick</body></message>`)
	if held, _ := alice.holdCounts(); held != 1 {
		t.Fatalf("before s2s wrote it: %d holds, want 1", held)
	}
	fed.settleAll()
	if held, _ := alice.holdCounts(); held != 0 {
		t.Fatalf("after s2s wrote it: %d holds, want 0", held)
	}
	waitKept(t, es[0], 0, 0)
	waitKept(t, es[1], 0, 0)
}
