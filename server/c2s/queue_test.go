package c2s

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// fakeTransport records writes; Write blocks while gate is held.
type fakeTransport struct {
	mu       sync.Mutex
	gate     sync.Mutex
	written  int
	els      []*wire.Element // everything written
	closed   bool
	closeErr *wire.Element
	done     chan struct{}
}

func newFakeTransport() *fakeTransport { return &fakeTransport{done: make(chan struct{})} }

func (f *fakeTransport) ReadHeader() (*wire.Element, error) { <-f.done; return nil, io.EOF }
func (f *fakeTransport) ReadElement() (*wire.Element, error) {
	<-f.done
	return nil, io.EOF
}
func (f *fakeTransport) Restart()                                            {}
func (f *fakeTransport) Secure() bool                                        { return true }
func (f *fakeTransport) CanStartTLS() bool                                   { return false }
func (f *fakeTransport) StartTLS(ctx context.Context, cfg *tls.Config) error { return nil }
func (f *fakeTransport) OpenStream(h StreamHeader) error                     { return nil }
func (f *fakeTransport) RemoteAddr() string                                  { return "test" }
func (f *fakeTransport) SetActivityHook(fn func())                           {}
func (f *fakeTransport) Write(els []*wire.Element) error {
	f.gate.Lock()
	defer f.gate.Unlock()
	f.mu.Lock()
	f.written += len(els)
	f.els = append(f.els, els...)
	f.mu.Unlock()
	return nil
}

// writtenNamed returns the written elements named name.
func (f *fakeTransport) writtenNamed(name string) []*wire.Element {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*wire.Element
	for _, el := range f.els {
		if el.Name == name {
			out = append(out, el)
		}
	}
	return out
}
func (f *fakeTransport) Close(streamErr *wire.Element) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed, f.closeErr = true, streamErr
		close(f.done)
	}
	return nil
}

type nopRouter struct{}

func (nopRouter) Bind(ctx context.Context, s router.Session, u, r string) (wire.JID, error) {
	return wire.NewJID(u, "localhost", r)
}
func (nopRouter) Unbind(ctx context.Context, s router.Session, unsent []router.Unsent) {}
func (nopRouter) FromClient(ctx context.Context, s router.Session, el *wire.Element)   {}
func (nopRouter) Release(rcs []*router.Receipt)                                        {}

func testServer(maxPending int) *Server {
	cfg := conf.Default()
	return NewServer(Deps{Domain: cfg.Domain, C2S: cfg.C2S, DatabaseTimeout: cfg.Database.Timeout, Router: nopRouter{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxPendingBytes: maxPending})
}

func TestSlowConsumerClosed(t *testing.T) {
	srv := testServer(64 << 10)
	ft := newFakeTransport()
	ft.gate.Lock() // the client reads nothing
	s := srv.newSession(context.Background(), ft)
	msg := wire.New("message", "to", "a@localhost/r", "type", "chat").Append(wire.New("body").SetText(string(make([]byte, 1000))))
	accepted := 0
	for i := 0; i < 1000; i++ {
		if !s.Send(msg) {
			break
		}
		accepted++
	}
	if accepted == 0 || accepted >= 1000 {
		t.Fatalf("accepted %d stanzas; want the cap to stop it", accepted)
	}
	if s.Send(msg) {
		t.Error("a closing session still accepts stanzas")
	}
	ft.gate.Unlock()
	select {
	case <-ft.done:
	case <-time.After(10 * time.Second):
		t.Fatal("transport not closed")
	}
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	if reason != ReasonSlowConsumer {
		t.Errorf("reason = %v", reason)
	}
	if ft.closeErr == nil || ft.closeErr.Child("policy-violation", wire.NSStreams) == nil {
		t.Errorf("stream error = %v", ft.closeErr)
	}
	// What was queued is handed back for re-routing, not lost.
	s.mu.Lock()
	unsent := s.unsentLocked()
	s.mu.Unlock()
	ft.mu.Lock()
	written := ft.written
	ft.mu.Unlock()
	if len(unsent)+written < accepted {
		t.Errorf("accepted %d, written %d, unsent %d: stanzas lost", accepted, written, len(unsent))
	}
}

// BenchmarkSessionSend measures queueing a stanza and the writer handing
// batches to the transport.
func BenchmarkSessionSend(b *testing.B) {
	srv := testServer(1 << 30)
	ft := newFakeTransport()
	s := srv.newSession(context.Background(), ft)
	msg := wire.New("message", "to", "a@localhost/r", "type", "chat").Append(wire.New("body").SetText("hello"))
	b.ReportAllocs()
	for b.Loop() {
		if !s.Send(msg) {
			b.Fatal("send refused")
		}
	}
	s.flush(false)
}
