package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/internal/testutil"
)

type handlers struct {
	mu sync.Mutex
	m  map[string]cluster.HandlerFunc
}

func (h *handlers) set(kind string, f cluster.HandlerFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]cluster.HandlerFunc{}
	}
	h.m[kind] = f
}

func (h *handlers) get(kind string) cluster.HandlerFunc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[kind]
}

type testNode struct {
	*Node
	addr string
	h    *handlers
}

func startNode(t testing.TB, name, secret string, mod func(*Options)) *testNode {
	t.Helper()
	h := &handlers{}
	o := Options{Name: name, Secret: []byte(secret), Handler: h.get, MaxBackoff: 200 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	n := New(o)
	a, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &testNode{Node: n, addr: a.String(), h: h}
}

func TestSendCall(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(map[bool]string{false: "tls", true: "plaintext"}[plain], func(t *testing.T) {
			testSendCall(t, func(o *Options) { o.Plaintext = plain })
		})
	}
}

func testSendCall(t *testing.T, mod func(*Options)) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := startNode(t, "a", "s3cret", mod)
	b := startNode(t, "b", "s3cret", mod)
	var mu sync.Mutex
	var got []string
	b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		mu.Lock()
		got = append(got, from+":"+string(p))
		mu.Unlock()
		return nil, nil
	})
	b.h.set("echo", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		return append([]byte(from+">"), p...), nil
	})
	b.h.set("fail", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		return nil, errors.New("nope")
	})
	for i := range 100 {
		if err := a.Send(ctx, "b", b.addr, "msg", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 100 {
			return fmt.Errorf("got %d messages", len(got))
		}
		for i, s := range got {
			if s != fmt.Sprintf("a:%d", i) {
				return fmt.Errorf("message %d = %q (out of order?)", i, s)
			}
		}
		return nil
	})

	big := bytes.Repeat([]byte("x"), 1<<20)
	cases := []struct {
		name    string
		kind    string
		payload []byte
		want    []byte
		wantErr error
		remote  bool
	}{
		{"echo", "echo", []byte("hi"), []byte("a>hi"), nil, false},
		{"empty", "echo", nil, []byte("a>"), nil, false},
		{"big", "echo", big, append([]byte("a>"), big...), nil, false},
		{"no handler", "nope", nil, nil, cluster.ErrNoHandler, false},
		{"handler error", "fail", nil, nil, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := a.Call(ctx, "b", b.addr, tc.kind, tc.payload)
			var re *RemoteError
			switch {
			case tc.remote:
				if !errors.As(err, &re) || re.Msg != "nope" || re.Node != "b" {
					t.Fatalf("err = %v, want remote error nope", err)
				}
			case !errors.Is(err, tc.wantErr):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(reply, tc.want) {
				t.Fatalf("reply = %.40q, want %.40q", reply, tc.want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := startNode(t, "b", "right", nil)
	var calls atomic.Int32
	b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		calls.Add(1)
		return nil, nil
	})
	cases := []struct {
		name, self, secret, target, addr string
	}{
		{"wrong secret", "a", "wrong", "b", b.addr},
		{"wrong node name", "a", "right", "c", b.addr},
		{"nobody listening", "a", "right", "b", "127.0.0.1:1"},
		{"no address", "a", "right", "b", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := startNode(t, tc.self, tc.secret, nil)
			err := a.Send(ctx, tc.target, tc.addr, "msg", []byte("x"))
			if !errors.Is(err, cluster.ErrNodeGone) {
				t.Fatalf("Send err = %v, want ErrNodeGone", err)
			}
			// During the backoff the failure is immediate.
			start := time.Now()
			_, err = a.Call(ctx, tc.target, tc.addr, "msg", nil)
			if !errors.Is(err, cluster.ErrNodeGone) {
				t.Fatalf("Call err = %v, want ErrNodeGone", err)
			}
			if tc.addr != "" && time.Since(start) > time.Second {
				t.Logf("second attempt took %v", time.Since(start))
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times for refused peers", n)
	}
}

func TestForgetFailsPending(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := startNode(t, "a", "s", nil)
	b := startNode(t, "b", "s", nil)
	release := make(chan struct{})
	defer close(release)
	b.h.set("slow", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		<-release
		return nil, nil
	})
	errc := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, "b", b.addr, "slow", nil)
		errc <- err
	}()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if a.Stats().Peers != 1 {
			return errors.New("no peer yet")
		}
		return nil
	})
	a.Forget("b")
	if err := <-errc; !errors.Is(err, cluster.ErrNodeGone) {
		t.Fatalf("pending call after Forget: %v", err)
	}
}

func TestCallTimeout(t *testing.T) {
	a := startNode(t, "a", "s", nil)
	b := startNode(t, "b", "s", nil)
	release := make(chan struct{})
	defer close(release)
	b.h.set("slow", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		<-release
		return nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := a.Call(ctx, "b", b.addr, "slow", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

// TestBackPressure blocks the receiver so the sender's queue fills: Send
// must then wait for its context and fail, not drop or grow without bound.
func TestBackPressure(t *testing.T) {
	a := startNode(t, "a", "s", func(o *Options) { o.QueueLen = 4 })
	b := startNode(t, "b", "s", nil)
	release := make(chan struct{})
	var handled atomic.Int64
	b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		<-release
		handled.Add(1)
		return nil, nil
	})
	payload := bytes.Repeat([]byte("p"), 64<<10)
	// The first Send dials and authenticates; give it time (a loaded
	// machine took more than the 50ms below), so that only the full queue
	// can make a later one fail.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := a.Send(ctx, "b", b.addr, "msg", payload)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	sent := 1
	for sent < 10000 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err = a.Send(ctx, "b", b.addr, "msg", payload)
		cancel()
		if err != nil {
			break
		}
		sent++
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after %d sends err = %v, want deadline exceeded", sent, err)
	}
	close(release)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := handled.Load(); n != int64(sent) {
			return fmt.Errorf("handled %d of %d", n, sent)
		}
		return nil
	})
}

// TestUndelivered: frames queued for a peer that goes away are reported.
func TestUndelivered(t *testing.T) {
	var mu sync.Mutex
	var lost []string
	a := startNode(t, "a", "s", func(o *Options) {
		o.QueueLen = 1000
		o.Undelivered = func(node, kind string, p []byte) {
			mu.Lock()
			lost = append(lost, node+"/"+kind+"/"+string(p))
			mu.Unlock()
		}
	})
	b := startNode(t, "b", "s", nil)
	release := make(chan struct{})
	var handled atomic.Int64
	b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		<-release
		handled.Add(1)
		return nil, nil
	})
	ctx := context.Background()
	payload := bytes.Repeat([]byte("p"), 32<<10)
	total := 600
	for range total {
		if err := a.Send(ctx, "b", b.addr, "msg", payload); err != nil {
			t.Fatal(err)
		}
	}
	a.Forget("b")
	close(release)
	b.Close()
	if err := a.Send(ctx, "b", b.addr, "msg", nil); !errors.Is(err, cluster.ErrNodeGone) {
		t.Fatalf("Send to a closed node: %v", err)
	}
	a.Close() // waits for the writer's final report
	mu.Lock()
	n := len(lost)
	mu.Unlock()
	if n == 0 {
		t.Fatal("nothing reported undelivered though the receiver was stuck")
	}
	// Every frame was handled or reported; one handled but not yet
	// acknowledged is reported too (a duplicate, never a silent loss).
	if h := int(handled.Load()); h+n < total || n > total {
		t.Fatalf("handled %d + undelivered %d, sent %d", h, n, total)
	}
}

// TestUndeliveredWritten: frames the sender wrote to the socket but the
// receiver never handled (it read them and died) are reported too, thanks
// to the receiver's acknowledgements.
func TestUndeliveredWritten(t *testing.T) {
	var lost atomic.Int64
	a := startNode(t, "a", "s", func(o *Options) {
		o.Undelivered = func(node, kind string, p []byte) { lost.Add(1) }
		o.Plaintext = true // the receiver below speaks the bare protocol
	})
	// A receiver that authenticates, reads everything, handles nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	read := make(chan int64, 1)
	const total = 200
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := serverHandshake(c, []byte("s"), "b"); err != nil {
			return
		}
		fr := &frameReader{r: newReader(c)}
		var n int64
		for n < total {
			if _, err := fr.next(); err != nil {
				break
			}
			n++
		}
		read <- n
	}()
	ctx := context.Background()
	for range total {
		if err := a.Send(ctx, "b", ln.Addr().String(), "msg", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if n := <-read; n != total {
		t.Fatalf("fake receiver read %d frames", n)
	}
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if l := lost.Load(); l != total {
			return fmt.Errorf("reported %d of %d unhandled frames", l, total)
		}
		return nil
	})
}

// TestSendNotify: each SendNotify learns its message's fate: handled
// once the receiver acknowledged it, not handled (and never given to
// Options.Undelivered) when the receiver read it and died unhandled.
func TestSendNotify(t *testing.T) {
	var undelivered atomic.Int64
	a := startNode(t, "a", "s", func(o *Options) {
		o.Undelivered = func(node, kind string, p []byte) { undelivered.Add(1) }
		o.Plaintext = true // the dying receiver below speaks the bare protocol
	})
	b := startNode(t, "b", "s", func(o *Options) { o.Plaintext = true })
	var handledByB atomic.Int64
	b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		handledByB.Add(1)
		return nil, nil
	})
	ctx := context.Background()
	const total = 300
	var yes, no atomic.Int64
	report := func(handled bool) {
		if handled {
			yes.Add(1)
		} else {
			no.Add(1)
		}
	}
	for range total {
		if err := a.SendNotify(ctx, "b", b.addr, "msg", []byte("x"), report); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if y, n := yes.Load(), no.Load(); y != total || n != 0 {
			return fmt.Errorf("reported handled %d, not handled %d, want %d and 0", y, n, total)
		}
		return nil
	})
	if h := handledByB.Load(); h != total {
		t.Fatalf("b handled %d of %d", h, total)
	}

	// A receiver that authenticates, reads everything and handles nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	read := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := serverHandshake(c, []byte("s"), "c"); err != nil {
			return
		}
		fr := &frameReader{r: newReader(c)}
		var n int64
		for n < total {
			if _, err := fr.next(); err != nil {
				break
			}
			n++
		}
		read <- n
	}()
	yes.Store(0)
	for range total {
		if err := a.SendNotify(ctx, "c", ln.Addr().String(), "msg", []byte("x"), report); err != nil {
			t.Fatal(err)
		}
	}
	if n := <-read; n != total {
		t.Fatalf("fake receiver read %d frames", n)
	}
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if y, n := yes.Load(), no.Load(); y != 0 || n != total {
			return fmt.Errorf("reported handled %d, not handled %d, want 0 and %d", y, n, total)
		}
		return nil
	})
	if u := undelivered.Load(); u != 0 {
		t.Fatalf("Options.Undelivered got %d notified messages", u)
	}
}

func BenchmarkLinkSend(b *testing.B) {
	for _, size := range []int{200, 2000} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			x := startNode(b, "a", "s", nil)
			y := startNode(b, "b", "s", nil)
			var got atomic.Int64
			y.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
				got.Add(1)
				return nil, nil
			})
			y.h.set("ping", func(ctx context.Context, from string, p []byte) ([]byte, error) { return nil, nil })
			ctx := context.Background()
			payload := bytes.Repeat([]byte("m"), size)
			if err := x.Send(ctx, "b", y.addr, "msg", payload); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			n := int64(1)
			for b.Loop() {
				if err := x.Send(ctx, "b", y.addr, "msg", payload); err != nil {
					b.Fatal(err)
				}
				n++
			}
			// Sends are ordered before the ping's reply: all handled.
			if _, err := x.Call(ctx, "b", y.addr, "ping", nil); err != nil {
				b.Fatal(err)
			}
			for got.Load() < n {
				time.Sleep(time.Millisecond)
			}
		})
	}
}

func BenchmarkLinkCall(b *testing.B) {
	x := startNode(b, "a", "s", nil)
	y := startNode(b, "b", "s", nil)
	y.h.set("echo", func(ctx context.Context, from string, p []byte) ([]byte, error) { return p, nil })
	ctx := context.Background()
	payload := []byte("ping")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Call(ctx, "b", y.addr, "echo", payload); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReconnect: the peer restarts on the same address; after the broken
// connection is noticed, Sends and Calls work again without intervention.
func TestReconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := startNode(t, "a", "s", nil)
	b := startNode(t, "b", "s", nil)
	b.h.set("echo", func(ctx context.Context, from string, p []byte) ([]byte, error) { return p, nil })
	if _, err := a.Call(ctx, "b", b.addr, "echo", []byte("1")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	h := &handlers{}
	h.set("echo", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		return append([]byte("new:"), p...), nil
	})
	b2 := New(Options{Name: "b", Secret: []byte("s"), Handler: h.get})
	if _, err := b2.Listen(b.addr); err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		r, err := a.Call(ctx, "b", b.addr, "echo", []byte("2"))
		if err != nil {
			return err
		}
		if string(r) != "new:2" {
			return fmt.Errorf("reply %q", r)
		}
		return nil
	})
}

// TestStats: the traffic counters of both ends grow with a Send and a
// Call, and a Send to an unreachable node counts as a failure.
func TestStats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := startNode(t, "a", "s", nil)
	b := startNode(t, "b", "s", nil)
	var got atomic.Int64
	b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		got.Add(1)
		return nil, nil
	})
	b.h.set("echo", func(ctx context.Context, from string, p []byte) ([]byte, error) { return p, nil })
	a0, b0 := a.Stats(), b.Stats()
	payload := bytes.Repeat([]byte("x"), 1000)
	if err := a.Send(ctx, "b", b.addr, "msg", payload); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Call(ctx, "b", b.addr, "echo", payload); err != nil {
		t.Fatal(err)
	}
	// The ack for the Send may still be on its way: poll.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		as, bs := a.Stats(), b.Stats()
		switch {
		case got.Load() != 1:
			return fmt.Errorf("send not handled")
		case as.FramesSent-a0.FramesSent < 2 || as.BytesSent-a0.BytesSent < 2000:
			return fmt.Errorf("a sent %d frames, %d bytes", as.FramesSent-a0.FramesSent, as.BytesSent-a0.BytesSent)
		case bs.FramesReceived-b0.FramesReceived < 2 || bs.BytesReceived-b0.BytesReceived < 2000:
			return fmt.Errorf("b received %d frames, %d bytes", bs.FramesReceived-b0.FramesReceived, bs.BytesReceived-b0.BytesReceived)
		case bs.FramesSent-b0.FramesSent < 2 || bs.BytesSent-b0.BytesSent < 1000: // reply, ack(s)
			return fmt.Errorf("b sent %d frames, %d bytes", bs.FramesSent-b0.FramesSent, bs.BytesSent-b0.BytesSent)
		case as.FramesReceived-a0.FramesReceived != bs.FramesSent-b0.FramesSent:
			return fmt.Errorf("a received %d frames, b sent %d", as.FramesReceived-a0.FramesReceived, bs.FramesSent-b0.FramesSent)
		case as.BytesSent-a0.BytesSent != bs.BytesReceived-b0.BytesReceived:
			return fmt.Errorf("a sent %d bytes, b received %d", as.BytesSent-a0.BytesSent, bs.BytesReceived-b0.BytesReceived)
		case as.SendFailures != 0:
			return fmt.Errorf("send failures %d", as.SendFailures)
		}
		return nil
	})

	// Nothing listens there: the dial fails and the Send is refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	if err := a.Send(ctx, "c", dead, "msg", payload); !errors.Is(err, cluster.ErrNodeGone) {
		t.Fatalf("Send to nowhere: %v", err)
	}
	if got := a.Stats().SendFailures; got != 1 {
		t.Fatalf("SendFailures = %d, want 1", got)
	}
}

// TestHandlingStats: the time Send handlers hold the reader is counted,
// and a handler over 100 ms counts as slow.
func TestHandlingStats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := startNode(t, "a", "s", nil)
	b := startNode(t, "b", "s", nil)
	var got atomic.Int64
	b.h.set("slow", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		time.Sleep(150 * time.Millisecond)
		got.Add(1)
		return nil, nil
	})
	b.h.set("fast", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		got.Add(1)
		return nil, nil
	})
	for _, kind := range []string{"fast", "slow", "fast"} {
		if err := a.Send(ctx, "b", b.addr, kind, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got.Load() != 3 {
			return fmt.Errorf("%d of 3 handled", got.Load())
		}
		return nil
	})
	st := b.Stats()
	if st.SlowHandlings != 1 || st.HandlingSeconds < 0.15 {
		t.Fatalf("slow handlings %d, handling %.3fs; want 1 and at least 0.15s", st.SlowHandlings, st.HandlingSeconds)
	}
	if slow, fast := st.HandlingByKind["slow"], st.HandlingByKind["fast"]; slow < 0.15 || fast >= slow {
		t.Fatalf("handling by kind %v: want slow at least 0.15s, fast below it", st.HandlingByKind)
	}
}

// TestEncrypted puts a recording proxy between two nodes: with TLS (the
// default) a message's bytes never cross it in clear, in plaintext mode
// they do; and a node in the other mode is refused with a clear error.
func TestEncrypted(t *testing.T) {
	const payload = "a-very-recognisable-payload"
	for _, plain := range []bool{false, true} {
		t.Run(map[bool]string{false: "tls", true: "plaintext"}[plain], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			mod := func(o *Options) { o.Plaintext = plain }
			a := startNode(t, "a", "s3cret", mod)
			b := startNode(t, "b", "s3cret", mod)
			got := make(chan string, 1)
			b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
				got <- string(p)
				return nil, nil
			})
			proxy, seen := recordingProxy(t, b.addr)
			if err := a.Send(ctx, "b", proxy, "msg", []byte(payload)); err != nil {
				t.Fatal(err)
			}
			if p := <-got; p != payload {
				t.Fatalf("b got %q", p)
			}
			if clear := bytes.Contains(seen(), []byte(payload)); clear != plain {
				t.Fatalf("payload readable on the wire: %v, want %v", clear, plain)
			}

			// A node in the other mode is refused. A TLS client sees the
			// plaintext server's greeting at once (ErrAuth); a plaintext
			// client waits for a greeting a TLS server never sends.
			other := startNode(t, "c", "s3cret", func(o *Options) { o.Plaintext = !plain; o.DialTimeout = 500 * time.Millisecond })
			err := other.Send(ctx, "b", b.addr, "msg", []byte("x"))
			if !errors.Is(err, cluster.ErrNodeGone) || (plain && !errors.Is(err, ErrAuth)) ||
				!strings.Contains(err.Error(), "plaintext_links") {
				t.Fatalf("a node in the other mode: Send = %v, want refused, naming plaintext_links", err)
			}
		})
	}
}

// recordingProxy forwards one connection to target and returns its
// address and what the client sent so far.
func recordingProxy(t *testing.T, target string) (string, func() []byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var seen []byte
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		u, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer u.Close()
		go func() { _, _ = io.Copy(c, u) }()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			mu.Lock()
			seen = append(seen, buf[:n]...)
			mu.Unlock()
			if _, werr := u.Write(buf[:n]); err != nil || werr != nil {
				return
			}
		}
	}()
	return ln.Addr().String(), func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(seen)
	}
}

// TestFlush: Flush returns once the peer has handled everything queued
// before it, and with a dead peer once everything was reported
// undelivered.
func TestFlush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lost atomic.Int64
	a := startNode(t, "a", "s3cret", func(o *Options) {
		o.Undelivered = func(node, kind string, p []byte) { lost.Add(1) }
	})
	b := startNode(t, "b", "s3cret", nil)
	var handled atomic.Int64
	b.h.set("msg", func(ctx context.Context, from string, p []byte) ([]byte, error) {
		time.Sleep(50 * time.Microsecond) // a receiver slower than the sender
		handled.Add(1)
		return nil, nil
	})
	const total = 2000
	for i := 0; i < total; i++ {
		if err := a.Send(ctx, "b", b.addr, "msg", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := handled.Load() + lost.Load(); got != total {
		t.Fatalf("after Flush: %d handled, %d undelivered, want %d in all", handled.Load(), lost.Load(), total)
	}
	if lost.Load() != 0 {
		t.Errorf("%d undelivered to a live peer", lost.Load())
	}
}

// TestHandBack: a Send handler that returns cluster.ErrHandBack (its node
// is stopping) gives that message back: the sender hears "not handled"
// for it and for what the receiver had not handled yet, "handled" for
// everything acknowledged before it, and nothing is both.
func TestHandBack(t *testing.T) {
	a := startNode(t, "a", "s", nil)
	b := startNode(t, "b", "s", nil)
	const total, from = 200, 120
	var got atomic.Int64
	b.h.set("msg", func(ctx context.Context, _ string, p []byte) ([]byte, error) {
		var i int64
		fmt.Sscan(string(p), &i)
		if i >= from {
			return nil, cluster.ErrHandBack
		}
		got.Add(1)
		return nil, nil
	})
	ctx := context.Background()
	var mu sync.Mutex
	fate := map[int]bool{}
	for i := range total {
		if err := a.SendNotify(ctx, "b", b.addr, "msg", fmt.Append(nil, i), func(handled bool) {
			mu.Lock()
			defer mu.Unlock()
			if _, dup := fate[i]; dup {
				t.Errorf("message %d reported twice", i)
			}
			fate[i] = handled
		}); err != nil && !errors.Is(err, cluster.ErrNodeGone) {
			t.Fatal(err)
		} else if err != nil {
			mu.Lock()
			fate[i] = false // refused at once: the link is between two connections
			mu.Unlock()
		}
	}
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(fate) != total {
			return fmt.Errorf("%d of %d reported", len(fate), total)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range total {
		if want := i < from; fate[i] != want {
			t.Errorf("message %d: handled=%v, want %v", i, fate[i], want)
		}
	}
	if g := got.Load(); g != from {
		t.Fatalf("b handled %d, want %d", g, from)
	}
}
