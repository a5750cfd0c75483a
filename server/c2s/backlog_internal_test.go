package c2s

import (
	"context"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// TestBacklogRoom: a session offers a quarter of its pending-bytes cap for
// backlog; while its client has not taken what is queued (more than an
// eighth waits) it offers none and calls back once the writer took it;
// a closing session offers none. What the writer took counts as taken:
// one batch may be on its way while a quarter more waits.
func TestBacklogRoom(t *testing.T) {
	const limit = 64 << 10
	srv := testServer(limit)
	ft := newFakeTransport()
	ft.gate.Lock() // the client reads nothing for now
	s := srv.newSession(context.Background(), ft)
	if n := s.Backlog(nil); n != limit/4 {
		t.Fatalf("an idle session offers %d, want %d", n, limit/4)
	}
	msg := wire.New("message", "to", "a@localhost/r", "type", "chat").Append(wire.New("body").SetText(string(make([]byte, 1000))))
	// The writer takes the first and blocks writing it; what follows waits.
	s.Send(msg)
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.mu.Lock()
		took := s.writing && len(s.queue) == 0
		s.mu.Unlock()
		if took {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take the first message")
		}
		time.Sleep(time.Millisecond)
	}
	for range 20 {
		if !s.Send(msg) {
			t.Fatal("Send refused under the cap")
		}
	}
	ready := make(chan struct{})
	if n := s.Backlog(func() { close(ready) }); n != 0 {
		t.Fatalf("with ~19 KB waiting for the client the session offers %d, want 0", n)
	}
	select {
	case <-ready:
		t.Fatal("called back before the client took anything")
	case <-time.After(50 * time.Millisecond):
	}
	ft.gate.Unlock() // the client reads
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no call back once the writer took the queue")
	}
	if n := s.Backlog(nil); n <= 0 {
		t.Fatalf("after the writer took the queue the session offers %d", n)
	}
	s.closeWith(ReasonKicked, "", "")
	if n := s.Backlog(func() {}); n != 0 {
		t.Fatalf("a closing session offers %d", n)
	}
}
